"""Time stamps: builtin_interfaces/Time (rclpy or rosbags, duck-typed) <-> numbers."""

from __future__ import annotations

from typing import Any

NS_PER_S = 1_000_000_000


def stamp_to_ns(stamp: Any) -> int:
    """Integer nanoseconds of a builtin_interfaces/Time."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def stamp_to_s(stamp: Any) -> float:
    """Seconds (float) of a builtin_interfaces/Time."""
    return stamp.sec + stamp.nanosec * 1e-9


def ns_to_sec_nanosec(stamp_ns: int) -> tuple[int, int]:
    """(sec, nanosec) of an integer time in nanoseconds, as builtin_interfaces/Time holds it."""
    return divmod(int(stamp_ns), NS_PER_S)
