"""`steering-agent bench` on tiny settings: what every run delivers, never how fast.

Each suite must do the work it was asked for (every step simulated, every frame written,
none lost) and report it in the JSON's fields, units and counts. A measurement's value
is checked against a fake clock where one is used, so no test depends on this machine's
speed.
"""

from __future__ import annotations

import itertools
import json
import math
import os
from types import SimpleNamespace

import numpy as np
import pytest

import sim.bench
import steering_agent.policy.latency
from sim.env import DriveEnv
from steering_agent import bench
from steering_agent.cli import main
from steering_agent.data import recording


def fake_clock(seconds_per_call: float) -> SimpleNamespace:
    """A `time` module stand-in whose perf_counter advances a fixed step per call."""
    return SimpleNamespace(perf_counter=itertools.count(0.0, seconds_per_call).__next__)


def counted(monkeypatch, owner, name: str) -> list:
    """Wrap owner.name to count its calls; the returned list grows by one per call."""
    calls: list = []
    inner = getattr(owner, name)

    def wrapper(*args, **kwargs):
        calls.append(1)
        return inner(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)
    return calls


def test_measurement_statistics():
    j = bench.Measurement("x", "ms", [5.0, 1.0, 3.0, 2.0, 4.0], {"batch": 2}).to_json()
    assert j["median"] == 3.0
    assert j["p10"] == pytest.approx(1.4) and j["p90"] == pytest.approx(4.6)
    assert j["runs"] == [5.0, 1.0, 3.0, 2.0, 4.0]
    assert (j["name"], j["unit"], j["batch"]) == ("x", "ms", 2)
    assert bench.Skipped("y", "why").to_json() == {"name": "y", "skipped": "why"}


def test_table_shows_values_per_frame_and_skips():
    rows = [
        bench.Measurement("inference stateful, batch 64", "ms/step", [64.0], {"batch": 64}),
        bench.Skipped("ros latency", "rclpy is not importable"),
    ]
    text = bench.table(rows)
    assert "64.000" in text and "1.000" in text and "ms/frame" in text
    assert "skipped: rclpy is not importable" in text


def _check_measurement(r: dict, repeats: int, unit: str) -> None:
    """Fields, types, unit and counts of one measured result."""
    assert "skipped" not in r, r
    assert isinstance(r["name"], str) and r["unit"] == unit, r
    runs = r["runs"]
    assert len(runs) == repeats, r
    assert all(isinstance(v, float) and math.isfinite(v) for v in runs), r
    assert r["median"] == pytest.approx(float(np.median(runs)))
    assert min(runs) <= r["p10"] <= r["median"] <= r["p90"] <= max(runs), r


