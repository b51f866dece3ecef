"""Vectorised closed-loop evaluation: K environments stepped together with one batched policy.

A plain list of `SteeringAgent/Drive-v0` envs in one process (no autoreset: each slot
takes the next seed itself when its episode ends). Each step the running slots' camera
frames go to the policy as one batch, with per-slot recurrent state, so a CNN+LSTM runs
at batch K instead of K times at batch 1.

Interventions, re-centring and episode ends are those of the one episode runner
(`steering_agent.evaluation.episodes`). Robustness perturbations (`Perturbations`) draw from
a generator seeded by the road seed alone, so a seed gives the same perturbations to
every policy and whatever the number of environments; so do the camera faults of
`EvalConfig.fault` (`steering_agent.evaluation.faults`: black, frozen, missing frames with
the agent node's watchdog, bursty loss, glare, a tunnel, latency).

Policy specs (`make_policy`): "expert", a checkpoint path, "lane-follower" (the classical
OpenCV lane follower, `steering_agent.policy.lane_follower.LaneFollowerPolicy`) and
"hold:SPEC" (SPEC under the hold-on-unusable-frame rule, `steering_agent.policy.hold`).
Each episode's speed target is the env's speed limit (info `speed_limit_mps`, like a
map's), else the env's `target_speed_mps` when the evaluation sets it, else the policy's.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from steering_agent.evaluation import metrics
from steering_agent.evaluation.episodes import EpisodeRules, EpisodeRun
from steering_agent.evaluation.faults import WATCHDOG_S, CameraFault, FaultChannel
from steering_agent.evaluation.policies import (  # noqa: F401  (re-exported)
    HOLD_PREFIX,
    LANE_FOLLOWER,
    BatchPolicy,
    CheckpointPolicy,
    ExpertPolicy,
    checkpoint_of,
    make_policy,
)
from steering_agent.policy.control import SAFE_ACTION

ENV_ID = "SteeringAgent/Drive-v0"
_PERTURB_STREAM = 0x5EED  # second word of the perturbation RNG seed: apart from the road's


@dataclass(frozen=True)
class Perturbations:
    """Robustness settings applied between the simulator and the policy.

    Attributes:
        frame_drop: probability that the policy does not see a frame (previous command
            repeated, the recurrent policy gets no step).
        image_noise: standard deviation of Gaussian pixel noise (0..255 scale).
        brightness: value added to every pixel (0..255 scale, clipped).
        control_delay: commands reach the car this many steps late (FIFO).
    """

    frame_drop: float = 0.0
    image_noise: float = 0.0
    brightness: float = 0.0
    control_delay: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.frame_drop < 1.0:
            raise ValueError(f"--frame-drop must be in [0, 1), got {self.frame_drop}")
        if self.image_noise < 0:
            raise ValueError(f"--image-noise must be >= 0, got {self.image_noise}")
        if self.control_delay < 0:
            raise ValueError(f"--control-delay must be >= 0 steps, got {self.control_delay}")

    @property
    def touches_image(self) -> bool:
        return self.image_noise > 0 or self.brightness != 0

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class EvalConfig:
    """What every episode of an evaluation shares."""

    route_length_m: float = 1000.0
    width: int = 200
    height: int = 66
    num_envs: int = 8
    perturb: Perturbations = Perturbations()
    max_episode_s: float | None = None  # default: the route at an average 2 m/s
    stuck_s: float = 30.0  # end an episode that gains under 1 m in this long
    # more keyword arguments of the env: the camera mount, fov_deg, the vehicle
    # (camera_pitch_deg, wheelbase_m, ...); the policy is told the same camera and car
    env_kwargs: tuple[tuple[str, object], ...] = ()
    tell_policy: bool = True  # False: the policy assumes its canonical camera and car
    fault: CameraFault | None = None  # a camera fault between the env and the policy

    def env_options(self) -> dict:
        """All keyword arguments of `SteeringAgent/Drive-v0` for this evaluation."""
        return {"width": self.width, "height": self.height,
                "route_length_m": self.route_length_m, **dict(self.env_kwargs)}  # fmt: skip

    def camera_and_vehicle(self) -> tuple[dict | None, dict | None]:
        """(camera_spec, vehicle_spec) of the evaluation's env, or (None, None) for the
        default camera and car (the policy then assumes its canonical ones)."""
        if not self.tell_policy or (not self.env_kwargs and (self.width, self.height) == (200, 66)):
            return None, None
        env = make_env(self)
        try:
            return env.unwrapped.camera_spec(), env.unwrapped.vehicle_spec()
        finally:
            env.close()

    def rules(self) -> EpisodeRules:
        """How each episode is judged (`episodes.EpisodeRules`)."""
        return EpisodeRules(self.route_length_m, True, self.max_episode_s, self.stuck_s)

    def time_limit_s(self) -> float:
        return self.rules().time_limit_s()

    def env_target_speed(self) -> float | None:
        value = dict(self.env_kwargs).get("target_speed_mps")
        return None if value is None else float(value)


def make_env(cfg: EvalConfig, render_mode: str | None = None):
    """One `SteeringAgent/Drive-v0` with the evaluation's camera, car and route."""
    import gymnasium

    import sim  # noqa: F401  (registers the env ids)

    return gymnasium.make(ENV_ID, render_mode=render_mode, **cfg.env_options())


