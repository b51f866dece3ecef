"""Simulator throughput: env steps per second, driven by the expert's own action.

`python -m sim.bench` prints steps/s at 200x66 and 800x600, for the plain and the varied
look side by side (`--look plain|varied|both`). Each step includes rendering (and, on the
varied look, scenery and weather), the vehicle model, road lookup and the expert action.
"""

from __future__ import annotations

import argparse
import time

from sim.env import DriveEnv

SIZES = ((200, 66), (800, 600))
LOOKS = ("plain", "varied")


def sim_steps_per_second(
    width: int = 200, height: int = 66, steps: int = 2000, seed: int = 0, look: str = "plain"
) -> float:
    """Median-free rate: `steps` env steps (after one warm-up step) per wall second."""
    env = DriveEnv(width=width, height=height, route_length_m=max(200.0, steps * 1.3), look=look)
    _, info = env.reset(seed=seed)
    _, _, _, _, info = env.step(info["expert_action"])
    start = time.perf_counter()
    for _ in range(steps):
        _, _, term, trunc, info = env.step(info["expert_action"])
        if term or trunc:
            _, info = env.reset(seed=seed)
    return steps / (time.perf_counter() - start)


def sim_rates(
    steps: int = 2000,
    repeats: int = 3,
    seed: int = 0,
    looks: tuple[str, ...] = LOOKS,
    sizes: tuple[tuple[int, int], ...] = SIZES,
) -> dict[tuple[int, int], dict[str, float]]:
    """{(width, height): {look: median steps/s}}; big frames run steps // 5 (>= 100)."""
    out: dict[tuple[int, int], dict[str, float]] = {}
    for w, h in sizes:
        n = steps if w * h < 100_000 else max(100, steps // 5)
        out[(w, h)] = {}
        for look in looks:
            rates = sorted(sim_steps_per_second(w, h, n, seed, look) for _ in range(repeats))
            out[(w, h)][look] = rates[len(rates) // 2]
    return out


def format_rates(rates: dict[tuple[int, int], dict[str, float]]) -> list[str]:
    """One line per size: each look's steps/s, and varied / plain where both ran."""
    lines = []
    for (w, h), by_look in rates.items():
        parts = [f"{look} {r:.0f} steps/s" for look, r in by_look.items()]
        if "plain" in by_look and "varied" in by_look:
            parts.append(f"varied/plain {by_look['varied'] / by_look['plain']:.2f}x")
        lines.append(f"{w}x{h}: " + ", ".join(parts))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=2000, help="steps per size (default 2000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per size; median printed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--look", choices=(*LOOKS, "both"), default="both")
    args = parser.parse_args(argv)
    looks = LOOKS if args.look == "both" else (args.look,)
    for line in format_rates(sim_rates(args.steps, args.repeats, args.seed, looks)):
        print(line + f" (median of {args.repeats})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
