"""Summaries of timing samples, one definition for the node, the closed loop and bench."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def percentiles_ms(values: Sequence[float] | np.ndarray, scale: float = 1e3) -> dict:
    """{median, p90, p99, max} of `values` times `scale` (seconds -> ms by default),
    rounded to microseconds; {} when there are none."""
    ms = np.asarray(values, dtype=np.float64) * scale
    if ms.size == 0:
        return {}
    q = np.percentile(ms, [50, 90, 99])
    return {
        "median": round(float(q[0]), 3),
        "p90": round(float(q[1]), 3),
        "p99": round(float(q[2]), 3),
        "max": round(float(ms.max()), 3),
    }
