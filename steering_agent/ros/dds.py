"""Fast DDS shared-memory segments left behind by processes that skip DDS destructors.

Fast DDS's shared-memory transport keeps a participant's samples in a segment file
`/dev/shm/fastdds_<16 hex digits>` (8.8 MB with config/fastdds_local.xml) and holds a
`flock` on its companion `..._el` file for as long as the owning process lives. The
participant's destructor removes both, but processes here that keep ROS objects until
exit leave with `os._exit` (see `dds.KEPT_UNTIL_EXIT`), and a killed process runs
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
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from steering_agent.common.package_files import config_file

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


# In-process ROS objects of benchmarks and tests are never destroyed: Fast DDS 3.2 could
# hang for good deleting a participant that had the TCP transport of its LARGE_DATA mode
# (seen in TCPChannelResourceBasic::disconnect under rcl_node_fini). The project's own
# profile (use_local_transport) has no TCP, but a user may still choose LARGE_DATA. The
# objects stay referenced here until the process ends; `cli.entry` (the `steering-agent`
# command) then exits with os._exit, skipping those destructors, and the test suite does
# the same in tests/conftest.py.
KEPT_UNTIL_EXIT: list = []

# Environment variables that choose Fast DDS transports or profiles (3.x and 2.x names).
TRANSPORT_CHOICES = (
    "FASTDDS_BUILTIN_TRANSPORTS",
    "FASTDDS_DEFAULT_PROFILES_FILE",
    "FASTRTPS_DEFAULT_PROFILES_FILE",
)
LOCAL_PROFILE = "fastdds_local.xml"


def keep_until_exit(*objects) -> None:
    """Hold rclpy nodes/contexts (and their DDS participant) until the process exits."""
    KEPT_UNTIL_EXIT.extend(objects)


def exit_without_destructors(code: int) -> None:
    """Leave now with exit status `code`, skipping the Fast DDS participant destructors
    that can hang (see KEPT_UNTIL_EXIT): flush output, remove this process's shared-memory
    segments, which those destructors would have removed (remove_own_segments), then os._exit."""
    sys.stdout.flush()
    sys.stderr.flush()
    remove_own_segments()
    os._exit(code)


def local_transport_env(env: dict) -> dict:
    """`env` with Fast DDS pointed at config/fastdds_local.xml, unless it already chooses
    transports or a profile file (TRANSPORT_CHOICES): then `env` unchanged.

    The profile: shared memory with an 8 MB segment plus UDPv4, no TCP. With Fast DDS's
    default transports, best-effort 800x600 bgra8 frames (1.9 MB) lost fragments on
    loopback: measured here, 1 of 210 frames reached the agent. LARGE_DATA (SHM + TCP)
    lost none, but its TCP transport hung deleting participants and, in long test
    sessions, left some new participants undiscovered (docs/dds.md has the
    counts).
    """
    if any(env.get(name) for name in TRANSPORT_CHOICES):
        return env
    profile = str(config_file(LOCAL_PROFILE))
    # Fast DDS 2 (Humble) reads the FASTRTPS_ name; Jazzy and Kilted warn that it is
    # deprecated, so it is set only on Humble.
    name = "FASTRTPS" if env.get("ROS_DISTRO") == "humble" else "FASTDDS"
    return {**env, f"{name}_DEFAULT_PROFILES_FILE": profile}


def use_local_transport() -> None:
    """Apply local_transport_env to this process (before its first rclpy context) and so
    to its children. The nodes themselves never set it: across machines a user's own
    transport choice must win."""
    os.environ.update(local_transport_env(dict(os.environ)))


@contextmanager
def ros_context():
    """An rclpy context of its own (ROS_DOMAIN_ID from the environment), kept until the
    process exits (see KEPT_UNTIL_EXIT)."""
    import rclpy

    from steering_agent.common.heap import retain_frame_buffers

    use_local_transport()
    retain_frame_buffers()  # frames in and out without fresh pages (common/heap.py)
    context = rclpy.Context()
    rclpy.init(context=context, signal_handler_options=rclpy.signals.SignalHandlerOptions.NO)
    try:
        yield context
    finally:
        keep_until_exit(context)  # not shut down: that would delete the participant


@contextmanager
def ros_participant_node(context, name: str):
    """A node (and an executor for it) in `context`; after the block the executor stops
    and the node is kept until the process exits (see KEPT_UNTIL_EXIT)."""
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    node = Node(name, context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        yield node, executor
    finally:
        executor.shutdown()
        keep_until_exit(node)
