"""`eval --env carla --carla-servers ...` (steering_agent.evaluation.carla_servers,
carla_eval), all against a STAND-IN for the `carla` module (tests/carla_standin.py: fake
servers in this process, NOT CARLA; no CARLA server can run here).

Each stand-in server has its own state and call log; `make_carla_standin_servers` makes
`Client(host, port)` reach the server at that address and refuse any other. A server
"dies" with `die_after_ticks`: its next tick raises, and so does every later call, a new
client's too. The reference for "the same results" is the serial run: `run_episodes`
of the same seeds on one CarlaDriveEnv, computed here directly, not through the pool.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from sim.carla_backend import CarlaDriveEnv
from sim.seeds import eval_seeds
from steering_agent import cli
from steering_agent.common.cli_args import UsageError
from steering_agent.evaluation import carla_servers as cs
from steering_agent.evaluation import metrics
from steering_agent.evaluation.vec_eval import EvalConfig, make_policy, run_episodes

sys.path.insert(0, str(Path(__file__).parent))
from carla_standin import make_carla_standin, make_carla_standin_servers

ROUTE_M = 30.0
# CARLA frame (x, y right, yaw deg): off-centre and turned starts, so seeds differ
SPAWNS = [(0.0, 0.5, 0.0), (100.0, -0.4, 3.0), (200.0, 0.2, -4.0), (300.0, -0.6, 0.0)]
CFG = EvalConfig(route_length_m=ROUTE_M, width=32, height=24, num_envs=1)
ENV_KW = {"width": 32, "height": 24, "route_length_m": ROUTE_M, "spawn_point": None}
A, B, C = "10.0.0.1:2000", "10.0.0.2:2000", "10.0.0.3:2002"


def standin_servers(addresses, **per_server):
    """A stand-in module with a server per address, all with the SPAWNS map;
    per_server: {address: {attribute: value}} set on that server."""
    mod = make_carla_standin_servers(list(addresses))
    for addr, srv in mod.servers.items():
        srv.spawn_points = list(SPAWNS)
        for key, value in per_server.get(addr, {}).items():
            setattr(srv, key, value)
    return mod


def serial(seeds) -> list[dict]:
    """The reference: one env, the seeds one after another (`run_episodes`)."""
    standin = make_carla_standin()
    standin.server.spawn_points = list(SPAWNS)
    env = CarlaDriveEnv(carla_module=standin, **ENV_KW)
    try:
        traces = run_episodes(make_policy("expert", 1), seeds, CFG, envs=[env])
    finally:
        env.close()
    return [metrics.summarize_episode(t).as_dict() for t in traces]


def same(a, b) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)  # NaN-safe


def pool_of(mod, addresses, barrier: threading.Barrier | None = None):
    """A pool whose env factory uses stand-in `mod`; with `barrier`, every server's first
    connection waits for the others', so each is sure to hold a seed at once."""
    first = set()

    def factory(host, port):
        addr = f"{host}:{port}"
        if barrier is not None and addr not in first:
            first.add(addr)
            barrier.wait(timeout=30)
        return CarlaDriveEnv(carla_module=mod, host=host, port=port, **ENV_KW)

    return cs.CarlaServerPool([cs.parse_servers(a)[0] for a in addresses], factory)


def summaries(result) -> list[dict | None]:
    return [None if t is None else metrics.summarize_episode(t).as_dict() for t in result.traces]


@pytest.fixture(scope="module")
def seeds():
    return eval_seeds(6)


@pytest.fixture(scope="module")
def reference(seeds):
    ref = serial(seeds)
    starts = {json.dumps(r, sort_keys=True) for r in ref}
    assert len(starts) > 1, "the seeds must give different episodes for the test to mean much"
    return ref


def test_parse_servers():
    assert cs.parse_servers("localhost:2000, gpu1:2002") == [("localhost", 2000), ("gpu1", 2002)]
    assert cs.parse_servers("::1:2000") == [("::1", 2000)]
    for bad in ("localhost", ":2000", "h:0", "h:70000", "h:x", "h:2000,", "h:1,h:1"):
        with pytest.raises(UsageError, match="--carla-servers"):
            cs.parse_servers(bad)


