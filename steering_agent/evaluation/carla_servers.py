"""Evaluation over several CARLA servers: `steering-agent eval --env carla --carla-servers
HOST:PORT,HOST:PORT,...` (docs/scale.md, "CARLA servers on several GPUs").

One `SteeringAgent/CarlaDrive-v0` per server, each driven by its own thread with its
own client and its own copy of the policy (batch 1). CARLA's client blocks in every
call (a tick waits for the server's frame) and releases the GIL while it waits, so
threads suffice; each server renders on its own GPU. The seeds wait in one queue and
each server takes the lowest one left as soon as it is free; every episode is
`vec_eval.run_episodes` of one seed on one env, exactly what a serial run of the same
seeds with one env does, and the traces are merged in seed order.

A server fails when one of its env's calls raises what a CARLA client raises on a lost
server (RuntimeError, e.g. "time-out of 10000ms while waiting for the simulator", or
`CarlaConnectionError`, `CarlaSensorTimeoutError`; OSError): the env is closed, a fresh
one connects (a new client) and the episode starts again from its reset. A second
failure in a row marks the server dead; its episode goes back to the queue for the
other servers. A success resets the count. Any other error (a policy's, a bad setting)
stops the whole run with its traceback.

The results say per episode whether it ran (`status` "ok" or "missing", the server,
each failed attempt and its error), name every server that failed with its errors, and
when an episode could not be run anywhere the run is `"complete": false` with the
`missing_seeds`; `eval` then prints a line saying so and exits with 1
(`steering_agent.evaluation.carla_eval`).
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from steering_agent.common.cli_args import UsageError
from steering_agent.evaluation import metrics
from steering_agent.evaluation.vec_eval import EvalConfig, make_policy, run_episodes

log = logging.getLogger(__name__)

ENV_ID = "SteeringAgent/CarlaDrive-v0"
SERVER_ERRORS: tuple[type[BaseException], ...] = (RuntimeError, OSError)
FAILURES_TO_DEAD = 2  # the first failure is retried on a fresh connection; the second kills
OK, MISSING = "ok", "missing"


def parse_servers(text: str) -> list[tuple[str, int]]:
    """`HOST:PORT,HOST:PORT,...` -> [(host, port), ...] (order kept).

    Raises:
        UsageError: an entry without a host or a port in 1..65535, or one given twice.
    """
    out: list[tuple[str, int]] = []
    for entry in (e.strip() for e in str(text).split(",")):
        host, sep, port = entry.rpartition(":")
        if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise UsageError(
                f"--carla-servers: {entry!r} is not HOST:PORT (e.g. localhost:2000,"
                "localhost:2002; PORT is each server's -carla-rpc-port)"
            )
        if (host, int(port)) in out:
            raise UsageError(f"--carla-servers: {entry} is given twice")
        out.append((host, int(port)))
    return out


class ServerFailure(Exception):
    """A CARLA env's call raised what a lost server raises (module doc)."""


