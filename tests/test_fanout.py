"""The Ray fan-out of `eval` and `record` (`--workers N`, `--ray-address`; docs/scale.md):
the same episodes as the serial run; without Ray, one line naming the extra at once;
the serial default never imports ray."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from steering_agent import cli
from steering_agent.common import raycluster
from steering_agent.common.cli_args import UsageError

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = REPO / "checkpoints" / "cnn_lstm.pt"
HAS_RAY = importlib.util.find_spec("ray") is not None


def test_one_worker_is_the_serial_path_and_more_ask_for_ray(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    assert raycluster.check_workers(1, None) is False
    with pytest.raises(ImportError, match=r'pip install "steering_agent\[ray\]"'):
        raycluster.check_workers(2, None)
    with pytest.raises(ImportError, match="--ray-address"):
        raycluster.check_workers(1, "auto")
    with pytest.raises(UsageError):
        raycluster.check_workers(0, None)


@pytest.mark.parametrize(
    "argv",
    [
        ["eval", "--policy", "expert", "--episodes", "2", "--workers", "2"],
        ["eval", "--policy", "expert", "--ray-address", "auto"],
        ["record", "--episodes", "2", "--workers", "2"],
    ],
)
def test_without_ray_workers_stop_at_once_with_one_line(tmp_path, monkeypatch, capsys, argv):
    monkeypatch.setitem(sys.modules, "ray", None)
    if argv[0] == "record":
        argv = [*argv, "--out", str(tmp_path / "bags")]
    t0 = time.perf_counter()
    assert cli.main(argv) == 2
    assert time.perf_counter() - t0 < 1.0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert 'pip install "steering_agent[ray]"' in err
    assert not (tmp_path / "bags").exists()


def test_the_serial_default_never_imports_ray(tmp_path):
    code = (
        "import sys\n"
        "from steering_agent import cli\n"
        f"assert cli.main(['eval', '--policy', 'expert', '--episodes', '1', '--quiet', "
        f"'--route-length-m', '20', '--workers', '1']) == 0\n"
        f"assert cli.main(['record', '--episodes', '1', '--route-length', '20', "
        f"'--no-progress', '--out', {str(tmp_path / 'bags')!r}]) == 0\n"
        "assert 'ray' not in sys.modules, 'the serial path imported ray'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


def _eval(tmp_path: Path, name: str, *extra: str) -> dict:
    out = tmp_path / f"{name}.json"
    argv = ["eval", "--policy", "expert", "--policy", str(CHECKPOINT), "--episodes", "3",
            "--route-length-m", "60", "--threads", "1", "--quiet", "--json", str(out),
            *extra]  # fmt: skip
    assert cli.main(argv) == 0
    return json.loads(out.read_text())


@pytest.mark.slow
@pytest.mark.skipif(not HAS_RAY, reason='needs the ray extra (pip install "steering_agent[ray]")')
def test_eval_fanned_out_drives_the_serial_episodes(tmp_path):
    serial = _eval(tmp_path, "serial")
    fanned = _eval(tmp_path, "fanned", "--workers", "2")
    assert fanned["throughput"]["workers"] == 2
    assert fanned["settings"] == serial["settings"]
    for name, row in serial["policies"].items():  # every number of every episode
        assert fanned["policies"][name]["episodes"] == row["episodes"], name


@pytest.mark.slow
@pytest.mark.skipif(not HAS_RAY, reason='needs the ray extra (pip install "steering_agent[ray]")')
def test_record_fanned_out_writes_the_serial_bags(tmp_path):
    common = ["--episodes", "3", "--route-length", "30", "--noise", "0.1", "--no-progress"]
    assert cli.main(["record", *common, "--out", str(tmp_path / "serial")]) == 0
    assert cli.main(["record", *common, "--workers", "2", "--out", str(tmp_path / "ray")]) == 0
    index = (tmp_path / "serial" / "index.json").read_text()
    assert (tmp_path / "ray" / "index.json").read_text() == index
    for bag in json.loads(index)["episodes"]:
        for f in sorted((tmp_path / "serial" / bag["bag"]).iterdir()):
            assert (tmp_path / "ray" / bag["bag"] / f.name).read_bytes() == f.read_bytes(), f
