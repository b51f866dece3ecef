"""Simulator throughput: env steps per second, driven by the expert's own action.

`python -m sim.bench` prints steps/s at 200x66 and 800x600. Each step includes
rendering, the vehicle model, road lookup and the expert action in `info`.
"""

from __future__ import annotations

import argparse
import time

from sim.env import DriveEnv


def sim_steps_per_second(
    width: int = 200, height: int = 66, steps: int = 2000, seed: int = 0
) -> float:
    """Median-free plain rate: `steps` env steps (after one warm-up step) per wall second."""
    env = DriveEnv(width=width, height=height, route_length_m=max(200.0, steps * 0.6))
    _, info = env.reset(seed=seed)
    _, _, _, _, info = env.step(info["expert_action"])
    start = time.perf_counter()
    for _ in range(steps):
        _, _, term, trunc, info = env.step(info["expert_action"])
        if term or trunc:
            _, info = env.reset(seed=seed)
    return steps / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=2000, help="steps per size (default 2000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per size; median printed")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for w, h in ((200, 66), (800, 600)):
        n = args.steps if w * h < 100_000 else max(100, args.steps // 5)
        rates = sorted(sim_steps_per_second(w, h, n, args.seed) for _ in range(args.repeats))
        print(
            f"{w}x{h}: {rates[len(rates) // 2]:.0f} steps/s (median of {args.repeats}, "
            f"{n} steps each)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
