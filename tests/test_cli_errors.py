"""A user's mistake at the command line: one line on stderr naming the option, exit 2,
no traceback, no work done and nothing left behind; finished work is kept.

Each class of mistake is tried on every verb it applies to (docs/reliability.md):
outputs that cannot be written, devices, numbers out of range, bad checkpoints; then
what must not be lost or mislabelled: an existing recording's index, a training run
without validation, autonomy below zero, two checkpoints of one name; and the
`recover` command for a bag whose recorder was killed.
"""

from __future__ import annotations

import importlib
import json
import pickle
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from steering_agent.cli import main
from steering_agent.common import cli_args
from steering_agent.policy.checkpoint import save_checkpoint
from steering_agent.policy.model import ModelConfig, SteeringNet
from steering_agent.policy.preprocess import PreprocessConfig

READ_ONLY = "/proc/steering_agent_no_such_dir/out"  # cannot be created, even by root

# Where each verb starts its work: called, it fails the test (nothing may run there).
WORK = {
    "drive": ("steering_agent.drive", "evaluate_policies"),
    "eval": ("steering_agent.evaluation.evaluate", "evaluate_policies"),
    "train": ("steering_agent.data.dataset", "load_episodes"),
    "bench": ("steering_agent.bench", "run_suites"),
    "record": ("steering_agent.data.record_verb", "record_episodes"),
    "closed-loop": ("steering_agent.ros.closed_loop", "run_closed_loop"),
    "export-onnx": ("steering_agent.policy.onnx_export", "export_onnx"),
    "sim-preview": ("sim.preview", "preview_grid"),
}


def run_cli(argv: list[str]) -> int:
    """`steering-agent ARGV` in this process; the exit code (argparse's SystemExit too)."""
    try:
        return main([str(a) for a in argv])
    except SystemExit as e:
        return int(e.code)


@pytest.fixture
def no_work(monkeypatch):
    """Every verb's work function replaced by one that fails the test when called."""

    def forbid(module: str, name: str) -> None:
        def started(*args, **kwargs):
            raise AssertionError(f"{module}.{name} ran: the mistake was not caught first")

        monkeypatch.setattr(importlib.import_module(module), name, started)

    for module, name in WORK.values():
        forbid(module, name)


def refused(capsys, argv: list[str], option: str, within_s: float = 1.0) -> str:
    """Runs `argv`; asserts exit 2 within `within_s`, one stderr line naming `option`, no
    traceback, nothing on stdout; returns the line."""
    importlib.import_module(WORK[argv[0]][0] if argv[0] in WORK else "steering_agent.cli")
    t0 = time.perf_counter()
    rc = run_cli(argv)
    wall = time.perf_counter() - t0
    cap = capsys.readouterr()
    lines = [ln for ln in cap.err.splitlines() if ln.strip()]
    assert rc == 2, (rc, cap.err)
    assert "Traceback" not in cap.err
    assert len(lines) == 1, cap.err
    assert option in lines[0], lines[0]
    assert wall < within_s, f"{wall:.2f} s before the refusal"
    return lines[0]


@pytest.fixture
def paths(tmp_path):
    """A folder, a plain file, and the data folder train needs to get going."""
    folder = tmp_path / "folder"
    folder.mkdir()
    file = tmp_path / "file"
    file.write_text("not a folder")
    data = tmp_path / "data"
    data.mkdir()
    return {"DIR": folder, "FILE": file, "DATA": data, "TMP": tmp_path}


def _fill(argv: list, p: dict) -> list[str]:
    out = []
    for a in argv:
        for key in ("DIR", "FILE", "DATA", "TMP"):
            a = a.replace(key, str(p[key])) if isinstance(a, str) else a
        out.append(a)
    return out


