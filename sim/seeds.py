"""Which seeds are for training data and which are reserved for evaluation.

Seeds >= EVAL_SEED_START are evaluation-only: `steering-agent record` refuses them and
`steering-agent eval` draws from them, so no evaluated road was ever seen in training.
"""

from __future__ import annotations

EVAL_SEED_START = 1_000_000


def is_eval_seed(seed: int) -> bool:
    return int(seed) >= EVAL_SEED_START


def eval_seeds(n: int, start: int = 0) -> list[int]:
    """The `n` evaluation seeds from offset `start` (0 = the first reserved seed)."""
    if n < 0 or start < 0:
        raise ValueError(f"eval_seeds: n ({n}) and start ({start}) must be >= 0")
    return [EVAL_SEED_START + start + i for i in range(n)]
