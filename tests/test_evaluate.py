"""Closed-loop evaluation: the CLI's JSON, shared seeds, interventions, robustness options."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from sim.seeds import eval_seeds
from steering_agent.cli import main
from steering_agent.evaluation import metrics
from steering_agent.evaluation.vec_eval import (
    EvalConfig,
    ExpertPolicy,
    Perturbations,
    make_policy,
    run_episodes,
)
from steering_agent.policy.checkpoint import save_checkpoint
from steering_agent.policy.model import ModelConfig, SteeringNet
from steering_agent.policy.preprocess import PreprocessConfig

ROUTE_M = 20.0  # about 40 steps at the expert's 10 m/s


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory):
    """Untrained CNN+LSTM and CNN checkpoints: the evaluation's plumbing, not quality."""
    folder = tmp_path_factory.mktemp("ckpt")
    paths = {}
    for i, arch in enumerate(("cnn_lstm", "cnn")):
        torch.manual_seed(i)
        cfg = ModelConfig(arch=arch, feature_dim=16, hidden_dim=8)
        prov = {"note": "random weights for tests", "torch_version": str(torch.__version__)}
        paths[arch] = save_checkpoint(
            folder / f"{arch}.pt", SteeringNet(cfg), cfg, PreprocessConfig(), prov
        )
    return paths