def perturbation_rng(seed: int) -> np.random.Generator:
    """The perturbation stream of a road seed (same for every policy and slot count)."""
    return np.random.default_rng([int(seed), _PERTURB_STREAM])


def perturb_image(
    image: np.ndarray, p: Perturbations, rng: np.random.Generator, out: np.ndarray
) -> None:
    """Noise and brightness into `out` (uint8, same shape), clipped to 0..255."""
    work = image.astype(np.float32)
    if p.image_noise > 0:
        work += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(p.image_noise)
    if p.brightness:
        work += np.float32(p.brightness)
    np.clip(work, 0.0, 255.0, out=work)
    np.rint(work, out=work)
    out[...] = work


# A hook sees each step of the first seed's episode (for the video): env, the frame the
# policy saw, the executed command, the info after the step (after any rescue) and the
# interventions so far.
FrameHook = Callable[[object, np.ndarray, np.ndarray, dict, int], None]


class _Slot:
    """One environment, the episode it is driving (`episodes.EpisodeRun`) and what sits
    between the policy and the car (perturbation stream, delayed commands)."""

    def __init__(self, env, cfg: EvalConfig) -> None:
        self.env = env
        self.cfg = cfg
        self.index = -1  # position of the seed in the evaluation's seed list
        self.run: EpisodeRun | None = None
        self.rng: np.random.Generator | None = None
        self.last_cmd = np.zeros(3, np.float32)
        self.fifo: deque[np.ndarray] = deque()
        self.channel = FaultChannel(cfg.fault)
        self.dt = float(env.unwrapped.dt)
        self.delay = cfg.perturb.control_delay + (
            cfg.fault.delay_steps(self.dt) if cfg.fault is not None else 0
        )
        self.unseen = 0  # steps since the policy last gave a command (missing frames)
        self.braking = False  # the watchdog's full brake is on

    @property
    def running(self) -> bool:
        return self.run is not None

    @property
    def trace(self) -> metrics.EpisodeTrace:
        return self.run.trace

    @property
    def obs(self) -> dict:
        return self.run.obs

    @property
    def info(self) -> dict:
        return self.run.info

    def start(self, index: int, seed: int) -> None:
        self.index = index
        self.run = EpisodeRun(self.env, seed, self.cfg.rules())
        self.rng = perturbation_rng(seed)
        self.last_cmd = np.zeros(3, np.float32)
        # Until the first delayed command arrives the car gets neutral commands.
        self.fifo = deque(np.zeros(3, np.float32) for _ in range(self.delay))
        self.channel.start(seed, int(self.cfg.time_limit_s() / self.dt) + 2, self.dt)
        self.unseen, self.braking = 0, False

    def watchdog(self) -> tuple[bool, bool]:
        """One step without a frame: (brake, first braking step) as the agent node's
        watchdog (`faults` doc: the command in effect is held until then)."""
        self.unseen += 1
        if self.unseen * self.dt < WATCHDOG_S - 1e-9:
            return False, False
        first, self.braking = not self.braking, True
        return True, first

    def step(self, cmd: np.ndarray) -> bool:
        """Executes one (possibly delayed) command; True when the episode is over."""
        self.last_cmd = cmd
        if self.delay:
            self.fifo.append(cmd)
            cmd = self.fifo.popleft()
        return self.run.step(cmd)

    def finish(self) -> metrics.EpisodeTrace:
        run, self.run = self.run, None
        return run.trace


