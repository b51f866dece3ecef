"""`steering-agent sim-preview`: a PNG grid of camera frames, one row per road seed.

Each row drives the expert along one road and keeps a frame every `--every` steps, with
the top-down view at the end of the row, so a person can judge the simulator's looks.

The `steering-agent sim-preview` verb is steering_agent.preview.
"""

from __future__ import annotations

import cv2
import numpy as np

from sim.env import DriveEnv


def preview_grid(
    seeds: list[int],
    width: int,
    height: int,
    fov_deg: float = 90.0,
    frames: int = 3,
    every: int = 150,
    scale: int = 1,
    look: str = "plain",
) -> np.ndarray:
    """The preview picture as uint8 RGB: rows = seeds, columns = frames + top-down view.

    `look` is DriveEnv's ("plain" or "varied": lanes, scenery and weather per seed)."""
    env = DriveEnv(
        width=width,
        height=height,
        fov_deg=fov_deg,
        # metres per step: 0.5 at plain's 10 m/s, up to 1.25 on a varied 25 m/s road
        route_length_m=max(100.0, frames * every * (0.6 if look == "plain" else 1.3) + 50.0),
        look=look,
    )
    rows = []
    for seed in seeds:
        obs, info = env.reset(seed=seed)
        tiles = [obs["image"]]
        for _ in range(frames - 1):
            for _ in range(every):
                obs, _, term, trunc, info = env.step(info["expert_action"])
                if term or trunc:
                    break
            tiles.append(obs["image"])
        tiles = [
            cv2.resize(t, (width * scale, height * scale), interpolation=cv2.INTER_NEAREST)
            for t in tiles
        ]
        side = height * scale
        tiles.append(cv2.resize(env.topdown(), (side, side), interpolation=cv2.INTER_AREA))
        rows.append(np.concatenate([np.pad(t, ((2, 2), (2, 2), (0, 0))) for t in tiles], axis=1))
    return np.concatenate(rows, axis=0)
