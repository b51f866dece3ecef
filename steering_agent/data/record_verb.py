"""`steering-agent record`: its options and its run (the loop is `recording`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from steering_agent.common import cli_args
from steering_agent.data.episode_bags import INDEX_FILE, read_episode_index
from steering_agent.data.recording import check_training_seeds, record_episodes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `steering-agent record`."""
    from sim.looks import WEATHER_KINDS

    a = cli_args
    parser.add_argument("--episodes", type=a.positive_int, default=1, help="episodes to record")
    parser.add_argument("--out", type=Path, required=True, help="folder for bags + index.json")
    parser.add_argument(
        "--seed", type=a.nonneg_int, default=0, help="road seed of episode 0 (i: S+i)"
    )
    parser.add_argument(
        "--noise",
        type=a.nonneg_float,
        default=0.0,
        metavar="SIGMA",
        help="std of the correlated steering drift added to the executed "
        "action (labels stay clean); e.g. 0.1",
    )
    parser.add_argument("--width", type=a.camera_px, default=200, help="camera width (px)")
    parser.add_argument("--height", type=a.camera_px, default=66, help="camera height (px)")
    parser.add_argument(
        "--route-length",
        type=a.route_length,
        default=None,
        metavar="M",
        help="route length in metres (default: the env's)",
    )
    parser.add_argument(
        "--max-steps", type=a.positive_int, default=None, help="cap steps per episode"
    )
    parser.add_argument(
        "--look",
        choices=("plain", "varied"),
        default=None,
        help="the simulated world: plain (one road style) or varied (lanes, objects, "
        "traffic, weather drawn per seed); default: the env's (plain)",
    )
    parser.add_argument(
        "--weather",
        choices=WEATHER_KINDS,
        default=None,
        help="the same light and weather on every episode (the env's `weather`; "
        "default: the look's, drawn per seed on varied), e.g. more night drives",
    )
    parser.add_argument(
        "--lanes-per-direction",
        type=int,
        choices=(1, 2, 3, 4),
        default=None,
        metavar="N",
        help="N lanes each way on every episode (1-4; the env's `lanes_per_direction`; "
        "default: drawn per seed on varied roads)",
    )
    parser.add_argument(
        "--randomize-camera",
        action="store_true",
        help="draw each episode's camera mount, FOV, image size and car around real "
        "set-ups (steering_agent.data.setups; overrides --width/--height)",
    )
    parser.add_argument(
        "--keep-size",
        action="store_true",
        help="with --randomize-camera: keep --width/--height for every drawn camera "
        "(its mount, FOV and car are still drawn), e.g. low-resolution cameras",
    )
    parser.add_argument(
        "--driver",
        default=None,
        metavar="CHECKPOINT",
        help="DAgger: this checkpoint drives and the expert labels every frame; the "
        "expert takes over beyond 0.7 m off centre until back within 0.25 m "
        "(steering_agent.data.dagger)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--workers",
        type=a.positive_int,
        default=1,
        help="record the episodes in N processes of a local Ray cluster, one env each "
        '(the ray extra: pip install "steering_agent[ray]"; default 1: serial, no Ray)',
    )
    parser.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="join the Ray cluster at ADDR (e.g. auto, or HEAD:6379) instead of starting "
        "one; --out must be a folder its nodes share (docs/scale.md)",
    )


def run(args: argparse.Namespace) -> int:
    """`steering-agent record`: check --out, record, then print one line per episode."""
    from steering_agent.common import raycluster

    if getattr(args, "keep_size", False) and not getattr(args, "randomize_camera", False):
        raise cli_args.UsageError(
            "--keep-size keeps --width/--height for randomised cameras: add "
            "--randomize-camera, or drop --keep-size"
        )
    workers, address = getattr(args, "workers", 1), getattr(args, "ray_address", None)
    fan = raycluster.check_workers(workers, address)  # a missing extra: one line at once
    cli_args.writable_dir(args.out, "--out")
    check_training_seeds(args.seed, args.episodes)
    if getattr(args, "driver", None) is not None:  # a bad checkpoint: one line, now
        from steering_agent.policy.checkpoint import load_checkpoint

        load_checkpoint(args.driver, "--driver")
    if fan:
        raycluster.connect(workers, address)
    try:
        entries = _record(args, fan)
    finally:
        if fan:
            raycluster.shutdown()
    for e in entries:
        print(f"{e['bag']}: {e['steps']} steps, {e['distance_m']:.1f} m")
    total = len(read_episode_index(args.out))
    print(f"wrote {len(entries)} bags and {args.out / INDEX_FILE} ({total} episodes in all)")
    return 0


def _record(args: argparse.Namespace, fan: bool) -> list[dict]:
    return record_episodes(
        args.out,
        args.episodes,
        args.seed,
        args.noise,
        args.width,
        args.height,
        args.route_length,
        args.max_steps,
        progress=not args.no_progress,
        fanout=fan,
        look=getattr(args, "look", None),
        randomize_camera=getattr(args, "randomize_camera", False),
        driver=getattr(args, "driver", None),
        keep_size=getattr(args, "keep_size", False),
        weather=getattr(args, "weather", None),
        lanes_per_direction=getattr(args, "lanes_per_direction", None),
    )
