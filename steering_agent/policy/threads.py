"""The one place that sets torch's CPU thread count (a process-wide setting): called by
the commands and the node from their options, never by a constructor."""

from __future__ import annotations


def set_torch_threads(threads: int | None, option: str = "--threads") -> None:
    """Fix torch's intra-op CPU threads for this process (None: leave torch's default).

    Raises:
        ValueError: `threads` < 1 (names `option`).
    """
    if threads is None:
        return
    if int(threads) < 1:
        raise ValueError(f"{option} must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(int(threads))
