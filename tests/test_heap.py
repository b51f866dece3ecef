"""glibc's malloc tuned for camera frames (steering_agent.common.heap): with the tuning,
freeing and allocating a frame's buffers again faults no fresh pages in; without it
(the same loop) every round does; a user's own malloc settings are left alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from steering_agent.common import heap

# Three 1.9 MB buffers per "frame" (as a node's bytes, serialized message and reader
# sample), freed and made again, 40 times; minor page faults per frame after a warm-up.
_LOOP = """
import json, resource, sys
from steering_agent.common.heap import retain_frame_buffers
tuned = retain_frame_buffers() if sys.argv[1] == "1" else False
n = 800 * 600 * 4
def frame():
    a = b"\\x01" * n; b = b"\\x02" * n; c = b"\\x03" * n
    return len(a) + len(b) + len(c)
for _ in range(5):
    frame()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(40):
    frame()
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 40
print(json.dumps({"tuned": tuned, "faults_per_frame": faults}))
"""


def _run(tune: bool, **env_extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in heap.USER_SETTINGS}
    env.update(env_extra)
    out = subprocess.run(
        [sys.executable, "-c", _LOOP, "1" if tune else "0"],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return json.loads(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux")
def test_frame_buffers_stay_mapped_with_the_tuning_and_fault_in_without():
    tuned = _run(True)
    if not tuned["tuned"]:
        pytest.skip("not glibc (no mallopt): nothing is tuned")
    plain = _run(False)
    pages = 3 * 800 * 600 * 4 // 4096
    assert plain["faults_per_frame"] > pages / 4  # the untuned heap gives the pages back
    assert tuned["faults_per_frame"] < pages / 100


def test_a_users_malloc_settings_win(monkeypatch):
    monkeypatch.setattr(heap, "_applied", None)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1000000")
    assert heap.retain_frame_buffers() is False
    assert heap.retain_frame_buffers() is False  # decided once per process


def test_the_tuning_is_refused_off_glibc(monkeypatch):
    monkeypatch.setattr(heap, "_applied", None)
    for name in heap.USER_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(heap.sys, "platform", "darwin")
    assert heap.retain_frame_buffers() is False
