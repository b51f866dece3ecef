"""Scalars as users pass them: Python numbers, NumPy scalars, 0-d or one-element arrays."""

from __future__ import annotations

import numpy as np


def scalar(value, name: str = "value") -> float:
    """`value` as a Python float.

    Raises:
        TypeError: `value` is not a number or holds more than one element (names it).
    """
    if isinstance(value, (int, float)):
        return float(value)
    arr = np.asarray(value)
    if arr.size != 1 or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(
            f"{name} must be a number or a one-element array, got {type(value).__name__} "
            f"of shape {arr.shape} and dtype {arr.dtype}"
        )
    return float(arr.reshape(()))