def _listing(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


# -- 9: an output that cannot be written is refused before any work ----------------------

EXPERT_EVAL = ["eval", "--policy", "expert", "--episodes", "1", "--quiet"]
OUTPUTS = [
    (["drive", "--policy", "expert", "--out", "FILE"], "--out"),
    (["drive", "--policy", "expert", "--out", "FILE/sub"], "--out"),
    (["drive", "--policy", "expert", "--out", READ_ONLY], "--out"),
    ([*EXPERT_EVAL, "--json", "DIR"], "--json"),
    ([*EXPERT_EVAL, "--json", "FILE/results.json"], "--json"),
    ([*EXPERT_EVAL, "--json", READ_ONLY + "/r.json"], "--json"),
    ([*EXPERT_EVAL, "--report", "FILE"], "--report"),
    ([*EXPERT_EVAL, "--report", READ_ONLY], "--report"),
    (["train", "--data", "DATA", "--out", "DIR"], "--out"),
    (["train", "--data", "DATA", "--out", "FILE/m.pt"], "--out"),
    (["train", "--data", "DATA", "--out", READ_ONLY + "/m.pt"], "--out"),
    (["train", "--data", "DATA", "--out", "TMP/m.pt", "--logdir", "FILE"], "--logdir"),
    (["closed-loop", "--out", "DIR"], "--out"),
    (["closed-loop", "--record", "FILE"], "--record"),
    (["closed-loop", "--workdir", "FILE"], "--workdir"),
    (["record", "--out", "FILE"], "--out"),
    (["record", "--out", READ_ONLY], "--out"),
    (["export-onnx", "--no-check", "--out", "DIR"], "--out"),
    (["export-onnx", "--no-check", "--out", READ_ONLY + "/m.onnx"], "--out"),
    (["sim-preview", "--out", "DIR"], "--out"),
    (["sim-preview", "--out", "FILE/preview.png"], "--out"),
    (["sim-preview", "--out", "TMP/preview.txt"], "--out"),
    (["bench", "sim", "--json", "DIR"], "--json"),
    (["bench", "sim", "--json", "FILE/bench.json"], "--json"),
]


@pytest.mark.parametrize(("argv", "option"), OUTPUTS, ids=[" ".join(a) for a, _ in OUTPUTS])
def test_an_output_that_cannot_be_written_is_refused_first(argv, option, paths, no_work, capsys):
    before = _listing(paths["TMP"])
    refused(capsys, _fill(argv, paths), option)
    assert _listing(paths["TMP"]) == before  # nothing created, no temporary file left


def test_train_out_on_a_folder_leaves_no_temporary_file(tmp_path, monkeypatch, capsys):
    """The old run trained, then failed renaming `<dir>.tmp` over the folder."""
    import steering_agent.data.dataset as dataset
    from tests.test_train import synthetic_episode

    report = dataset.DatasetReport([synthetic_episode(40, 0), synthetic_episode(40, 1)], [])
    monkeypatch.setattr(dataset, "load_episodes", lambda folder: report)
    (tmp_path / "m").mkdir()
    argv = ["train", "--data", tmp_path, "--out", tmp_path / "m", "--epochs", "1",
            "--seq-len", "8", "--batch", "2", "--no-progress"]  # fmt: skip
    refused(capsys, argv, "--out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    assert len(report.episodes) == 2  # the episodes were never even prepared


def test_save_checkpoint_refuses_a_folder_and_leaves_no_temporary_file(tmp_path):
    from steering_agent.policy.checkpoint import CheckpointError

    cfg = ModelConfig(feature_dim=16, hidden_dim=8)
    (tmp_path / "m.pt").mkdir()
    with pytest.raises(CheckpointError, match="is a directory"):
        save_checkpoint(tmp_path / "m.pt", SteeringNet(cfg), cfg, PreprocessConfig())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]


def test_writable_checks_create_nothing(tmp_path):
    deep = tmp_path / "a" / "b" / "c.json"
    assert cli_args.writable_file(deep, "--json") == deep
    assert cli_args.writable_dir(tmp_path / "x" / "y", "--out") == tmp_path / "x" / "y"
    assert list(tmp_path.iterdir()) == []


# -- 10: devices -------------------------------------------------------------------------

DEVICE_VERBS = {
    "drive": ["drive", "--policy", "expert"],
    "eval": EXPERT_EVAL,
    "train": ["train", "--data", "DATA", "--out", "TMP/m.pt"],
    "bench": ["bench", "inference"],
}


@pytest.mark.parametrize("verb", DEVICE_VERBS)
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "tpu", "gpu", "cuda:x", ""])
def test_a_device_that_is_not_here_is_refused(verb, device, paths, no_work, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    line = refused(capsys, _fill([*DEVICE_VERBS[verb], "--device", device], paths), "--device")
    assert "cpu" in line  # the fix: a device that is here


def test_cuda_n_must_be_one_of_the_machines(monkeypatch):
    import argparse

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert [cli_args.device(d) for d in ("auto", "cpu", "cuda", "cuda:1")] == [
        "auto", "cpu", "cuda", "cuda:1",
    ]  # fmt: skip
    with pytest.raises(argparse.ArgumentTypeError, match=r"2 CUDA device\(s\), cuda:0..cuda:1"):
        cli_args.device("cuda:2")


# -- 10: numbers -------------------------------------------------------------------------

NUMBERS = [
    ("drive", "--route-length-m", "-5"), ("drive", "--route-length-m", "nan"),
    ("drive", "--route-length-m", "inf"), ("drive", "--route-length-m", "5"),
    ("drive", "--threads", "0"), ("drive", "--width", "5"), ("drive", "--seed", "-1"),
    ("eval", "--route-length-m", "-5"), ("eval", "--route-length-m", "nan"),
    ("eval", "--episodes", "0"), ("eval", "--num-envs", "0"), ("eval", "--threads", "0"),
    ("eval", "--frame-drop", "nan"), ("eval", "--frame-drop", "1.5"),
    ("eval", "--image-noise", "nan"), ("eval", "--image-noise", "-1"),
    ("eval", "--brightness", "nan"), ("eval", "--control-delay", "-1"),
    ("eval", "--height", "0"), ("eval", "--episodes", "two"),
    ("train", "--batch", "0"), ("train", "--seq-len", "0"), ("train", "--epochs", "0"),
    ("train", "--lr", "nan"), ("train", "--lr", "-1"), ("train", "--val-fraction", "1.5"),
    ("train", "--max-shift-px", "-1"), ("train", "--crop-top", "1"),
    ("train", "--delta-weight", "nan"),
    ("record", "--episodes", "0"), ("record", "--route-length", "-5"),
    ("record", "--route-length", "nan"), ("record", "--noise", "nan"),
    ("record", "--max-steps", "0"), ("record", "--width", "5"),
    ("bench", "--repeats", "0"), ("bench", "--threads", "0"),
    ("closed-loop", "--route-length-m", "-5"), ("closed-loop", "--route-length-m", "nan"),
    ("closed-loop", "--timeout", "0"), ("closed-loop", "--width", "5"),
    ("sim-preview", "--width", "5"), ("sim-preview", "--height", "0"),
    ("sim-preview", "--frames", "0"), ("sim-preview", "--fov-deg", "0"),
    ("sim-preview", "--every", "-3"),
]  # fmt: skip
NUMBER_BASE = {
    "drive": ["drive", "--policy", "expert", "--out", "TMP/d"],
    "eval": EXPERT_EVAL,
    "train": ["train", "--data", "DATA", "--out", "TMP/m.pt"],
    "record": ["record", "--out", "TMP/rec"],
    "bench": ["bench", "sim"],
    "closed-loop": ["closed-loop"],
    "sim-preview": ["sim-preview", "--out", "TMP/p.png"],
}


@pytest.mark.parametrize(("verb", "option", "value"), NUMBERS,
                         ids=[" ".join(n) for n in NUMBERS])  # fmt: skip
def test_a_number_out_of_range_is_refused(verb, option, value, paths, no_work, capsys):
    refused(capsys, _fill([*NUMBER_BASE[verb], option, value], paths), option)


def test_the_option_limits_are_the_simulators():
    """cli_args' route and camera limits are those DriveEnv enforces (one step beyond
    each fails there too)."""
    from sim.env import DriveEnv

    lo, hi = cli_args.ROUTE_LENGTH_M
    DriveEnv(route_length_m=lo).close()
    for bad in (lo - 0.5, hi + 1):
        with pytest.raises(ValueError):
            DriveEnv(route_length_m=bad)
    small, big = cli_args.CAMERA_PX
    DriveEnv(width=small, height=small).close()
    for bad in (small - 1, big + 1):
        with pytest.raises(ValueError):
            DriveEnv(width=bad)


# -- 10 + 12: a bad checkpoint -----------------------------------------------------------


class _RunsCode:
    marker = ""

    def __reduce__(self):
        return (Path.touch, (Path(_RunsCode.marker),))


@pytest.fixture
def bad_checkpoints(tmp_path):
    _RunsCode.marker = str(tmp_path / "code_ran")
    folder = tmp_path / "ckpts"
    folder.mkdir()
    (folder / "inside.pt").write_bytes(b"")
    files = {"missing": tmp_path / "missing.pt", "directory": folder}
    files["empty"] = tmp_path / "empty.pt"
    files["empty"].write_bytes(b"")
    files["random bytes"] = tmp_path / "random.pt"
    files["random bytes"].write_bytes(np.random.default_rng(0).bytes(4096))
    files["not a checkpoint"] = tmp_path / "weights.pt"
    torch.save({"weights": torch.zeros(3)}, files["not a checkpoint"])
    files["code-running pickle"] = tmp_path / "evil.pt"
    torch.save({"format": "steering_agent.checkpoint", "x": _RunsCode()}, tmp_path / "evil.pt")
    files["bare pickle"] = tmp_path / "bare.pt"
    files["bare pickle"].write_bytes(pickle.dumps(_RunsCode()))
    cfg = ModelConfig(feature_dim=16, hidden_dim=8)
    good = save_checkpoint(tmp_path / "good.pt", SteeringNet(cfg), cfg, PreprocessConfig())
    files["truncated"] = tmp_path / "truncated.pt"
    files["truncated"].write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    return files


CHECKPOINT_USERS = {
    "export-onnx": (["export-onnx", "--no-check", "--out", "TMP/m.onnx", "--checkpoint"],
                    "--checkpoint"),
    "eval": ([*EXPERT_EVAL, "--policy"], "--policy"),
    "bench": (["bench", "inference", "--policy"], "--policy"),
    "drive": (["drive", "--out", "TMP/d", "--policy"], "--policy"),
    "train": (["train", "--data", "DATA", "--out", "TMP/m.pt", "--init"], "--init"),
    "closed-loop": (["closed-loop", "--checkpoint"], "--checkpoint"),
    "record": (["record", "--out", "TMP/rec", "--driver"], "--driver"),
}  # fmt: skip
KINDS = ["missing", "directory", "empty", "random bytes", "not a checkpoint",
         "code-running pickle", "bare pickle", "truncated"]  # fmt: skip


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("verb", CHECKPOINT_USERS)
def test_a_bad_checkpoint_is_one_line(verb, kind, bad_checkpoints, paths, no_work, capsys):
    argv, option = CHECKPOINT_USERS[verb]
    path = bad_checkpoints[kind]
    line = refused(capsys, [*_fill(argv, paths), str(path)], option)
    assert str(path) in line
    assert "weights_only" not in line  # never the advice to load it unsafely
    assert not Path(_RunsCode.marker).exists()
    expected = {
        "missing": "does not exist",
        "directory": "is a directory",
        "empty": "is empty",
        "random bytes": "not loaded",
        "not a checkpoint": "is not a steering_agent checkpoint",
        "code-running pickle": "would import and run",
        "bare pickle": "could run code",
        "truncated": "is damaged",
    }[kind]
    assert expected in line, line
    if kind == "directory":
        assert "does not exist" not in line
    if kind in ("code-running pickle", "bare pickle"):
        assert "not loaded" in line
    if kind == "truncated":  # torch's reason, its whole first sentence
        assert "failed finding central directory." in line


# -- 13: what must not be lost or mislabelled ------------------------------------------------


def test_recording_into_a_folder_keeps_its_episodes_in_the_index(tmp_path, capsys):
    out = tmp_path / "rec"
    base = ["record", "--out", out, "--route-length", "10", "--no-progress"]
    assert run_cli([*base, "--episodes", "2"]) == 0
    assert run_cli([*base, "--seed", "2", "--noise", "0.05"]) == 0
    index = json.loads((out / "index.json").read_text())
    assert [e["seed"] for e in index["episodes"]] == [0, 1, 2]
    assert all((out / e["bag"]).is_dir() for e in index["episodes"])
    assert [e["noise_sigma"] for e in index["episodes"]] == [0.0, 0.0, 0.05]
    assert index["noise_sigma"] is None and index["width"] == 200  # mixed / shared
    assert "3 episodes in all" in capsys.readouterr().out
    # the same seeds again: refused before recording, with the seed that would add on
    line = refused(capsys, [*base, "--seed", "0"], "--seed 3")
    assert "exists already" in line
    assert len(json.loads((out / "index.json").read_text())["episodes"]) == 3


def test_an_unreadable_index_is_refused_and_kept(tmp_path, capsys):
    out = tmp_path / "rec"
    out.mkdir()
    (out / "index.json").write_text("{ not json")
    refused(capsys, ["record", "--out", out, "--route-length", "10"], "--out")
    assert (out / "index.json").read_text() == "{ not json"


def test_training_without_a_validation_episode_says_so(tmp_path, monkeypatch, capsys):
    import steering_agent.data.frame_cache as frame_cache
    from steering_agent.data.sequences import prepare
    from tests.test_train import synthetic_episode

    def one_episode(data, cfg, label_topic, cache=None, problems=None):
        yield from prepare([synthetic_episode(40, 0)], cfg)

    monkeypatch.setattr(frame_cache, "prepared_episodes", one_episode)
    argv = ["train", "--data", tmp_path, "--out", tmp_path / "m.pt", "--epochs", "2",
            "--seq-len", "8", "--batch", "2", "--no-progress"]  # fmt: skip
    assert run_cli(argv) == 0
    cap = capsys.readouterr()
    assert "no validation episode" in cap.out and "best val rmse" not in cap.out
    assert "warning: no validation episode" in cap.err
    assert not re.search(r"val rmse \d", cap.err)  # no training loss passed off as one
    from steering_agent.policy.checkpoint import load_checkpoint

    prov = load_checkpoint(tmp_path / "m.pt").provenance
    assert prov["best_val_rmse"] is None
    assert [h["val_rmse"] for h in prov["history"]] == [None, None]
    assert "no validation" in prov["validation"] and prov["val_episodes"] == []


def test_autonomy_is_never_below_zero_and_says_when_clamped():
    from steering_agent.evaluation import metrics

    assert metrics.autonomy_pct(5, 10.0) == 0.0
    assert metrics.autonomy_clamped(5, 10.0) and not metrics.autonomy_clamped(1, 10.0)
    trace = metrics.EpisodeTrace(seed=1_000_000, route_length_m=10.0, dt_s=0.05)
    for i in range(100):  # 5 s with 10 interventions
        trace.add(2.0, 0.0, 0.0, i * 0.1)
        if i % 10 == 0:
            trace.mark_intervention()
    row = metrics.aggregate([trace])
    assert row["autonomy_pct"] == 0.0 and row["autonomy_clamped"] is True
    m = metrics.summarize_episode(trace)
    assert m.autonomy_pct == 0.0 and m.as_dict()["autonomy_clamped"] is True


def test_two_checkpoints_of_one_name_are_told_apart(tmp_path, capsys):
    cfg = ModelConfig(arch="cnn", feature_dim=16, hidden_dim=8)
    for folder in ("a", "b"):
        torch.manual_seed(ord(folder))
        path = tmp_path / folder / "cnn.pt"
        save_checkpoint(path, SteeringNet(cfg), cfg, PreprocessConfig())
    out = tmp_path / "eval.json"
    argv = ["eval", "--policy", tmp_path / "a/cnn.pt", "--policy", tmp_path / "b/cnn.pt",
            "--episodes", "1", "--route-length-m", "10", "--num-envs", "1", "--threads", "1",
            "--quiet", "--json", out]  # fmt: skip
    assert run_cli(argv) == 0
    doc = json.loads(out.read_text())
    assert list(doc["policies"]) == ["a/cnn", "b/cnn"]
    assert doc["policies"]["b/cnn"]["policy"] == str(tmp_path / "b/cnn.pt")
    table = capsys.readouterr().out
    assert "| a/cnn |" in table and "| b/cnn |" in table


# -- 14: a bag of a killed recorder ------------------------------------------------------


def _killed_bag(folder: Path) -> int:
    """A bag as `kill -9` leaves it: the .mcap cut mid-file, no metadata.yaml; the
    number of messages it was meant to hold."""
    from steering_agent.data.recording import EpisodeBagWriter

    w, h = 160, 120  # 77 kB a frame: 30 frames fill two of rosbags' 1 MiB chunks
    info = {"width": w, "height": h, "fx": 80.0, "fy": 80.0, "cx": 80.0, "cy": 60.0}
    frames = np.random.default_rng(0).integers(0, 256, (30, h, w, 3), dtype=np.uint8)
    with EpisodeBagWriter(folder, w, h, info) as writer:
        for i, image in enumerate(frames):
            writer.write_step(0.05 * i, image, 3.0, [0.0, 0.5, 0.0], [0.0, 0.5, 0.0])
    mcap = next(folder.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[: int(mcap.stat().st_size * 0.6)])
    (folder / "metadata.yaml").unlink()
    return 30 * 6


def test_recover_command_repairs_a_killed_bag_and_says_what_it_kept(tmp_path, capsys):
    from steering_agent.data.dataset import load_episodes
    from steering_agent.interfaces import topics

    written = _killed_bag(tmp_path / "bag")
    assert run_cli(["recover", tmp_path / "bag"]) == 0
    out = capsys.readouterr().out.strip()
    assert "recovered" in out and "wrote metadata.yaml" in out and "bytes" in out
    kept = int(out.split("; ")[-1].split()[0])
    assert 0 < kept < written
    assert f"{topics.IMAGE} " in out
    assert len(load_episodes(tmp_path / "bag").episodes) == 1
    assert run_cli(["recover", tmp_path / "bag"]) == 0  # now complete: left as it is
    assert "complete already" in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["missing", "empty folder", "not mcap", "two mcaps"])
