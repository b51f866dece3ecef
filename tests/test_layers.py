"""The import rules of the wings (README, "Parts"): each folder is one layer and a lower
layer never imports a higher one. Every import is counted, also those inside functions.

    verbs      steering_agent/{cli,train,bench,bench_perf,drive}.py  may import everything below
    training   steering_agent/training.py                     training runs (over training_loop)
    loop       steering_agent/training_loop.py                the epoch loop (over data, policy)
    ros        steering_agent/ros/                            the only users of rclpy
    middle     steering_agent/agent.py, data/, evaluation/    policy, interfaces, common, sim
    ground     steering_agent/policy/, interfaces/, common/   no sim, no rclpy
    sim        sim/                                           no torch, no rclpy, no steering_agent
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ROS_MODULES = {
    "rclpy", "rcl_interfaces", "sensor_msgs", "std_msgs", "std_srvs", "geometry_msgs",
    "nav_msgs", "rosgraph_msgs", "builtin_interfaces", "carla_msgs", "lifecycle_msgs",
    "diagnostic_msgs", "ackermann_msgs", "launch", "launch_ros", "tf2_ros",
}  # fmt: skip
# layer of each part: a module may import parts of a lower rank, or its own part
RANK = {
    "sim": 0, "common": 0, "interfaces": 0, "policy": 1, "data": 2, "evaluation": 2,
    "agent": 2, "training_loop": 2.5, "training": 3, "ros": 3, "verbs": 4,
}  # fmt: skip
VERBS = {"cli", "train", "bench", "bench_perf", "drive", "preview", "__init__", "__main__"}


def _part(module: str) -> str | None:
    """The part a dotted module name belongs to (None: not ours)."""
    head, _, rest = module.partition(".")
    if head == "sim":
        return "sim"
    if head != "steering_agent":
        return None
    first = rest.split(".")[0] if rest else "__init__"
    return "verbs" if first in VERBS else first


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # `from steering_agent import agent` names a module of the package
            if node.module in ("steering_agent", "sim"):
                found += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return found


def _sources() -> list[Path]:
    return sorted((REPO / "steering_agent").rglob("*.py")) + sorted((REPO / "sim").rglob("*.py"))


def _module_of(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts)


def _violations() -> list[str]:
    bad = []
    for path in _sources():
        me = _part(_module_of(path))
        for line, name in _imports(path):
            where = f"{path.relative_to(REPO)}:{line} imports {name}"
            top = name.split(".")[0]
            if top in ROS_MODULES and me not in ("ros", "verbs"):
                bad.append(f"{where}: only steering_agent/ros/ may use ROS")
            if me == "sim" and top in ("torch", "rclpy", "steering_agent"):
                bad.append(f"{where}: sim/ imports neither torch, rclpy nor steering_agent")
            if me == "policy" and top == "sim":
                bad.append(f"{where}: policy/ does not import sim")
            them = _part(name)
            if them is None or them == me or them not in RANK or me not in RANK:
                continue
            if RANK[them] >= RANK[me]:
                bad.append(f"{where}: {me} (layer {RANK[me]}) may not import {them}")
    return bad


def test_every_part_has_a_layer():
    parts = {_part(_module_of(p)) for p in _sources()}
    assert parts <= set(RANK), parts - set(RANK)


def test_no_import_runs_upward_and_only_ros_uses_rclpy():
    assert _violations() == []


def test_verbs_reach_ros_only_inside_functions():
    # `steering-agent eval` or `train` must work without rclpy: the verbs import ros/
    # modules only where a ROS feature is asked for.
    for name in VERBS - {"__init__", "__main__"}:
        path = REPO / "steering_agent" / f"{name}.py"
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                mods = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                )
                for m in mods:
                    assert not m.startswith("steering_agent.ros"), f"{path.name}: {m}"
                    assert m.split(".")[0] not in ROS_MODULES, f"{path.name}: {m}"


@pytest.mark.parametrize(
    ("module", "source", "rule"),
    [
        ("sim/x.py", "import torch", "sim/ imports neither"),
        ("steering_agent/policy/x.py", "from sim.env import DriveEnv", "policy/ does not"),
        ("steering_agent/policy/x.py", "from steering_agent.data import bagio", "may not import"),
        ("steering_agent/data/x.py", "def f():\n    import rclpy", "only steering_agent/ros/"),
        ("steering_agent/agent.py", "from steering_agent.ros import dds", "may not import"),
    ],
)
def test_the_rules_catch_a_broken_import(tmp_path, module, source, rule):
    """The checker itself fails on each kind of broken rule (so the test above can fail)."""
    fake = tmp_path / module
    fake.parent.mkdir(parents=True)
    fake.write_text(source + "\n")
    global REPO
    old, REPO = REPO, tmp_path
    try:
        found = _violations()
    finally:
        REPO = old
    assert any(rule in v for v in found), found
