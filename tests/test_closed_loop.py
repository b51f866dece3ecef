"""`steering-agent closed-loop`: sim_bridge and agent as two processes over DDS."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from sim.seeds import eval_seeds
from steering_agent.cli import main
from steering_agent.ros import closed_loop

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "checkpoints" / "cnn_lstm.pt"

pytestmark = [pytest.mark.ros, pytest.mark.slow, pytest.mark.usefixtures("domain")]


def _closed_loop(tmp_path: Path, *args: str) -> tuple[int, dict]:
    out = tmp_path / "result.json"
    rc = main(["closed-loop", "--workdir", str(tmp_path / "work"), "--out", str(out), *args])
    return rc, json.loads(out.read_text())


def _every_frame_got_exactly_one_command(r: dict) -> None:
    assert r["frames"] > 0
    assert r["frames_answered"] == r["frames"], r
    assert r["frames_without_control"] == 0 and r["duplicate_controls"] == 0
    assert r["bridge"]["unmatched_controls"] == 0
    assert r["agent"]["frames"] == r["frames"]  # the node stepped its policy once per frame


def _node_timing_is_reported(r: dict) -> None:
    """The agent's per-frame time: every percentile, in ms, in order (not how fast)."""
    ms = r["agent_frame_ms"]
    assert set(ms) == {"median", "p90", "p99", "max"}, ms
    assert all(isinstance(v, float) for v in ms.values()), ms
    assert 0 <= ms["median"] <= ms["p90"] <= ms["p99"] <= ms["max"], ms


def test_sync_carla_commands_one_per_frame_and_recorded(tmp_path, checkpoint):
    rc, r = _closed_loop(
        tmp_path, "--seed", str(eval_seeds(1)[0]), "--route-length-m", "25",
        "--width", "200", "--height", "66", "--checkpoint", str(checkpoint),
        "--control-type", "carla", "--timeout", "180", "--record", str(tmp_path / "bag"),
    )  # fmt: skip
    assert rc == 0 and r["status"] == "done", r
    assert r["reason"] in ("route_complete", "off_road")  # an untrained model may leave
    assert r["bridge"]["accepts"] == ["carla"]
    _every_frame_got_exactly_one_command(r)
    _node_timing_is_reported(r)
    assert list((tmp_path / "bag").rglob("metadata.yaml")), "the recorder wrote no bag"


def test_realtime_twist_loop_reports_dropped_frames(tmp_path, checkpoint):
    rc, r = _closed_loop(
        tmp_path, "--route-length-m", "15", "--mode", "realtime", "--width", "200",
        "--height", "66", "--checkpoint", str(checkpoint), "--control-type", "twist",
        "--timeout", "180",
    )  # fmt: skip
    assert rc == 0 and r["status"] == "done", r
    assert r["mode"] == "realtime" and r["bridge"]["accepts"] == ["twist"]
    # Frames may go unanswered in real time; the counts must add up.
    for key in ("frames", "frames_answered", "frames_without_control", "controls"):
        assert isinstance(r[key], int), (key, r)
    assert r["frames"] > 0 and r["frames_answered"] > 0, r
    assert r["frames_answered"] + r["frames_without_control"] == r["frames"], r
    assert r["controls"] >= r["frames_answered"] + r["duplicate_controls"], r
    assert r["agent"]["control_type"] == "twist"
    assert 0 < r["agent"]["frames"] <= r["frames"] + r["bridge"]["frames_resent"], r["agent"]
    _node_timing_is_reported(r)


def test_shipped_model_drives_1km_of_an_eval_seed_in_lane(tmp_path):
    rc, r = _closed_loop(
        tmp_path, "--seed", str(eval_seeds(1)[0]), "--route-length-m", "1000",
        "--checkpoint", str(SHIPPED), "--control-type", "carla", "--timeout", "300",
    )  # fmt: skip
    brief = {k: v for k, v in r.items() if k not in ("bridge", "agent")}
    assert rc == 0 and r["reason"] == "route_complete", brief
    assert r["distance_m"] >= 1000.0 and r["interventions"] == 0, brief
    assert r["bridge"]["off_road_steps"] == 0
    _every_frame_got_exactly_one_command(r)


def test_a_level_high_camera_drives_through_dds_with_the_ground_memory(tmp_path):
    """The simulator's camera 2 m high and level (it sees no ground nearer than 6 m), the
    agent told so by the command line: it calibrates, fills the ground it misses from
    earlier frames while the speedometer runs, and keeps the lane. Without a speed
    (`speed_source: none`) there is no fill, and it drives well off centre."""
    rc, r = _closed_loop(
        tmp_path, "--route-length-m", "1000", "--checkpoint", str(SHIPPED),
        "--camera-height-m", "2.0", "--camera-pitch-deg", "0", "--timeout", "300",
    )  # fmt: skip
    brief = {k: v for k, v in r.items() if k not in ("bridge", "agent")}
    assert rc == 0 and r["interventions"] == 0, brief
    _every_frame_got_exactly_one_command(r)
    log = (tmp_path / "work" / "agent.log").read_text()
    assert "z=2 m, pitch=0" in log and "filled from earlier frames" in log
    blind = closed_loop.run_closed_loop(
        eval_seeds(1)[0], 1000.0, checkpoint=str(SHIPPED), workdir=tmp_path / "blind",
        camera={"camera_height_m": 2.0, "camera_pitch_deg": 0.0},
        agent_overrides={"speed_source": "none"},
    )  # fmt: skip
    assert blind["status"] == "done"
    # 0.044 against 0.140 m when measured
    assert r["mean_abs_lateral_m"] < 0.6 * blind["mean_abs_lateral_m"], (brief, blind)


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="CPU affinity: Linux")
def test_a_node_process_started_on_a_cpu_runs_there_with_its_threads(tmp_path):
    """closed_loop._start(cpus=...): the process and a thread it makes later are on the
    one CPU asked for (as measure_dds_latency pins the agent)."""
    cpu = sorted(os.sched_getaffinity(0))[-1]
    code = (
        "import os, threading, time\n"
        "time.sleep(0.3)\n"
        "seen = []\n"
        "t = threading.Thread(target=lambda: seen.append(sorted(os.sched_getaffinity(0))))\n"
        "t.start(); t.join()\n"
        "print(sorted(os.sched_getaffinity(0)), seen[0])\n"
    )
    log = tmp_path / "child.log"
    proc = closed_loop._start([sys.executable, "-c", code], log, cpus={cpu})
    assert proc.wait(30) == 0
    assert log.read_text().split("\n")[0] == f"[{cpu}] [{cpu}]"


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="CPU affinity: Linux")
def test_pinning_the_measurement_leaves_no_thread_of_this_process_pinned():
    """closed_loop._pinned: a thread made inside the block (as a DDS participant's) runs
    on the pinned CPU there, and on all of this process's CPUs again after it."""
    import threading

    allowed = os.sched_getaffinity(0)
    cpu = min(allowed)
    seen, go_on, stop = [], threading.Event(), threading.Event()

    def worker():
        seen.append(os.sched_getaffinity(0))
        go_on.set()
        stop.wait(10)

    with closed_loop._pinned({cpu}):
        assert os.sched_getaffinity(0) == {cpu}
        t = threading.Thread(target=worker)
        t.start()
        assert go_on.wait(10)
    try:
        assert seen == [{cpu}] and os.sched_getaffinity(0) == allowed
        assert os.sched_getaffinity(t.native_id) == allowed
    finally:
        stop.set()
        t.join()
