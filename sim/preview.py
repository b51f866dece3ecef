"""`steering-agent sim-preview`: a PNG grid of camera frames, one row per road seed.

Each row drives the expert along one road and keeps a frame every `--every` steps, with
the top-down view at the end of the row, so a person can judge the simulator's looks.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from sim.env import DriveEnv


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("runs/preview.png"), help="PNG path")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3], help="road seeds")
    parser.add_argument("--width", type=int, default=200)
    parser.add_argument("--height", type=int, default=66)
    parser.add_argument("--fov-deg", type=float, default=90.0)
    parser.add_argument("--frames", type=int, default=3, help="frames per seed (default 3)")
    parser.add_argument("--every", type=int, default=150, help="steps between frames")
    parser.add_argument("--scale", type=int, default=1, help="integer upscale of each frame")


def preview_grid(
    seeds: list[int],
    width: int,
    height: int,
    fov_deg: float = 90.0,
    frames: int = 3,
    every: int = 150,
    scale: int = 1,
) -> np.ndarray:
    """The preview picture as uint8 RGB: rows = seeds, columns = frames + top-down view."""
    env = DriveEnv(
        width=width,
        height=height,
        fov_deg=fov_deg,
        route_length_m=max(100.0, frames * every * 0.6 + 50.0),
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


def run(args: argparse.Namespace) -> int:
    if args.scale < 1 or args.frames < 1 or args.every < 1:
        raise SystemExit("sim-preview: --scale, --frames and --every must be >= 1")
    grid = preview_grid(
        args.seeds, args.width, args.height, args.fov_deg, args.frames, args.every, args.scale
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(args.out), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)):
        raise SystemExit(f"sim-preview: could not write {args.out}; check the folder")
    print(f"wrote {args.out} ({grid.shape[1]}x{grid.shape[0]})")
    return 0
