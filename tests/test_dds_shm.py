"""Fast DDS shared-memory segments: a process leaving with exit_without_destructors takes
its segment with it; segments of dead processes are removed, those of live ones kept."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from steering_agent.ros import dds

REPO = Path(__file__).resolve().parents[1]

# A process with one DDS participant: prints the lock files of its segments, then leaves
# as chosen by argv[1] (exit_without_destructors | os_exit | sleep until killed).
_CHILD = """
import json, os, sys, time
sys.path.insert(0, {repo!r})
import rclpy
from steering_agent.ros import dds
from steering_agent.ros.dds import exit_without_destructors
rclpy.init()
node = rclpy.create_node("shm_probe")
print(json.dumps([str(p) for p in dds.own_segments()]), flush=True)
how = sys.argv[1]
if how == "exit_without_destructors":
    exit_without_destructors(0)
if how == "os_exit":
    os._exit(0)
time.sleep(60)
"""


def _fake_segment(shm_dir: Path, ident: str, age_s: float) -> Path:
    segment = shm_dir / f"fastdds_{ident}"
    lock = shm_dir / f"fastdds_{ident}_el"
    segment.write_bytes(b"\0" * 64)
    lock.touch()
    old = time.time() - age_s
    for path in (segment, lock):
        os.utime(path, (old, old))
    return lock


def test_stale_segments_go_and_held_or_young_ones_stay(tmp_path):
    dead = _fake_segment(tmp_path, "0123456789abcdef", age_s=120)
    young = _fake_segment(tmp_path, "1111111111111111", age_s=1)
    held = _fake_segment(tmp_path, "2222222222222222", age_s=120)
    port = tmp_path / "fastdds_port7000_el"  # Fast DDS manages its port files itself
    port.touch()
    os.utime(port, (0, 0))
    # another process holds the lock, as a live Fast DDS participant does
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import fcntl, sys, time; f = open(sys.argv[1]); fcntl.flock(f, fcntl.LOCK_EX); "
         "print('locked', flush=True); time.sleep(60)", str(held)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert dds.remove_stale_segments(min_age_s=60, shm_dir=tmp_path) == 1
    finally:
        holder.kill()
        holder.wait()
    assert not dead.exists() and not (tmp_path / "fastdds_0123456789abcdef").exists()
    assert young.exists() and held.exists() and port.exists()
    assert (tmp_path / "fastdds_2222222222222222").exists()
    # once its holder is gone, the held one is stale too
    assert dds.remove_stale_segments(min_age_s=60, shm_dir=tmp_path) == 1
    assert not held.exists()


def test_own_segments_are_those_this_process_has_open(tmp_path, monkeypatch):
    lock = _fake_segment(tmp_path, "abcdefabcdefabcd", age_s=0)
    other = _fake_segment(tmp_path, "bbbbbbbbbbbbbbbb", age_s=0)
    with open(lock) as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        assert dds.own_segments(tmp_path) == [lock]
        assert dds.remove_own_segments(tmp_path) == 1
    assert not lock.exists() and not (tmp_path / "fastdds_abcdefabcdefabcd").exists()
    assert other.exists()


def _run_child(how: str, ros_env: dict) -> tuple[subprocess.Popen, list[Path]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD.format(repo=str(REPO)), how],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ros_env,
    )  # fmt: skip
    line = proc.stdout.readline()
    assert line, proc.stderr.read()
    return proc, [Path(p) for p in json.loads(line)]


@pytest.fixture
def ros_env(ros_domain):
    pytest.importorskip("rclpy")
    if not dds.SHM_DIR.is_dir():
        pytest.skip("no /dev/shm")
    return dict(os.environ)


@pytest.mark.ros
def test_a_real_participant_leaving_with_os_exit_leaves_its_segment_unless_removed(ros_env):
    proc, locks = _run_child("os_exit", ros_env)
    assert proc.wait(30) == 0
    assert locks and all(lock.exists() for lock in locks)  # what os._exit alone leaves
    for lock in locks:  # tidy up what this test made
        dds._remove_segment(lock)

    proc, locks = _run_child("exit_without_destructors", ros_env)
    assert proc.wait(30) == 0
    assert locks and not any(lock.exists() for lock in locks)
    assert not any(lock.with_name(lock.name[: -len("_el")]).exists() for lock in locks)


@pytest.mark.ros
def test_segments_of_a_killed_participant_are_stale_and_of_a_live_one_are_not(ros_env):
    live, live_locks = _run_child("sleep", ros_env)
    killed, killed_locks = _run_child("sleep", ros_env)
    try:
        killed.kill()
        killed.wait(30)
        assert all(lock.exists() for lock in killed_locks)
        dds.remove_stale_segments(min_age_s=0)
        assert killed_locks and not any(lock.exists() for lock in killed_locks)
        assert live_locks and all(lock.exists() for lock in live_locks)
    finally:
        live.kill()
        live.wait(30)
        dds.remove_stale_segments(min_age_s=0)