@pytest.fixture
def one_thread():
    """One torch thread (as `eval` uses): much faster than two on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class ConstantSteer:
    """A stand-in policy that always steers hard left: it must need rescuing."""

    name = "constant"

    def reset(self, indices=None) -> None:
        pass

    def act(self, images, stamps, speeds, expert, active):
        out = expert.copy()
        out[:, 0] = -1.0
        return out


def _steer(traces):
    return [np.asarray(t.steer) for t in traces]


def test_eval_cli_expert_and_checkpoints_share_seeds(tmp_path, tiny_checkpoints):
    out = tmp_path / "eval.json"
    rc = main(
        [
            "eval",
            "--policy", "expert",
            "--policy", str(tiny_checkpoints["cnn_lstm"]),
            "--policy", str(tiny_checkpoints["cnn"]),
            "--episodes", "2",
            "--seed", "3",
            "--route-length-m", str(ROUTE_M),
            "--num-envs", "2",
            "--threads", "1",
            "--json", str(out),
            "--quiet",
        ]
    )  # fmt: skip
    assert rc == 0
    doc = json.loads(out.read_text())
    assert doc["settings"]["seeds"] == eval_seeds(2, start=3)
    assert list(doc["policies"]) == ["expert", "cnn_lstm", "cnn"]
    for row in doc["policies"].values():
        assert set(metrics.SUMMARY_KEYS) <= set(row)
        assert [e["seed"] for e in row["episodes"]] == doc["settings"]["seeds"]
    expert = doc["policies"]["expert"]
    assert expert["interventions"] == 0
    assert expert["autonomy_pct"] == pytest.approx(100.0)
    assert expert["route_completion_pct"] == pytest.approx(100.0)
    assert expert["distance_km"] == pytest.approx(2 * ROUTE_M / 1000, rel=0.05)
    assert isinstance(doc["versions"]["torch"], str) and doc["versions"]["torch"]
    # throughput: the distance and time of every policy's episodes, and their ratio in km/h
    rows = doc["policies"].values()
    tp = doc["throughput"]
    assert tp["distance_km"] == pytest.approx(sum(row["distance_km"] for row in rows))
    assert tp["wall_s"] == pytest.approx(sum(row["wall_s"] for row in rows))
    assert all(isinstance(row["wall_s"], float) and row["wall_s"] > 0 for row in rows)
    assert tp["sim_km_per_hour"] == pytest.approx(tp["distance_km"] / tp["wall_s"] * 3600)


def test_training_seeds_are_refused(capsys):
    rc = main(["eval", "--policy", "expert", "--seeds", "5", "1000001", "--quiet"])
    assert rc == 2
    assert "training seeds" in capsys.readouterr().err


def test_missing_checkpoint_names_the_path(tmp_path, capsys):
    missing = tmp_path / "nope.pt"
    rc = main(["eval", "--policy", str(missing), "--episodes", "1", "--route-length-m", "20"])
    assert rc == 2
    assert str(missing) in capsys.readouterr().err


def test_bad_policy_is_rescued_and_the_route_completed():
    cfg = EvalConfig(route_length_m=40.0, num_envs=1)
    (trace,) = run_episodes(ConstantSteer(), eval_seeds(1), cfg)
    m = metrics.summarize_episode(trace)
    assert m.interventions >= 2  # rescued, then drove on
    assert m.route_completion_pct == pytest.approx(100.0)
    assert m.autonomy_pct < 100.0
    # Every recorded excursion beyond 1 m is one intervention, and only those.
    beyond = np.flatnonzero(np.abs(trace.lateral_error_m) > metrics.INTERVENTION_THRESHOLD_M)
    assert set(beyond) <= set(trace.intervention_steps)


def test_perturbations_are_deterministic_and_change_behaviour():
    seeds = eval_seeds(2)
    plain = EvalConfig(route_length_m=ROUTE_M, num_envs=2)
    shaky = EvalConfig(
        route_length_m=ROUTE_M, num_envs=2, perturb=Perturbations(frame_drop=0.5, control_delay=3)
    )
    base = _steer(run_episodes(ExpertPolicy(), seeds, plain))
    a = _steer(run_episodes(ExpertPolicy(), seeds, shaky))
    b = _steer(run_episodes(ExpertPolicy(), seeds, shaky))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)  # same seed -> same result
    assert any(len(x) != len(y) or not np.array_equal(x, y) for x, y in zip(a, base, strict=True))
    # The first three executed commands are the neutral ones waiting in the delay FIFO.
    assert all(np.all(x[:3] == 0.0) for x in a)


def test_perturbations_do_not_depend_on_the_number_of_envs():
    seeds = eval_seeds(3)
    p = Perturbations(frame_drop=0.3, control_delay=1)
    one = run_episodes(ExpertPolicy(), seeds, EvalConfig(ROUTE_M, num_envs=1, perturb=p))
    three = run_episodes(ExpertPolicy(), seeds, EvalConfig(ROUTE_M, num_envs=3, perturb=p))
    assert [t.seed for t in one] == [t.seed for t in three] == seeds
    for x, y in zip(_steer(one), _steer(three), strict=True):
        np.testing.assert_array_equal(x, y)


def test_image_noise_and_brightness_reach_a_checkpoint_policy(tiny_checkpoints, one_thread):
    seeds = eval_seeds(1)
    path = str(tiny_checkpoints["cnn_lstm"])

    def drive(**kw):
        cfg = EvalConfig(ROUTE_M, num_envs=1, perturb=Perturbations(**kw))
        return _steer(run_episodes(make_policy(path, 1, "cpu"), seeds, cfg))[0]

    clean = drive()
    noisy = drive(image_noise=20.0, brightness=40.0)
    np.testing.assert_array_equal(noisy, drive(image_noise=20.0, brightness=40.0))
    assert not np.array_equal(clean[: len(noisy)], noisy[: len(clean)])


@pytest.mark.parametrize(
    ("flag", "value"),
    [("--frame-drop", "1.5"), ("--image-noise", "-1"), ("--num-envs", "0"), ("--threads", "0")],
)
def test_bad_settings_are_refused(flag, value, capsys):
    with pytest.raises(SystemExit) as e:  # refused by the parser, before any work
        main(["eval", "--policy", "expert", "--episodes", "1", flag, value, "--quiet"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert flag in err and len(err.strip().splitlines()) == 1


SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "cnn_lstm.pt"


@pytest.mark.slow
def test_shipped_model_drives_a_4_3_camera_through_the_aspect_crop():
    """Trained on 200x66 frames; an 800x600 frame keeps its centre 800x264 rows. The
    whole frame squeezed to 200x66 needed 61 interventions in 3 x 300 m (docs/history.md)."""
    cfg = EvalConfig(route_length_m=300.0, num_envs=1, width=800, height=600)
    from steering_agent.policy.checkpoint import load_checkpoint

    assert load_checkpoint(SHIPPED).preprocess_config.aspect_crop
    policy = make_policy(str(SHIPPED), batch_size=1, device="cpu")
    (trace,) = run_episodes(policy, eval_seeds(1), cfg)
    m = metrics.summarize_episode(trace)
    assert m.interventions == 0 and m.route_completion_pct == pytest.approx(100.0)
    assert m.mean_abs_lateral_m < 0.3


def test_policies_of_one_file_name_are_told_apart_by_their_folders():
    from steering_agent.evaluation.evaluate import file_label, unique_names

    assert unique_names(["expert", "a/cnn.pt", "b/cnn.pt", "c/cnn_lstm.pt"]) == [
        "expert", "a/cnn", "b/cnn", "cnn_lstm",
    ]  # fmt: skip
    assert unique_names(["x/a/cnn.pt", "y/a/cnn.pt", "x/a/cnn.pt"]) == [
        "x/a/cnn", "y/a/cnn", "x/a/cnn_2",
    ]  # fmt: skip
    assert unique_names(["cnn.pt", "cnn.pt", "expert", "expert"]) == [
        "cnn", "cnn_2", "expert", "expert_2",
    ]  # fmt: skip
    assert file_label("a/cnn") == "a_cnn"
    specs = ["expert", "hold:expert", "a/cnn.pt", "hold:b/cnn.pt", "lane-follower"]
    assert unique_names(specs) == [
        "expert", "hold:expert", "a/cnn", "hold:b/cnn", "lane-follower",
    ]  # fmt: skip


def test_eval_takes_a_camera_and_car_and_tells_the_policy(tmp_path):
    """--camera-* and the vehicle options reach the env and, through its camera_spec and
    vehicle_spec, the policy (the bridge's mount is calibrated, not squeezed)."""
    from steering_agent import cli
    from steering_agent.common.package_files import shipped_checkpoint
    from steering_agent.evaluation.vec_eval import EvalConfig, make_policy

    out = tmp_path / "cam.json"
    argv = ["eval", "--policy", str(shipped_checkpoint()), "--episodes", "1",
            "--route-length-m", "40", "--width", "320", "--height", "240", "--camera-pitch-deg",
            "0", "--camera-height-m", "2", "--camera-x-m", "2", "--max-steer-deg", "40",
            "--quiet", "--json", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    doc = json.loads(out.read_text())
    assert doc["settings"]["camera_pitch_deg"] == 0.0 and doc["settings"]["max_steer_deg"] == 40
    cfg = EvalConfig(width=320, height=240, env_kwargs=(("camera_pitch_deg", 0.0),
                                                        ("max_steer_deg", 40.0)))  # fmt: skip
    policy = make_policy(str(shipped_checkpoint()), 1, "cpu", cfg)._policy
    assert policy.calibration is not None and policy.calibration.real.pitch_deg == 0.0
    assert policy.vehicle.max_steer_deg == 40.0


def test_uncalibrated_means_the_policy_is_not_told_the_camera():
    from steering_agent.common.package_files import shipped_checkpoint
    from steering_agent.evaluation.vec_eval import EvalConfig, make_policy

    kw = (("camera_pitch_deg", 0.0),)
    told = make_policy(str(shipped_checkpoint()), 1, "cpu", EvalConfig(env_kwargs=kw))
    blind = make_policy(
        str(shipped_checkpoint()), 1, "cpu", EvalConfig(env_kwargs=kw, tell_policy=False)
    )
    assert told._policy.calibration is not None and blind._policy.calibration is None


def test_eval_suite_cameras_drives_every_cell_and_writes_one_row_each(tmp_path, monkeypatch):
    from steering_agent import cli
    from steering_agent.evaluation import suites

    cells = suites.camera_cells()
    assert len({c.name for c in cells}) == len(cells) == 18
    small = [cells[0], next(c for c in cells if c.name == "carla_bridge")]
    monkeypatch.setattr(suites, "camera_cells", lambda: small)
    out = tmp_path / "grid.json"
    argv = ["eval", "--policy", "expert", "--suite", "cameras", "--episodes", "1",
            "--route-length-m", "20", "--quiet", "--json", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    doc = json.loads(out.read_text())
    rows = doc["suites"]["cameras"]["policies"]["expert"]["cells"]
    assert list(rows) == ["canonical", "carla_bridge"]
    assert rows["carla_bridge"]["settings"]["camera_x_m"] == 2.0
    assert all(r["distance_km"] == pytest.approx(0.02, abs=1e-3) for r in rows.values())
    assert doc["command"].startswith("steering-agent eval") and "--suite cameras" in doc["command"]