def test_two_servers_share_the_seeds_and_merge_like_the_serial_run(seeds, reference):
    mod = standin_servers([A, B])
    pool = pool_of(mod, [A, B], barrier=threading.Barrier(2))
    result = pool.run_policy("expert", seeds, CFG)
    assert result.complete and result.missing_seeds == []
    assert same(summaries(result), reference)
    assert [t.seed for t in result.traces] == list(seeds)
    by_server = {s.address: s.episodes for s in pool.servers}
    assert by_server[A] >= 1 and by_server[B] >= 1 and sum(by_server.values()) == len(seeds)
    assert {st.server for st in result.status} == {A, B}
    assert all(st.status == cs.OK and st.attempts == [] for st in result.status)
    assert pool.failed == []
    for srv in mod.servers.values():  # every env closed: no actor left, world given back
        assert srv.alive_actor_ids() == [] and srv.settings.synchronous_mode is False


def test_a_transient_failure_is_retried_on_a_fresh_connection(seeds, reference):
    mod = standin_servers([A], **{A: {"fail_at": {"tick": 150}}})  # once, mid-episode
    pool = pool_of(mod, [A])
    result = pool.run_policy("expert", seeds, CFG)
    assert result.complete and same(summaries(result), reference)
    (srv,) = pool.servers
    assert srv.alive and len(srv.errors) == 1 and "injected failure" in srv.errors[0]["error"]
    retried = [st for st in result.status if st.attempts]
    assert len(retried) == 1 and retried[0].server == A and retried[0].status == cs.OK
    assert retried[0].seed == srv.errors[0]["seed"]
    clients = [e for e in mod.servers[A].log if e[0] == "Client"]
    assert len(clients) == 2  # the retry connected again


def test_a_server_dying_mid_run_is_retried_once_then_reported(seeds, reference):
    mod = standin_servers([A, B], **{A: {"die_after_ticks": 150}})  # in its 2nd episode
    pool = pool_of(mod, [A, B], barrier=threading.Barrier(2))
    result = pool.run_policy("expert", seeds, CFG)
    assert result.complete and same(summaries(result), reference)
    dead, alive = pool.servers
    assert not dead.alive and alive.alive and pool.failed == [dead]
    assert len(dead.errors) == 2  # the failure, then the retry's
    assert "died after 150 ticks" in dead.errors[0]["error"]
    assert "CarlaConnectionError" in dead.errors[1]["error"]  # the fresh client: no answer
    moved = [st for st in result.status if st.attempts]
    assert len(moved) == 1 and [a["server"] for a in moved[0].attempts] == [A, A]
    assert moved[0].server == B and moved[0].status == cs.OK
    assert dead.episodes >= 1 and dead.episodes + alive.episodes == len(seeds)


def test_a_policy_error_stops_the_run_and_blames_no_server(seeds, monkeypatch):
    class Broken:
        name = "broken"

        def reset(self, indices=None):
            pass

        def act(self, images, stamps, speeds, expert, active):
            raise ZeroDivisionError("the policy's own bug")

    monkeypatch.setattr(cs, "make_policy", lambda *a, **k: Broken())
    mod = standin_servers([A, B])
    pool = pool_of(mod, [A, B])
    with pytest.raises(ZeroDivisionError, match="own bug"):
        pool.run_policy("expert", seeds, CFG)
    assert all(s.alive and not s.errors for s in pool.servers)
    for srv in mod.servers.values():
        assert srv.alive_actor_ids() == []


def eval_cli(tmp_path, monkeypatch, mod, servers, seeds_n, capsys, *extra):
    monkeypatch.setitem(sys.modules, "carla", mod)
    out = tmp_path / "eval.json"
    argv = ["eval", "--env", "carla", "--carla-servers", ",".join(servers),
            "--policy", "expert", "--episodes", str(seeds_n), "--route-length-m", str(ROUTE_M),
            "--width", "32", "--height", "24", "--quiet", "--json", str(out), *extra]  # fmt: skip
    code = cli.main(argv)
    return code, json.loads(out.read_text()), capsys.readouterr().out