def test_recover_refuses_what_is_no_bag_in_one_line(kind, tmp_path, capsys):
    bag = tmp_path / "bag"
    if kind != "missing":
        bag.mkdir()
    if kind == "not mcap":
        (bag / "x.mcap").write_bytes(b"hello, not MCAP")
    if kind == "two mcaps":
        (bag / "a.mcap").write_bytes(b"")
        (bag / "b.mcap").write_bytes(b"")
    line = refused(capsys, ["recover", bag], str(bag))
    assert {"missing": "does not exist", "empty folder": "found 0", "not mcap": "not an MCAP",
            "two mcaps": "found 2"}[kind] in line  # fmt: skip


# -- real bugs keep their traceback ------------------------------------------------------


def test_a_bug_is_not_turned_into_one_line(monkeypatch):
    import steering_agent.bench as bench

    def bug(*args, **kwargs):
        raise ValueError("a bug, not the user's mistake")

    monkeypatch.setattr(bench, "run_suites", bug)
    with pytest.raises(ValueError, match="a bug"):
        main(["bench", "sim"])


def test_argparse_errors_are_one_line(capsys):
    assert run_cli(["train", "--out", "m.pt"]) == 2  # --data missing
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--data" in err and "--help" in err


def test_cuda_when_present_is_accepted():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here")
    assert cli_args.device("cuda") == "cuda"
    assert cli_args.device("cuda:0") == "cuda:0"
