"""`steering-agent sim-preview`: a picture of frames from several seeds (sim.preview), with
the options checked before any rendering (steering_agent.common.cli_args)."""

from __future__ import annotations

import argparse

import cv2

from sim import preview
from sim.limits import MOUNT_LIMITS
from steering_agent.common import cli_args as a
from steering_agent.common.cli_args import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    low, high, unit = MOUNT_LIMITS["fov_deg"]
    parser.add_argument("--out", default="runs/preview.png", help="PNG path (checked first)")
    parser.add_argument(
        "--seeds",
        type=a.nonneg_int,
        nargs="+",
        default=None,
        help="road seeds (default 0 1 2 3; 0..7 with --look varied)",
    )
    parser.add_argument(
        "--look",
        choices=("plain", "varied"),
        default="plain",
        help="plain: the original two-lane world; varied: lanes, scenery, weather per seed",
    )
    parser.add_argument("--width", type=a.camera_px, default=200)
    parser.add_argument("--height", type=a.camera_px, default=66)
    parser.add_argument("--fov-deg", type=a.bounded(float, low, high, unit=unit), default=90.0)
    parser.add_argument("--frames", type=a.positive_int, default=3, help="frames per seed")
    parser.add_argument("--every", type=a.positive_int, default=150, help="steps between frames")
    parser.add_argument(
        "--scale", type=a.bounded(int, 1, 16), default=1, help="integer upscale of each frame"
    )


def run(args: argparse.Namespace) -> int:
    out = a.writable_file(args.out, "--out")
    if not cv2.haveImageWriter(str(out)):
        raise UsageError(
            f"--out {out}: OpenCV writes no image format of that name; pass a name ending in .png"
        )
    look = getattr(args, "look", "plain")
    seeds = args.seeds if args.seeds is not None else list(range(8 if look == "varied" else 4))
    grid = preview.preview_grid(
        seeds, args.width, args.height, args.fov_deg, args.frames, args.every, args.scale, look
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)):
        raise UsageError(f"--out {out} could not be written; check the folder")
    print(f"wrote {out} ({grid.shape[1]}x{grid.shape[0]})")
    return 0