def test_cli_merges_equal_to_serial_and_names_a_refused_server(
    tmp_path, monkeypatch, capsys, seeds, reference
):
    mod = standin_servers([A, B])  # C: nothing listens there
    code, doc, out = eval_cli(tmp_path, monkeypatch, mod, [A, C, B], len(seeds), capsys)
    assert code == 0 and doc["complete"] is True and doc["missing_seeds"] == []
    row = doc["policies"]["expert"]
    assert row["complete"] is True and same(row["episodes"], reference)
    assert [st["seed"] for st in row["episode_status"]] == list(seeds)
    assert all(st["status"] == "ok" for st in row["episode_status"])
    assert doc["settings"]["env"] == "carla" and doc["throughput"]["workers"] == 3
    (failed,) = doc["carla"]["failed_servers"]
    assert failed["server"] == C and failed["alive"] is False and len(failed["errors"]) == 2
    assert all("no CARLA server answered at 10.0.0.3:2002" in e["error"] for e in failed["errors"])
    assert "INCOMPLETE" not in out and f"CARLA server {C}: DEAD" in out
    tm_ports = {
        addr: {e[1] for e in srv.log if e[0] == "tm_set_synchronous_mode"}
        for addr, srv in mod.servers.items()
    }
    assert tm_ports == {A: {8000}, B: {8002}}  # one traffic manager port per server


def test_cli_all_servers_dead_is_incomplete_with_missing_seeds(
    tmp_path, monkeypatch, capsys, seeds, reference
):
    mod = standin_servers([A, B], **{A: {"die_after_ticks": 40}, B: {"die_after_ticks": 250}})
    rep = tmp_path / "report"
    code, doc, out = eval_cli(
        tmp_path, monkeypatch, mod, [A, B], len(seeds), capsys, "--report", str(rep), "--no-video"
    )
    assert code == 1 and doc["complete"] is False
    row = doc["policies"]["expert"]
    status = row["episode_status"]
    missing = [st["seed"] for st in status if st["status"] == "missing"]
    ran = [st["seed"] for st in status if st["status"] == "ok"]
    assert missing and doc["missing_seeds"] == row["missing_seeds"] == sorted(missing)
    assert sorted(missing + ran) == sorted(seeds) and row["complete"] is False
    assert row["episodes_run"] == len(ran) == len(row["episodes"])
    by_seed = dict(zip(seeds, reference, strict=True))
    assert same(row["episodes"], [by_seed[s] for s in ran])  # those that ran are right
    assert {s["server"] for s in doc["carla"]["failed_servers"]} == {A, B}
    assert not any(s["alive"] for s in doc["carla"]["servers"])
    line = next(ln for ln in out.splitlines() if ln.startswith("INCOMPLETE"))
    assert str(missing) in line and A in line and B in line
    # the report's files say so too, and its JSON is the full document
    assert (rep / "results.md").read_text().startswith(f"**{line}**")
    assert "INCOMPLETE" in (rep / "index.html").read_text()
    assert json.loads((rep / "results.json").read_text())["complete"] is False


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--workers", "2"], "--workers"),
        (["--suite", "lane"], "--suite"),
        (["--wheelbase-m", "2.5"], "--wheelbase-m"),
    ],
)
def test_cli_refuses_what_does_not_apply_to_carla(tmp_path, monkeypatch, capsys, extra, match):
    monkeypatch.setitem(sys.modules, "carla", standin_servers([A]))
    code = cli.main(["eval", "--env", "carla", "--carla-servers", A, "--policy", "expert",
                     "--episodes", "1", *extra])  # fmt: skip
    assert code == 2 and match in capsys.readouterr().err


def test_carla_servers_with_the_embedded_env_is_refused(capsys):
    code = cli.main(["eval", "--env", "embedded", "--carla-servers", A, "--policy", "expert"])
    assert code == 2 and "--env carla" in capsys.readouterr().err


def test_checkpoint_policy_is_told_the_carla_camera_and_car(seeds, monkeypatch):
    told = []
    real = cs.make_policy

    def spy(spec, batch, device, cfg):
        told.append(cfg.camera_and_vehicle())
        return real("expert", batch, device, None)

    monkeypatch.setattr(cs, "make_policy", spy)
    mod = standin_servers([A])
    pool = pool_of(mod, [A])
    assert pool.run_policy("some.pt", seeds[:2], CFG).complete
    ((camera, vehicle),) = told  # one policy per server, kept across its episodes
    probe = CarlaDriveEnv(carla_module=mod, **ENV_KW)
    assert camera == probe.camera_spec()
    assert vehicle["wheelbase_m"] == pytest.approx(mod.servers[A].wheelbase_m)
    off = pool_of(mod, [A]).run_policy(
        "x.pt", seeds[:1], dataclasses.replace(CFG, tell_policy=False)
    )
    assert off.complete and told[-1] == (None, None)
    assert np.isfinite(vehicle["max_steer_deg"])
