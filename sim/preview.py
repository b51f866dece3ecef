"""`steering-agent sim-preview`: a PNG grid of camera frames, one row per road seed.

Each row drives the expert along one road and keeps a frame every `--every` steps, with
the top-down view at the end of the row, so a person can judge the simulator's looks.

sim/ imports nothing of steering_agent, so the option checks of
`steering_agent.common.cli_args` are repeated here in small: a bad value stops the
parser with one line naming the option (an --out that cannot be written too), before
any work.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

from sim.env import DriveEnv

CAMERA_PX = (16, 4096)  # sim.camera.IpmCamera's width and height
FOV_DEG = (10.0, 170.0)  # and its horizontal field of view


def _in_range(kind: type, low: float, high: float | None = None, unit: str = ""):
    """An argparse type: a finite `kind` within [low, high] (no upper end for None)."""
    word = "a whole number" if kind is int else "a number"
    span = f">= {low:g}" if high is None else f"in [{low:g}, {high:g}]"
    span += f" {unit}" if unit else ""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {word}, got {text!r}") from None
        if not (math.isfinite(value) and low <= value and (high is None or value <= high)):
            raise argparse.ArgumentTypeError(f"must be {word} {span}, got {text!r}")
        return value

    parse.__name__ = f"{kind.__name__}_in_range"
    return parse


def image_out(text: str) -> Path:
    """An argparse type: --out names an image file (a format OpenCV writes, e.g. .png)
    that can be written; nothing is created here (its nearest folder is probed)."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is a directory, not a file; pass a .png name")
    if not cv2.haveImageWriter(str(path)):
        raise argparse.ArgumentTypeError(
            f"{path}: OpenCV writes no image format of that name; pass a name ending in .png"
        )
    base = path.parent
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise argparse.ArgumentTypeError(
            f"{path}: {base} is a file, not a folder; pass a path inside a folder"
        )
    try:
        fd, probe = tempfile.mkstemp(prefix=".sim_preview_probe_", dir=base)
    except OSError as e:
        raise argparse.ArgumentTypeError(
            f"{path} cannot be written ({e.strerror or e} in {base}); pass a path you can write to"
        ) from None
    os.close(fd)
    os.unlink(probe)
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    px = _in_range(int, *CAMERA_PX, unit="pixels")
    count = _in_range(int, 1)
    parser.add_argument(
        "--out", type=image_out, default="runs/preview.png", help="PNG path (checked first)"
    )
    parser.add_argument(
        "--seeds", type=_in_range(int, 0), nargs="+", default=[0, 1, 2, 3], help="road seeds"
    )
    parser.add_argument("--width", type=px, default=200)
    parser.add_argument("--height", type=px, default=66)
    parser.add_argument("--fov-deg", type=_in_range(float, *FOV_DEG, unit="degrees"), default=90.0)
    parser.add_argument("--frames", type=count, default=3, help="frames per seed (default 3)")
    parser.add_argument("--every", type=count, default=150, help="steps between frames")
    parser.add_argument(
        "--scale", type=_in_range(int, 1, 16), default=1, help="integer upscale of each frame"
    )


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
    grid = preview_grid(
        args.seeds, args.width, args.height, args.fov_deg, args.frames, args.every, args.scale
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(args.out), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)):
        raise PermissionError(f"--out {args.out} could not be written; check the folder")
    print(f"wrote {args.out} ({grid.shape[1]}x{grid.shape[0]})")
    return 0
