"""tools/find_seeds.py: the seeds it lists have the traits asked for, and only those do."""

from __future__ import annotations

import pytest

from sim.render import RoadStyle
from sim.road import LaneRoad


@pytest.fixture(scope="module")
def find_seeds(load_tool):
    return load_tool("find_seeds")


def test_listed_seeds_are_the_first_unlined_one_way_roads(find_seeds, capsys):
    argv = ["--start", "300", "--count", "3", "--no-edge-lines", "--one-way"]
    assert find_seeds.main(argv) == 0
    seeds = [int(line) for line in capsys.readouterr().out.split()]
    assert len(seeds) == 3 and seeds == sorted(seeds) and seeds[0] >= 300

    def wanted(s):
        lay = LaneRoad.generate(s, 1000.0, "varied").layout
        return not RoadStyle.from_seed(s).edge_lines and lay.lanes_oncoming == 0

    assert all(wanted(s) for s in seeds)
    # none skipped in between: every other seed up to the last lacks a trait
    assert [s for s in range(300, seeds[-1] + 1) if wanted(s)] == seeds


def test_conflicting_or_evaluation_options_are_refused(find_seeds, capsys):
    with pytest.raises(SystemExit):
        find_seeds.main(["--one-way", "--two-way"])
    assert "exclude each other" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        find_seeds.main(["--start", "1000000"])
    assert "training seeds" in capsys.readouterr().err


def test_layout_traits_follow_the_forced_lane_count(find_seeds, capsys):
    argv = ["--start", "50", "--count", "2", "--edge-kind", "none", "--lanes-per-direction",
            "2", "--two-way", "--rightmost"]  # fmt: skip
    assert find_seeds.main(argv) == 0
    seeds = [int(line) for line in capsys.readouterr().out.split()]
    assert len(seeds) == 2
    for s in seeds:
        lay = LaneRoad.generate(s, 1000.0, "varied", 2).layout
        assert (lay.edge_kind, lay.lanes_same, lay.ego_lane) == ("none", 2, 0)
        assert lay.lanes_oncoming > 0
