"""`steering-agent bench` on tiny settings: JSON shape, statistics, machine and versions."""

from __future__ import annotations

import json

import pytest

from steering_agent import bench
from steering_agent.cli import main


def test_measurement_statistics():
    j = bench.Measurement("x", "ms", [5.0, 1.0, 3.0, 2.0, 4.0]).to_json()
    assert j["median"] == 3.0
    assert j["p10"] == pytest.approx(1.4) and j["p90"] == pytest.approx(4.6)
    assert j["runs"] == [5.0, 1.0, 3.0, 2.0, 4.0]


def test_table_shows_values_per_frame_and_skips():
    rows = [
        bench.Measurement("inference stateful, batch 64", "ms/step", [64.0], {"batch": 64}),
        bench.Skipped("ros latency", "rclpy is not importable"),
    ]
    text = bench.table(rows)
    assert "64.000" in text and "1.000" in text and "ms/frame" in text
    assert "skipped: rclpy is not importable" in text


def _run_quick(tmp_path, suite: str) -> dict:
    out = tmp_path / f"{suite}.json"
    assert main(["bench", suite, "--quick", "--repeats", "2", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["suites"] == [suite] and doc["repeats"] == 2 and doc["threads"] >= 1
    assert doc["machine_and_versions"]["cores"] >= 1
    assert doc["machine_and_versions"]["torch"]
    measured = [r for r in doc["results"] if "skipped" not in r]
    assert measured, doc["results"]
    for r in measured:
        assert len(r["runs"]) == 2 and r["p10"] <= r["median"] <= r["p90"]
        assert r["median"] > 0
    return doc


def test_bench_cli_sim_and_record_quick(tmp_path, capsys):
    names = [r["name"] for r in _run_quick(tmp_path, "sim")["results"]]
    assert names == ["sim 200x66", "sim 800x600"]
    names = [r["name"] for r in _run_quick(tmp_path, "record")["results"]]
    assert names == ["record 200x66 (MCAP)", "record 800x600 (MCAP)"]
    assert "frames/s" in capsys.readouterr().out


@pytest.mark.slow
def test_bench_cli_eval_quick(tmp_path, capsys):
    names = [r["name"] for r in _run_quick(tmp_path, "eval")["results"]]
    assert names == ["eval agent", "eval expert"]
    assert "sim km/h" in capsys.readouterr().out


@pytest.mark.slow
def test_bench_cli_inference_quick(tmp_path):
    out = tmp_path / "bench.json"
    assert main(["bench", "inference", "--quick", "--repeats", "1", "--json", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    modes = {(r["backend"], r["batch"], r["window"]) for r in results}
    backends = ("onnxruntime", "torch")
    assert modes == {(k, b, w) for k in backends for b in (1, 2) for w in (None, 16, 32)}
    assert all(r["median"] > 0 and r["unit"] == "ms/step" for r in results)


def test_bad_repeats_is_refused(capsys):
    assert main(["bench", "sim", "--repeats", "0"]) == 2
    assert "--repeats" in capsys.readouterr().err


@pytest.mark.ros
@pytest.mark.slow
def test_bench_cli_ros_quick(tmp_path, ros_domain):
    doc = _run_quick_once(tmp_path, "ros")
    names = [r["name"] for r in doc["results"]]
    assert "ros camera->control 200x66" in names, doc["results"]


def _run_quick_once(tmp_path, suite: str) -> dict:
    out = tmp_path / f"{suite}.json"
    assert main(["bench", suite, "--quick", "--repeats", "1", "--json", str(out)]) == 0
    return json.loads(out.read_text())
