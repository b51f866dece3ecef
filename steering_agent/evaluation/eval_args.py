"""The options of `steering-agent eval` (steering_agent.evaluation.evaluate)."""

from __future__ import annotations

import argparse
from pathlib import Path

from steering_agent.common import cli_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = cli_args
    parser.add_argument(
        "--policy",
        action="append",
        required=True,
        metavar="SPEC",
        help="checkpoint to evaluate, 'expert', 'lane-follower' (the classical OpenCV lane "
        "follower), or 'hold:SPEC' (SPEC holding its last command on black, saturated or "
        "frozen frames); repeat for one table of several",
    )
    parser.add_argument(
        "--episodes", type=a.positive_int, default=None,
        help="number of held-out seeds (default 20; with --suite: the suite's)",
    )  # fmt: skip
    parser.add_argument(
        "--seed", type=a.nonneg_int, default=0, help="offset into the evaluation seeds"
    )
    parser.add_argument(
        "--seeds", type=a.nonneg_int, nargs="+", help="explicit held-out seeds (>= 1000000)"
    )
    parser.add_argument(
        "--route-length-m", type=a.route_length, default=None,
        help="route length, m (default 1000; with --suite: the suite's)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="write the results JSON here")
    parser.add_argument("--report", type=Path, help="write results.md, plots and a video here")
    parser.add_argument(
        "--num-envs", type=a.positive_int, default=8, help="environments stepped together"
    )
    parser.add_argument(
        "--frame-drop", type=a.fraction, default=0.0, help="share of frames unseen, in [0, 1)"
    )
    parser.add_argument("--image-noise", type=a.nonneg_float, default=0.0, help="pixel noise sigma")
    parser.add_argument(
        "--brightness", type=a.finite_float, default=0.0, help="added to pixel values"
    )
    parser.add_argument(
        "--control-delay", type=a.nonneg_int, default=0, help="steps of command delay"
    )
    parser.add_argument("--width", type=a.camera_px, default=200)
    parser.add_argument("--height", type=a.camera_px, default=66)
    parser.add_argument(
        "--device", type=a.device, default="auto", help=f"torch device: {a.DEVICES}"
    )
    parser.add_argument(
        "--threads",
        type=a.positive_int,
        default=None,
        help="torch CPU threads (default: one per core; on a machine busy with other jobs "
        "1 can be faster, as simulator and network take turns in one process)",
    )
    parser.add_argument("--no-video", action="store_true", help="skip the report's MP4")
    parser.add_argument(
        "--workers",
        type=a.positive_int,
        default=1,
        help="drive the seeds in N processes of a local Ray cluster, each with its own "
        "simulators and --threads (default 1) torch threads; the episodes are those of "
        "the serial run with the same --threads (the ray extra: "
        'pip install "steering_agent[ray]"; default 1: serial, no Ray)',
    )
    parser.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="join the Ray cluster at ADDR (e.g. auto, or HEAD:6379) instead of starting "
        "one; its CPUs drive the seeds (docs/scale.md)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    from steering_agent.evaluation.carla_eval import add_carla_arguments

    add_carla_arguments(parser)  # --env, --carla-servers, ...
    from sim.limits import LIMITS

    cam = parser.add_argument_group(
        "camera and car (default: the training camera and car; docs/cameras.md)"
    )
    a.range_options(cam, LIMITS)
    cam.add_argument(
        "--uncalibrated",
        action="store_true",
        help="do not tell the policy the camera and car (it assumes the training ones; for "
        "comparison with the calibrated default)",
    )
    parser.add_argument(
        "--suite",
        action="append",
        default=None,
        metavar="NAME",
        help="named suites instead of one setting (repeat; 'all' for every one): lane, "
        "world, cameras, memory, highway (docs/benchmarks.md; --episodes seeds per cell)",
    )
