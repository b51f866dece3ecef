"""Training sequences: recorded episodes preprocessed once (uint8) and walked chunk after
chunk by the rows of a batch (truncated backpropagation through time)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from steering_agent.common.cli_args import UsageError
from steering_agent.policy.preprocess import PreprocessConfig, preprocess_frames


@dataclass
class PreparedEpisode:
    name: str
    frames: np.ndarray  # uint8 [N, 3, h, w], preprocessed
    steer: np.ndarray  # float32 [N]
    speed: np.ndarray | None = None  # float32 [N], m/s


def prepare(episodes, cfg: PreprocessConfig) -> list[PreparedEpisode]:
    """Preprocess every frame once (uint8, so the whole set stays small).

    `episodes` may be a generator, so the raw frames of each can be freed once done.
    Episodes that carry a `camera` spec are seen through the calibrated view of that
    camera, and labels of a `vehicle` become the canonical car's
    (`steering_agent.data.frame_cache`); `PreparedEpisode`s pass through as they are.
    """
    out = []
    for ep in episodes:
        if len(ep.steer) < 2:
            continue
        if isinstance(ep, PreparedEpisode):
            out.append(ep)
        elif getattr(ep, "camera", None) is None and getattr(ep, "vehicle", None) is None:
            out.append(
                PreparedEpisode(
                    ep.name,
                    preprocess_frames(ep.images, cfg),
                    np.asarray(ep.steer, dtype=np.float32),
                    np.asarray(ep.speed, dtype=np.float32),
                )
            )
        else:
            from steering_agent.data.frame_cache import prepare_episode

            out.append(prepare_episode(ep, cfg))
    return out


def split_episodes(eps: list, val_fraction: float, seed: int) -> tuple[list, list]:
    """Episode-level split; at least one validation episode when there are two or more."""
    order = np.random.default_rng(seed).permutation(len(eps))
    n_val = round(val_fraction * len(eps))
    if val_fraction > 0 and len(eps) >= 2:
        n_val = min(max(n_val, 1), len(eps) - 1)
    val = [eps[i] for i in sorted(order[:n_val])]
    train = [eps[i] for i in sorted(order[n_val:])]
    return train, val


class ChunkStream:
    """Batch rows that each walk an episode chunk by chunk; yields (frames, steer, fresh)."""

    def __init__(self, eps: list[PreparedEpisode], batch: int, seq_len: int, rng) -> None:
        self.eps, self.batch, self.seq_len, self.rng = eps, batch, seq_len, rng
        usable = [e for e in eps if len(e.steer) >= seq_len]
        if not usable:
            longest = max((len(e.steer) for e in eps), default=0)
            raise UsageError(
                f"--seq-len {seq_len}: no training episode has that many frames (the longest "
                f"has {longest}); lower --seq-len or record longer episodes"
            )
        self.eps = usable
        self.total_chunks = sum(len(e.steer) // seq_len for e in usable)

    def __len__(self) -> int:
        return max(1, self.total_chunks // self.batch)

    def __iter__(self):
        queue = list(self.rng.permutation(len(self.eps)))
        rows: list[list[int]] = [[-1, 0] for _ in range(self.batch)]  # episode, position
        t = self.seq_len
        for _ in range(len(self)):
            fresh = np.zeros(self.batch, dtype=bool)
            for i, r in enumerate(rows):
                if r[0] < 0 or r[1] + t > len(self.eps[r[0]].steer):
                    if not queue:  # epoch length is fixed; recycle episodes at the end
                        queue = list(self.rng.permutation(len(self.eps)))
                    r[0] = int(queue.pop())
                    r[1] = int(self.rng.integers(0, min(t, len(self.eps[r[0]].steer) - t + 1)))
                    fresh[i] = True
            frames = np.stack([self.eps[e].frames[p : p + t] for e, p in rows])
            steer = np.stack([self.eps[e].steer[p : p + t] for e, p in rows])
            for r in rows:
                r[1] += t
            yield frames, steer, fresh
