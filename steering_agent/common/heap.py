"""Keeping a frame's buffers in the process: glibc's malloc tuned for camera frames.

An 800x600 bgra8 frame (1.9 MB) passes through several heap buffers on its way into a
node, every frame: Fast DDS's reader history, rcl's serialized message, the `bytes`
that rclpy hands the callback (and on the camera's side the `bytes` and `std::string`
of a publish). glibc serves a block above its mmap threshold (128 KiB at start, raised
as such blocks are freed) with a fresh mmap, and hands the heap's free top back to the
kernel once it passes its trim threshold (twice the mmap threshold). Either way the
next frame's buffers are new pages, and each of their ~470 pages faults in on first
touch; on these VMs that is most of the cost of moving the frame.

`retain_frame_buffers()` sets both thresholds (mallopt) so that blocks up to 32 MiB come
from the heap and up to 128 MiB of freed heap stays mapped for the next frame. Measured
with `tools/dds_echo_probe.py` (camera publish -> callback entry in a process that only
echoes the stamp; docs/performance.md): 800x600 bgra8 3.1 ms before, 0.40 ms after.

A user's own choice wins: with MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_ or
GLIBC_TUNABLES in the environment nothing is changed. Off glibc (no `mallopt`) nothing
is changed either.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 << 20  # a 4K bgra8 frame is 33 MB: it still gets its own mmap
TRIM_THRESHOLD_BYTES = 128 << 20
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")

_applied: bool | None = None


def retain_frame_buffers() -> bool:
    """Tune glibc's malloc as the module doc says, once per process. Returns whether the
    tuning is in effect (False: not glibc, or the environment already chooses)."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if not sys.platform.startswith("linux") or any(os.environ.get(k) for k in USER_SETTINGS):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; musl's stub returns 0 and changes nothing
    _applied = (
        mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
        and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
    )
    return _applied
