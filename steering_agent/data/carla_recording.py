"""Record expert drives on a CARLA server as training bags, through the same writer.

`SteeringAgent/CarlaDrive-v0` has the embedded env's observation and `info` keys
(including the privileged pure-pursuit `expert_action`), so `recording.record_episode`
and `EpisodeBagWriter` write CARLA drives unchanged: same topics, same index.json, and
`steering-agent train --data` reads them like any other recording.

    python -m steering_agent.data.carla_recording --out data/carla --episodes 5 --port 2000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from steering_agent.data.episode_bags import INDEX_FILE
from steering_agent.data.recording import record_env_episodes

ENV_ID = "SteeringAgent/CarlaDrive-v0"


def record_carla_episodes(
    out_dir: str | Path,
    episodes: int,
    seed: int = 0,
    noise_sigma: float = 0.0,
    max_steps: int | None = None,
    progress: bool = True,
    **env_kwargs: Any,
) -> list[dict]:
    """Record `episodes` expert drives on CARLA; the seed picks the route's junction turns
    (and the spawn point when `spawn_point=None`). `env_kwargs` go to CarlaDriveEnv.

    Raises:
        ValueError: an evaluation seed, or a bag folder that exists already.
        CarlaConnectionError: no server at host:port.
    """
    return record_env_episodes(
        ENV_ID, env_kwargs, out_dir, episodes, seed, noise_sigma, max_steps, progress,
        prefix="carla_episode",
    )  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m steering_agent.data.carla_recording",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", type=Path, required=True, help="folder for bags + index.json")
    p.add_argument("--episodes", type=int, default=1)
    p.add_argument("--seed", type=int, default=0, help="seed of episode 0 (episode i: S+i)")
    p.add_argument("--noise", type=float, default=0.0, metavar="SIGMA",
                   help="steering drift on executed actions (labels stay clean)")  # fmt: skip
    p.add_argument("--max-steps", type=int, default=None, help="cap steps per episode")
    p.add_argument("--host", default="localhost")
    p.add_argument("--port", type=int, default=2000)
    p.add_argument("--timeout", type=float, default=10.0, help="CARLA RPC timeout (s)")
    p.add_argument("--town", default="Town01", help="map to load; 'keep' = the loaded one")
    p.add_argument("--spawn-point", default="seed",
                   help="spawn point index, or 'seed' to draw one per episode")  # fmt: skip
    p.add_argument("--width", type=int, default=800)
    p.add_argument("--height", type=int, default=600)
    p.add_argument("--route-length", type=float, default=300.0, metavar="M")
    p.add_argument("--no-progress", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    from sim.carla_session import CarlaConnectionError

    args = build_parser().parse_args(argv)
    spawn = None if args.spawn_point == "seed" else int(args.spawn_point)
    try:
        entries = record_carla_episodes(
            args.out, args.episodes, args.seed, args.noise, args.max_steps,
            progress=not args.no_progress, host=args.host, port=args.port,
            timeout=args.timeout, town=None if args.town == "keep" else args.town,
            spawn_point=spawn, width=args.width, height=args.height,
            route_length_m=args.route_length,
        )  # fmt: skip
    except (ValueError, CarlaConnectionError) as err:
        print(f"carla_recording: {err}", file=sys.stderr)
        return 2
    for e in entries:
        print(f"{e['bag']}: {e['steps']} steps, {e['distance_m']:.1f} m")
    print(f"wrote {len(entries)} bags and {Path(args.out) / INDEX_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
