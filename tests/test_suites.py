"""The named suites: their cells and seeds, and `eval --suite` end to end."""

from __future__ import annotations

import json

import pytest

from sim.seeds import EVAL_SEED_START, eval_seeds
from steering_agent.cli import main
from steering_agent.evaluation import faults, metrics, suites

REQUIRED = ("driving_score", "route_completion_pct", "lane_departures_per_km", "collisions",
            "autonomy_pct", "mean_abs_lateral_m", "p95_abs_lateral_m",
            "lat_accel_exceed_per_km", "lat_jerk_exceed_per_km")  # fmt: skip


def test_suites_resolve_to_their_documented_cells():
    assert [s.name for s in suites.resolve_suites(["all"])] == [
        "lane", "world", "cameras", "memory", "highway"]  # fmt: skip
    assert [s.name for s in suites.resolve_suites(["memory", "lane", "memory"])] == [
        "memory", "lane"]  # fmt: skip
    with pytest.raises(ValueError, match="known"):
        suites.resolve_suites(["nope"])
    assert [c.name for c in suites.lane_cells()] == ["plain"]
    mem = suites.memory_cells()
    kinds = {c.fault.kind for c in mem}
    assert kinds == {"black", "frozen", "missing", "burst", "glare", "dim", "latency"}
    assert [c.name for c in mem] == [f.name for f in faults.memory_faults()]
    black = [c.fault for c in mem if c.fault.kind == "black"]
    assert min(f.duration_s[0] for f in black) == 0.3 and max(f.duration_s[1] for f in black) == 1.5
    for cell in suites.highway_cells():
        kw = dict(cell.env_kwargs)
        assert kw["look"] == "varied" and 2 <= kw["lanes_per_direction"] <= 4
        assert 20.0 <= kw["target_speed_mps"] <= 25.0
    assert all(dict(c.env_kwargs)["look"] == "varied" for c in suites.world_cells())
    assert len(suites.SUITES["cameras"].cells()) == 18
    for suite in suites.SUITES.values():
        assert suite.seed_offset >= 0 and suite.episodes >= 1 and suite.route_length_m > 0
        assert min(eval_seeds(suite.episodes, suite.seed_offset)) >= EVAL_SEED_START


def test_eval_suite_lane_and_memory_end_to_end(tmp_path, monkeypatch):
    mem = suites.memory_cells()
    few = [c for c in mem if c.name in ("blackout_long", "no_frames", "latency_200ms")]
    small = suites.Suite("memory", lambda: few, 5, 300.0, about="camera faults")
    monkeypatch.setitem(suites.SUITES, "memory", small)
    out = tmp_path / "suites.json"
    argv = ["eval", "--policy", "expert", "--policy", "hold:expert", "--suite", "lane",
            "--suite", "memory", "--episodes", "1", "--route-length-m", "100", "--quiet",
            "--json", str(out)]  # fmt: skip
    assert main(argv) == 0
    doc = json.loads(out.read_text())
    assert doc["penalties"]["coefficients"]["collision_vehicle"] == 0.60
    assert list(doc["suites"]) == ["lane", "memory"]
    for suite in doc["suites"].values():
        assert suite["seeds"] == eval_seeds(1) and suite["route_length_m"] == 100.0
        assert list(suite["policies"]) == ["expert", "hold:expert"]
        for row in suite["policies"].values():
            for r in (row, *row["cells"].values()):
                for key in REQUIRED:
                    assert key in r and key + "_ci95" in r
                assert set(metrics.SUMMARY_KEYS) <= set(r)
    lane = doc["suites"]["lane"]["policies"]["expert"]
    assert lane["driving_score"] == pytest.approx(100.0)
    cells = doc["suites"]["memory"]["policies"]["expert"]["cells"]
    assert cells["no_frames"]["settings"]["fault"]["kind"] == "missing"
    # pooled over the cells: three episodes, so the CI exists
    assert doc["suites"]["memory"]["policies"]["expert"]["driving_score_ci95"] is not None


def test_unknown_suite_is_one_line(capsys):
    assert main(["eval", "--policy", "expert", "--suite", "nope", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and len(err.strip().splitlines()) == 1


def test_policy_targets_follow_the_speed_limit():
    import numpy as np

    from steering_agent.evaluation.vec_eval import EvalConfig, run_episodes

    class Target:
        name = "t"

        def __init__(self):
            self.targets = {}

        def reset(self, indices=None):
            pass

        def set_target_speed(self, row, mps):
            self.targets[row] = mps

        def act(self, images, stamps, speeds, expert, active):
            return expert

    p = Target()
    run_episodes(p, eval_seeds(1), EvalConfig(route_length_m=20.0, num_envs=1,
                 env_kwargs=(("target_speed_mps", 12.0),)))  # fmt: skip
    assert p.targets == {0: 12.0}
    p = Target()
    run_episodes(p, eval_seeds(1), EvalConfig(route_length_m=20.0, num_envs=1,
                 env_kwargs=(("look", "varied"),)))  # fmt: skip
    assert 5.0 <= p.targets[0] <= 25.0 and np.isfinite(p.targets[0])


def test_hold_checkpoint_and_lane_follower_specs_drive(tmp_path):
    import numpy as np
    import torch

    from steering_agent.evaluation.vec_eval import EvalConfig, make_policy, run_episodes
    from steering_agent.policy.checkpoint import save_checkpoint
    from steering_agent.policy.model import ModelConfig, SteeringNet
    from steering_agent.policy.preprocess import PreprocessConfig

    torch.manual_seed(0)
    mc = ModelConfig(arch="cnn_lstm", feature_dim=16, hidden_dim=8)
    path = save_checkpoint(tmp_path / "c.pt", SteeringNet(mc), mc, PreprocessConfig(), {})
    fault = faults.CameraFault("b", "black", (0.5, 0.5), (0.5, 0.5))
    cfg = EvalConfig(route_length_m=20.0, num_envs=1, fault=fault)
    policy = make_policy(f"hold:{path}", 1, "cpu", cfg)
    (trace,) = run_episodes(policy, eval_seeds(1), cfg)
    mask = fault.schedule(eval_seeds(1)[0], trace.steps, 0.05)
    steer = np.asarray(trace.steer)
    k = int(np.argmax(mask))
    assert mask.any() and np.all(steer[k : k + 5] == steer[k - 1])  # held through black
    pytest.importorskip("steering_agent.policy.lane_follower")
    lf = make_policy("lane-follower", 1, "cpu", EvalConfig(route_length_m=20.0, num_envs=1))
    (trace,) = run_episodes(lf, eval_seeds(1), EvalConfig(route_length_m=20.0, num_envs=1))
    assert trace.steps > 0 and np.all(np.isfinite(trace.steer))


def test_suite_report_page_links_existing_files_and_browser_videos(tmp_path):
    import re

    from steering_agent.cli import main
    from steering_agent.evaluation.video_probe import probe_video

    out = tmp_path / "report"
    argv = ["eval", "--policy", "expert", "--suite", "lane", "--episodes", "1",
            "--route-length-m", "40", "--report", str(out), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    page = (out / "index.html").read_text()
    refs = re.findall(r'(?:src|href)="([^"#]+)"', page)
    assert refs and all((out / r).is_file() for r in refs if "://" not in r), refs
    videos = [r for r in refs if r.endswith((".mp4", ".webm"))]
    assert videos and all(probe_video(out / v)["browser_playable"] for v in videos)