def run_episodes(
    policy: BatchPolicy,
    seeds: Sequence[int],
    cfg: EvalConfig,
    envs: Sequence | None = None,
    frame_hook: FrameHook | None = None,
    on_progress: Callable[[float], None] | None = None,
) -> list[metrics.EpisodeTrace]:
    """Drives `policy` over every seed (one episode each); traces in the order of `seeds`.

    Args:
        policy: a `BatchPolicy` built for at least `cfg.num_envs` slots.
        seeds: road seeds (held-out evaluation seeds; the caller checks).
        cfg: route, camera, slot count and perturbations.
        envs: environments to reuse (created from `cfg` when None; then closed here).
        frame_hook: called after each step of the episode of `seeds[0]`.
        on_progress: called with the metres driven in each batch step (progress bars).
    """
    own_envs = envs is None
    k = max(1, min(cfg.num_envs, len(seeds)))
    envs = [make_env(cfg) for _ in range(k)] if own_envs else list(envs)[:k]
    try:
        return _drive(policy, seeds, cfg, envs, frame_hook, on_progress)
    finally:
        if own_envs:
            for env in envs:
                env.close()


def _drive(policy, seeds, cfg, envs, frame_hook, on_progress) -> list[metrics.EpisodeTrace]:
    k, p = len(envs), cfg.perturb
    slots = [_Slot(env, cfg) for env in envs]
    images = np.zeros((k, cfg.height, cfg.width, 3), np.uint8)
    stamps = np.zeros(k, np.float64)
    speeds = np.zeros(k, np.float32)
    expert = np.zeros((k, 3), np.float32)
    seen = np.ones(k, bool)
    traces: list[metrics.EpisodeTrace | None] = [None] * len(seeds)
    pending = iter(enumerate(seeds))

    set_target = getattr(policy, "set_target_speed", None)
    env_target = cfg.env_target_speed()

    def refill(i: int) -> None:
        nxt = next(pending, None)
        if nxt is not None:
            slots[i].start(*nxt)
            policy.reset([i])
            if set_target is not None:
                set_target(i, slots[i].info.get("speed_limit_mps", env_target))

    policy.reset(None)
    for i in range(k):
        refill(i)
    while any(s.running for s in slots):
        active = np.zeros(k, bool)
        for i, s in enumerate(slots):
            if not s.running:
                continue
            seen[i] = s.channel.frame(s.trace.steps, s.obs["image"], images[i])
            if p.touches_image and seen[i] and not s.channel.held:
                perturb_image(images[i], p, s.rng, images[i])
            stamps[i] = float(s.info["sim_time_s"])
            speeds[i] = float(s.info["speed_mps"])
            expert[i] = s.info["expert_action"]
            active[i] = seen[i] and not (p.frame_drop and s.rng.random() < p.frame_drop)
        cmds = policy.act(images, stamps, speeds, expert, active) if active.any() else None
        moved = 0.0
        for i, s in enumerate(slots):
            if not s.running:
                continue
            if active[i]:
                cmd = np.asarray(cmds[i], np.float32).copy()
                s.unseen, s.braking = 0, False
            elif not seen[i]:
                brake, first = s.watchdog()
                if first:  # the agent resets the recurrent state as it starts braking
                    policy.reset([i])
                cmd = SAFE_ACTION.copy() if brake else s.last_cmd
            else:
                cmd = s.last_cmd
            before = s.trace.progress_m[-1] if s.trace.steps else 0.0
            done = s.step(cmd)
            moved += s.trace.progress_m[-1] - before
            if frame_hook is not None and s.index == 0:
                frame_hook(s.env, images[i], cmd, s.info, len(s.trace.intervention_steps))
            if done:
                traces[s.index] = s.finish()
                refill(i)
        if on_progress is not None:
            on_progress(moved)
    return traces