def _run_quick(tmp_path, suite: str, repeats: int = 2) -> dict:
    out = tmp_path / f"{suite}.json"
    assert main(["bench", suite, "--quick", "--repeats", str(repeats), "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["suites"] == [suite] and doc["repeats"] == repeats
    assert doc["quick"] is True and doc["device"] == "cpu"
    assert isinstance(doc["threads"], int) and doc["threads"] >= 1
    assert isinstance(doc["machine_and_versions"]["cores"], int)
    assert doc["machine_and_versions"]["cores"] >= 1
    assert isinstance(doc["machine_and_versions"]["torch"], str)
    assert doc["command"].startswith("steering-agent bench")
    assert doc["results"], doc
    return doc


def test_bench_cli_sim_and_record_quick(tmp_path, capsys, monkeypatch):
    # 0.5 s a clock reading: a rate of N steps over one timed interval is N / 0.5.
    monkeypatch.setattr(sim.bench, "time", fake_clock(0.5))
    monkeypatch.setattr(recording, "time", fake_clock(0.5))
    steps = counted(monkeypatch, DriveEnv, "step")
    written = counted(monkeypatch, recording.EpisodeBagWriter, "write_step")

    results = _run_quick(tmp_path, "sim")["results"]
    names = [f"sim {s}{look}" for s in ("200x66", "800x600") for look in ("", " varied")]
    rates = [r for r in results if r["unit"] == "steps/s"]
    assert [r["name"] for r in rates] == names
    for r in rates:
        _check_measurement(r, 2, "steps/s")
        assert r["steps_per_seed"] == 20 and r["runs"] == [40.0, 40.0]
    ratios = [r for r in results if r["unit"] == "ratio"]
    assert [r["name"] for r in ratios] == [f"sim {s} varied / plain" for s in ("200x66", "800x600")]
    assert all(r["runs"] == [1.0, 1.0] and r["goal_at_least"] == 0.5 for r in ratios)
    # sizes x looks x repeats x seeds x (warm-up + timed steps)
    assert len(steps) == 2 * 2 * 2 * 4 * (1 + 20)

    results = _run_quick(tmp_path, "record")["results"]
    assert [r["name"] for r in results] == ["record 200x66 (MCAP)", "record 800x600 (MCAP)"]
    for r in results:
        _check_measurement(r, 2, "frames/s")
        assert r["frames"] == 20 and r["runs"] == [40.0, 40.0]
    assert len(written) == 2 * 2 * 20  # every requested frame was written
    assert "frames/s" in capsys.readouterr().out


def test_sim_rate_counts_every_step_of_the_run(monkeypatch):
    monkeypatch.setattr(sim.bench, "time", fake_clock(0.25))
    steps = counted(monkeypatch, DriveEnv, "step")
    assert sim.bench.sim_steps_per_second(200, 66, steps=7, seed=0) == pytest.approx(28.0)
    assert len(steps) == 1 + 7  # one untimed warm-up step, then the 7 timed ones


@pytest.mark.slow
def test_bench_cli_eval_quick(tmp_path, capsys, monkeypatch):
    # 3.6 s a clock reading: km per hour over one reading is the metres driven.
    monkeypatch.setattr(bench, "time", fake_clock(3.6))
    results = _run_quick(tmp_path, "eval")["results"]
    assert [r["name"] for r in results] == ["eval agent", "eval expert"]
    for r in results:
        _check_measurement(r, 2, "sim km/h")
        assert (r["num_envs"], r["route_length_m"], r["size"]) == (2, 30.0, "200x66")
        assert r["runs"][0] == pytest.approx(r["runs"][1])  # the same seeds: the same drive
        assert 0 < r["runs"][0] <= 2 * 30.0 * 1.05
    agent, expert = results
    assert isinstance(agent["model"], str) and agent["model"]
    assert expert["runs"][0] == pytest.approx(2 * 30.0, rel=0.05)  # both routes driven
    assert "sim km/h" in capsys.readouterr().out


@pytest.mark.slow
def test_bench_cli_inference_quick(tmp_path, monkeypatch):
    # 2 ms a clock reading: every timed control step takes exactly 2 ms.
    monkeypatch.setattr(steering_agent.policy.latency, "time", fake_clock(0.002))
    everything = _run_quick(tmp_path, "inference", repeats=1)["results"]
    results = [r for r in everything if "window" in r]
    modes = {(r["backend"], r["batch"], r["window"]) for r in results}
    backends = ("onnxruntime", "torch")
    assert modes == {(k, b, w) for k in backends for b in (1, 2) for w in (None, 16, 32)}
    assert len(results) == len(modes)
    for r in results:
        _check_measurement(r, 1, "ms/step")
        assert r["runs"] == [pytest.approx(2.0)] and r["calls_per_run"] == 2
        assert isinstance(r["model"], str) and r["model"]
    # beside each batch-1 stateful step: the bare encoder and the step / encoder ratio
    extra = {r["name"]: r for r in everything if "window" not in r}
    assert len(extra) == 4
    for k in backends:
        enc = extra[f"inference encoder alone, batch 1, {k}"]
        _check_measurement(enc, 1, "ms/step")
        assert enc["runs"] == [pytest.approx(2.0)]
        assert (enc["blocks"], enc["calls_per_block"]) == (1, 2)  # --quick: one short block
        ratio = extra[f"inference stateful step / encoder, batch 1, {k}"]
        assert ratio["unit"] == "ratio" and ratio["goal_at_most"] == 1.2
        assert ratio["runs"] == [pytest.approx(1.0)]  # 2 ms over 2 ms


def test_encoder_runner_runs_the_encoder_on_both_backends():
    from steering_agent.policy.latency import encoder_runner
    from steering_agent.policy.model import ModelConfig, SteeringNet

    model = SteeringNet(ModelConfig()).eval()
    calls = []
    model.encoder.register_forward_hook(lambda *a: calls.append(1))
    x = np.zeros((1, 3, 66, 200), np.float32)
    encoder_runner(model, "torch")(x)
    assert len(calls) == 1  # the torch runner is the module's own forward
    encoder_runner(model, "onnxruntime")(x)  # an exported graph: runs without error


def test_bench_cli_train_quick(tmp_path):
    """Frames/s of the training loop on a dataset recorded for it, and the peak memory."""
    results = _run_quick(tmp_path, "train", repeats=1)["results"]
    fps = results[0]
    assert fps["name"] == "train frames/s (train_epoch)" and fps["unit"] == "frames/s"
    assert fps["median"] > 0 and len(fps["runs"]) == 1
    assert fps["frames_per_run"] % (fps["batch"] * fps["seq_len"]) == 0
    assert fps["frames_per_run"] > 0
    if len(results) > 1:  # Linux: /proc gives the resident memory
        assert results[1]["unit"] == "KiB/frame" and results[1]["median"] >= 0


def test_bad_repeats_is_refused(capsys):
    with pytest.raises(SystemExit) as e:  # refused by the parser, before any work
        main(["bench", "sim", "--repeats", "0"])
    assert e.value.code == 2
    assert "--repeats" in capsys.readouterr().err


@pytest.mark.ros
@pytest.mark.slow
def test_bench_cli_ros_quick(tmp_path, ros_domain):
    everything = _run_quick(tmp_path, "ros", repeats=1)["results"]
    results = [r for r in everything if r["unit"] != "ratio"]
    names = [r["name"] for r in results]
    sizes = ("200x66", "800x600")
    pinned = len(os.sched_getaffinity(0)) >= 2  # then 800x600 also with one CPU each
    sizes += ("800x600 pinned",) if pinned else ()
    assert names == [f"ros {kind} {size}" for size in sizes
                     for kind in ("camera->control", "node per-frame")], results  # fmt: skip
    if pinned:
        cpus = sorted(os.sched_getaffinity(0))[:2]
        assert results[4]["cpus"] == results[5]["cpus"] == dict(camera=cpus[0], agent=cpus[1])
        ratio = [r for r in everything if r["name"].endswith("800x600 pinned")][-1]
        assert ratio["unit"] == "ratio" and "goal_at_most" not in ratio  # the goal: unpinned
        assert ratio["runs"][0] == pytest.approx(results[4]["runs"][0] / results[5]["runs"][0])
    ratios = {r["name"]: r for r in everything if r["unit"] == "ratio"}
    node = ratios["ros node per-frame 800x600 / 200x66"]
    assert node["goal_at_most"] == 1.15
    assert node["runs"][0] == pytest.approx(results[3]["runs"][0] / results[1]["runs"][0])
    dds = ratios["ros camera->control / node per-frame 800x600"]
    assert dds["goal_at_most"] == 1.5
    assert dds["runs"][0] == pytest.approx(results[2]["runs"][0] / results[3]["runs"][0])
    for r in results:
        _check_measurement(r, 1, "ms")
        assert r["frames"] == 20 and r["lost"] == [0], r  # every frame was answered
    for r in results[::2]:  # camera->control: its own p99 of the same run
        assert len(r["p99_ms"]) == 1 and r["p99_ms"][0] >= r["median"], r


def test_bench_cli_preprocess_quick(tmp_path, monkeypatch):
    """Plain 200x66, plain and calibrated 800x600, from RGB, from BGRA and through RGB,
    each the median of exactly the frames asked for, timed by the module's clock; then
    the calibrated / plain ratios."""
    from steering_agent.policy import calibration, latency

    monkeypatch.setattr(latency, "time", fake_clock(0.002))  # 2 ms a clock reading
    applied = counted(monkeypatch, calibration.CameraCalibration, "view")
    filled = counted(monkeypatch, calibration.GroundMemory, "fill")
    everything = _run_quick(tmp_path, "preprocess")["results"]
    results = [r for r in everything if r["unit"] != "ratio"]
    cal = "calibrated (CARLA bridge mount)"
    assert [r["name"] for r in results] == [
        "preprocess 200x66", "preprocess 800x600", f"preprocess 800x600 {cal}",
        "preprocess 200x66 bgra8", "preprocess 800x600 bgra8",
        f"preprocess 800x600 bgra8 {cal}",
        f"preprocess 800x600 bgra8 {cal} + ground memory",
        "preprocess 800x600 bgra8 via rgb (the node before)",
        f"preprocess 800x600 bgra8 via rgb {cal}",
    ]  # fmt: skip
    for r in results:
        _check_measurement(r, 2, "ms/frame")
        assert r["frames"] == 30 and r["median"] == pytest.approx(2.0)
    # two repeats of warm-up + timed frames, for each of the four calibrated rows
    assert len(applied) == 4 * 2 * (30 + 30)
    assert len(filled) == 2 * (30 + 30)  # the ground memory: its row's frames only
    ratios = [r for r in everything if r["unit"] == "ratio"]
    assert len(ratios) == 4
    for r in ratios:
        assert r["goal_at_most"] == 1.0 and r["runs"] == [pytest.approx(1.0)] * 2
