"""Fast DDS shared-memory segments left behind by processes that skip DDS destructors.

Fast DDS's shared-memory transport keeps a participant's samples in a segment file
`/dev/shm/fastdds_<16 hex digits>` (8.8 MB with config/fastdds_local.xml) and holds a
`flock` on its companion `..._el` file for as long as the owning process lives. The
participant's destructor removes both, but processes here that keep ROS objects until
exit leave with `os._exit` (see `closed_loop.KEPT_UNTIL_EXIT`), and a killed process runs
no destructor at all: each leaves its segment in /dev/shm for good.

- `remove_own_segments()` is called right before such an `os._exit`: the segments whose
  lock file this process has open are its own.
- `remove_stale_segments()` removes segments whose lock no process holds (their owner
  is dead), e.g. after `kill -9`.

Fast DDS's port files (`fastdds_port<N>`) are small and reused by Fast DDS itself; they
are left alone. On systems without /dev/shm, /proc or fcntl both functions do nothing.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no /dev/shm segments of this kind, nothing to do
    fcntl = None

SHM_DIR = Path("/dev/shm")
_LOCK_FILE = re.compile(r"fastdds_[0-9a-f]{16}_el")


def _remove_segment(lock_file: Path) -> bool:
    """Remove a segment and its lock file; False if either was already gone."""
    removed = True
    for path in (lock_file.with_name(lock_file.name[: -len("_el")]), lock_file):
        try:
            path.unlink()
        except FileNotFoundError:
            removed = False
    return removed


def own_segments(shm_dir: Path = SHM_DIR) -> list[Path]:
    """Lock files of the segments this process owns (it has them open)."""
    found = []
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return found
    for fd in fds:
        try:
            target = Path(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
        if target.parent == shm_dir and _LOCK_FILE.fullmatch(target.name):
            found.append(target)
    return found


def remove_own_segments(shm_dir: Path = SHM_DIR) -> int:
    """Unlink this process's segments before it leaves with os._exit. Peers that have
    them mapped keep their mapping. Returns how many were removed."""
    return sum(_remove_segment(lock) for lock in own_segments(shm_dir))


def _unlocked(lock_file: Path) -> int | None:
    """An fd holding an exclusive lock on `lock_file`, or None when a live process holds
    it (or it is gone)."""
    try:
        fd = os.open(lock_file, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def remove_stale_segments(min_age_s: float = 60.0, shm_dir: Path = SHM_DIR) -> int:
    """Remove segments no live process holds and that are older than `min_age_s` (a
    process that is just creating its segment may not hold the lock yet). Returns how
    many were removed."""
    if fcntl is None:
        return 0
    try:
        names = os.listdir(shm_dir)
    except OSError:
        return 0
    removed, now = 0, time.time()
    for name in names:
        lock_file = shm_dir / name
        if not _LOCK_FILE.fullmatch(name):
            continue
        try:
            if now - lock_file.stat().st_mtime < min_age_s:
                continue
        except OSError:
            continue
        fd = _unlocked(lock_file)  # also None for this process's own: it holds them
        if fd is None:
            continue
        try:
            removed += _remove_segment(lock_file)
        finally:
            os.close(fd)
    return removed