class _EnvCalls:
    """A CARLA env whose server errors come out as `ServerFailure` (and that is its own
    `unwrapped`, so `run_episodes`' recenter() goes through it too)."""

    def __init__(self, env: Any) -> None:
        self._env = env
        self.dt = float(env.unwrapped.dt)

    @property
    def unwrapped(self) -> _EnvCalls:
        return self

    def _call(self, fn: Callable, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SERVER_ERRORS as e:
            raise ServerFailure(f"{type(e).__name__}: {e}") from e

    def reset(self, **kwargs: Any) -> Any:
        return self._call(self._env.reset, **kwargs)

    def step(self, action: Any) -> Any:
        return self._call(self._env.step, action)

    def recenter(self) -> Any:
        return self._call(self._env.unwrapped.recenter)

    def camera_spec(self) -> dict:
        return self._env.unwrapped.camera_spec()

    def vehicle_spec(self) -> dict:
        return self._env.unwrapped.vehicle_spec()

    def close(self) -> None:
        try:
            self._env.close()
        except Exception as e:  # a dead server cannot take its actors back
            log.warning("CARLA: closing the env failed: %s", e)


@dataclass
class ServerState:
    """One server of the pool: alive until it fails twice in a row."""

    host: str
    port: int
    alive: bool = True
    failures_in_a_row: int = 0
    episodes: int = 0
    errors: list[dict] = field(default_factory=list)  # {"policy", "seed", "error"}

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def as_dict(self) -> dict:
        return {
            "server": self.address,
            "alive": self.alive,
            "episodes": self.episodes,
            "errors": list(self.errors),
        }


@dataclass
class EpisodeStatus:
    """How one seed's episode went: `ok` on `server`, or `missing`; failed attempts."""

    seed: int
    status: str = MISSING
    server: str | None = None
    attempts: list[dict] = field(default_factory=list)  # {"server", "error"}

    def as_dict(self) -> dict:
        return {
            "seed": self.seed,
            "status": self.status,
            "server": self.server,
            "failed_attempts": list(self.attempts),
        }


@dataclass
class PolicyResult:
    """One policy over the pool: traces in seed order (None where missing) and statuses."""

    traces: list[metrics.EpisodeTrace | None]
    status: list[EpisodeStatus]

    @property
    def complete(self) -> bool:
        return all(s.status == OK for s in self.status)

    @property
    def missing_seeds(self) -> list[int]:
        return [s.seed for s in self.status if s.status != OK]


class _Told:
    """What `make_policy` asks of a config: the camera and car to tell the policy."""

    def __init__(self, camera: dict | None, vehicle: dict | None) -> None:
        self._pair = (camera, vehicle)

    def camera_and_vehicle(self) -> tuple[dict | None, dict | None]:
        return self._pair


class _Abort(Exception):
    """Another server's thread hit an error that stops the run."""


EnvFactory = Callable[[str, int], Any]


class CarlaServerPool:
    """The servers of an evaluation and what happened to them (module doc).

    Args:
        servers: (host, port) per server.
        env_factory: (host, port) -> a new, unconnected CarlaDrive-v0 env for it.
    """

    def __init__(self, servers: Sequence[tuple[str, int]], env_factory: EnvFactory) -> None:
        if not servers:
            raise ValueError("CarlaServerPool: no servers")
        self.servers = [ServerState(h, int(p)) for h, p in servers]
        self.env_factory = env_factory
        self._cond = threading.Condition()
        self._fatal: BaseException | None = None

    @property
    def failed(self) -> list[ServerState]:
        return [s for s in self.servers if s.errors or not s.alive]

    def run_policy(
        self,
        spec: str,
        seeds: Sequence[int],
        cfg: EvalConfig,
        device: str = "auto",
        on_progress: Callable[[float], None] | None = None,
    ) -> PolicyResult:
        """Policy `spec` over `seeds` on the live servers; returns when every seed has
        run or no server is left. Re-raises the first error that is not a server's."""
        one = dataclasses.replace(cfg, num_envs=1)
        result = PolicyResult([None] * len(seeds), [EpisodeStatus(int(s)) for s in seeds])
        pending = list(range(len(seeds)))
        heapq.heapify(pending)
        state = {"pending": pending, "in_flight": 0}
        self._fatal = None
        lock = threading.Lock()

        def progress(metres: float) -> None:
            if self._fatal is not None:
                raise _Abort()
            if on_progress is not None:
                with lock:
                    on_progress(metres)

        job = (spec, seeds, one, device, result, state, progress)
        threads = [
            threading.Thread(
                target=self._serve, args=(srv, job), daemon=True, name=f"carla-{srv.address}"
            )
            for srv in self.servers
            if srv.alive
        ]
        for t in threads:
            t.start()
        try:
            for t in threads:
                while t.is_alive():
                    t.join(0.2)  # wakes up for Ctrl-C
        except BaseException as e:
            with self._cond:
                self._fatal = self._fatal or e
                self._cond.notify_all()
            for t in threads:
                t.join()
            raise
        if self._fatal is not None:
            raise self._fatal
        return result

    def _serve(self, srv: ServerState, job: tuple) -> None:
        """One server's thread: take the lowest seed left, drive it, until none is left
        (nor running elsewhere, since a dying server hands its seed back) or it dies."""
        slot: dict[str, Any] = {"env": None, "policy": None}
        try:
            while (index := self._take(srv, job[5])) is not None:
                self._drive(srv, index, job, slot)
        except _Abort:
            pass
        except BaseException as e:  # not the server's doing: stop every thread
            with self._cond:
                self._fatal = self._fatal or e
                self._cond.notify_all()
        finally:
            if slot["env"] is not None:
                slot["env"].close()

    def _take(self, srv: ServerState, state: dict) -> int | None:
        """The lowest seed index left, or None when the server is done (dead, the run
        stopped, or no seed left here nor in flight elsewhere)."""
        with self._cond:
            while True:
                if self._fatal is not None or not srv.alive:
                    return None
                if state["pending"]:
                    state["in_flight"] += 1
                    return heapq.heappop(state["pending"])
                if state["in_flight"] == 0:
                    return None
                self._cond.wait()

    def _drive(self, srv: ServerState, index: int, job: tuple, slot: dict) -> None:
        """Seed `index` on `srv` until it finishes, or the server dies (then the seed goes
        back to the queue); `slot` holds the server's env and policy between seeds."""
        spec, seeds, cfg, device, result, state, progress = job
        status, seed = result.status[index], int(seeds[index])
        while True:
            moved = [0.0]

            def count(metres: float, moved: list = moved) -> None:
                moved[0] += metres
                progress(metres)

            try:
                if slot["env"] is None:
                    slot["env"] = _EnvCalls(self.env_factory(srv.host, srv.port))
                if slot["policy"] is None:
                    slot["policy"] = _policy_for(spec, slot["env"], seed, cfg, device)
                (trace,) = run_episodes(
                    slot["policy"], [seed], cfg, envs=[slot["env"]], on_progress=count
                )
                break
            except ServerFailure as e:
                progress(-moved[0])  # the episode starts again from nothing
                log.warning("CARLA server %s failed (seed %s): %s", srv.address, seed, e)
                status.attempts.append({"server": srv.address, "error": str(e)})
                srv.errors.append({"policy": spec, "seed": seed, "error": str(e)})
                if slot["env"] is not None:
                    slot["env"].close()
                slot["env"] = None
                srv.failures_in_a_row += 1
                if srv.failures_in_a_row >= FAILURES_TO_DEAD:
                    with self._cond:
                        srv.alive = False
                        heapq.heappush(state["pending"], index)
                        state["in_flight"] -= 1
                        self._cond.notify_all()
                    return
        srv.failures_in_a_row = 0
        srv.episodes += 1
        result.traces[index] = trace
        status.status, status.server = OK, srv.address
        with self._cond:
            state["in_flight"] -= 1
            self._cond.notify_all()


def _policy_for(spec: str, env: _EnvCalls, seed: int, cfg: EvalConfig, device: str):
    """Policy `spec` at batch 1, told the CARLA env's camera and car (read after a reset
    with `seed`, where it needs them) unless `cfg.tell_policy` is off."""
    inner = spec
    while inner.startswith("hold:"):
        inner = inner[len("hold:") :]
    if inner == "expert" or not cfg.tell_policy:
        return make_policy(spec, 1, device, _Told(None, None))
    env.reset(seed=int(seed))  # the car's physics is read at its spawn
    return make_policy(spec, 1, device, _Told(env.camera_spec(), env.vehicle_spec()))


CARLA_ENV_KEYS = (
    "camera_height_m",
    "camera_pitch_deg",
    "camera_roll_deg",
    "camera_yaw_deg",
    "camera_x_m",
    "camera_y_m",
    "fov_deg",
)


def carla_env_options(cfg: EvalConfig, town: str | None, timeout: float) -> dict:
    """Keyword arguments of CarlaDrive-v0 (all but host and port) for `cfg`: its camera
    and route, `town`, `timeout`, and the spawn point drawn from each seed.

    Raises:
        UsageError: a setting of the embedded car (`--wheelbase-m`, `--max-steer-deg`):
            on CARLA the car is the server's vehicle.
    """
    extra = dict(cfg.env_kwargs)
    foreign = sorted(set(extra) - set(CARLA_ENV_KEYS))
    if foreign:
        opts = ", ".join("--" + k.replace("_", "-") for k in foreign)
        raise UsageError(f"{opts}: not with --env carla (the car is the CARLA server's vehicle)")
    return {
        "width": cfg.width,
        "height": cfg.height,
        "route_length_m": cfg.route_length_m,
        "town": town,
        "timeout": float(timeout),
        "spawn_point": None,  # each seed draws its spawn point (and its turns)
        **extra,
    }


def gym_env_factory(
    options: dict, servers: Sequence[tuple[str, int]], tm_port: int = 8000
) -> EnvFactory:
    """(host, port) -> `gymnasium.make("SteeringAgent/CarlaDrive-v0", ...)` with `options`;
    server i of `servers` gets traffic manager port `tm_port + i` (a traffic manager
    runs in the client's process: two on one port would clash)."""
    index = {tuple(s): i for i, s in enumerate(servers)}

    def make(host: str, port: int):
        import gymnasium

        import sim  # noqa: F401  (registers the env ids)

        tm = tm_port + index[(host, int(port))]
        return gymnasium.make(ENV_ID, host=host, port=port, tm_port=tm, **options)

    return make
