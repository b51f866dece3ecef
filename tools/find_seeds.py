"""Training road seeds whose varied world has given traits, for targeted recordings.

The varied look draws each road's layout (`sim.lanes`) and style (`sim.render.RoadStyle`)
from its seed. This lists training seeds (below `sim.seeds.EVAL_SEED_START`) by what
those draws hold, without rendering, e.g. the roads without edge lines that the
evaluation's hardest seeds are:

    python tools/find_seeds.py --start 20000 --count 16 --no-edge-lines --one-way \
        --min-shoulder-m 0.8

prints one seed per line; feed them to `steering-agent record --episodes 1 --seed S`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sim.render import RoadStyle  # noqa: E402
from sim.road import LaneRoad  # noqa: E402
from sim.seeds import EVAL_SEED_START  # noqa: E402


def matches(seed: int, args: argparse.Namespace) -> bool:
    """Whether road `seed` of the varied look has every trait `args` asks for."""
    if args.no_edge_lines and RoadStyle.from_seed(seed).edge_lines:
        return False  # (the style draws them: the layout's edge_kind alone is not asked)
    road = LaneRoad.generate(seed, 1000.0, "varied", args.lanes_per_direction)
    lay = road.layout
    if args.edge_kind is not None and lay.edge_kind != args.edge_kind:
        return False
    if lay.lanes_same < args.min_lanes:
        return False
    if args.one_way and lay.lanes_oncoming != 0:
        return False
    if args.two_way and lay.lanes_oncoming == 0:
        return False
    if args.rightmost and lay.ego_lane != 0:
        return False
    if lay.shoulder_m < args.min_shoulder_m:
        return False
    return args.min_speed_mps <= lay.speed_mps <= args.max_speed_mps


def find(args: argparse.Namespace) -> Iterator[int]:
    """The first `args.count` matching seeds from `args.start` up."""
    found = 0
    for seed in range(args.start, EVAL_SEED_START):
        if found >= args.count:
            return
        if matches(seed, args):
            found += 1
            yield seed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--start", type=int, default=0, help="first seed to look at")
    p.add_argument("--count", type=int, default=10, help="how many seeds to print")
    p.add_argument("--lanes-per-direction", type=int, choices=(1, 2, 3, 4), default=None,
                   help="the layout as `record --lanes-per-direction N` draws it")  # fmt: skip
    p.add_argument("--no-edge-lines", action="store_true",
                   help="the road's style draws no edge lines (RoadStyle.edge_lines)")  # fmt: skip
    p.add_argument("--edge-kind", choices=("solid", "none"), default=None,
                   help="the layout's edge lines (RoadLayout.edge_kind)")  # fmt: skip
    p.add_argument("--min-lanes", type=int, default=1, help="ego-direction lanes at least")
    p.add_argument("--one-way", action="store_true", help="no oncoming lanes")
    p.add_argument("--two-way", action="store_true", help="oncoming lanes")
    p.add_argument("--rightmost", action="store_true", help="the ego in the rightmost lane")
    p.add_argument("--min-shoulder-m", type=float, default=0.0, help="shoulder at least")
    p.add_argument("--min-speed-mps", type=float, default=0.0)
    p.add_argument("--max-speed-mps", type=float, default=1e9)
    args = p.parse_args(argv)
    if not 0 <= args.start < EVAL_SEED_START:
        p.error(f"--start {args.start}: training seeds are 0..{EVAL_SEED_START - 1}")
    if args.one_way and args.two_way:
        p.error("--one-way and --two-way exclude each other: pass one")
    for seed in find(args):
        print(seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
