"""The launch files and `steering-agent closed-loop` start the same executables with the
same parameter files; the parameter files only set parameters the nodes declare."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from steering_agent.ros.closed_loop import NODES, node_command

REPO = Path(__file__).resolve().parents[1]


def _launched_nodes(path: Path) -> dict[str, dict]:
    """executable -> {name, yaml files, override keys} of each `Node(...)` in a launch file."""
    tree = ast.parse(path.read_text())
    yaml_everywhere = {
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and str(n.value).endswith(".yaml")
    }
    nodes = {}
    for call in ast.walk(tree):
        if not (isinstance(call, ast.Call) and getattr(call.func, "id", "") == "Node"):
            continue
        kw = {k.arg: k.value for k in call.keywords}
        params = kw.get("parameters")
        yamls = {
            n.value
            for n in ast.walk(params)
            if isinstance(n, ast.Constant) and str(n.value).endswith(".yaml")
        }
        overrides = set()
        for d in ast.walk(params):
            if isinstance(d, ast.Dict):
                overrides |= {k.value for k in d.keys}
        nodes[kw["executable"].value] = {
            "name": kw["name"].value,
            "package": kw["package"].value,
            # a parameter file given as a launch argument's default counts too
            "yamls": yamls or yaml_everywhere,
            "overrides": overrides,
        }
    return nodes


def _console_scripts() -> dict[str, str]:
    text = (REPO / "setup.py").read_text()
    return dict(re.findall(r'"(\w+) = ([\w.]+):main"', text))


def test_sim_launch_starts_what_closed_loop_starts():
    launched = _launched_nodes(REPO / "launch/sim.launch.py")
    assert set(launched) == set(NODES)
    scripts = _console_scripts()
    for executable, (module, params_file) in NODES.items():
        node = launched[executable]
        assert node["package"] == "steering_agent"
        assert node["yamls"] == {params_file}
        assert scripts[executable] == module  # `ros2 run` runs the module closed-loop runs
        cmd = node_command(executable, {"seed": 1})
        assert cmd[1:3] == ["-m", module] and Path(cmd[5]) == REPO / "config" / params_file


def test_agent_launch_runs_the_agent_with_its_parameter_file():
    launched = _launched_nodes(REPO / "launch/agent.launch.py")
    assert set(launched) == {"agent"}
    assert launched["agent"]["yamls"] == {NODES["agent"][1]}


@pytest.mark.parametrize("executable", sorted(NODES))
def test_parameter_files_name_the_launched_node(executable):
    launched = _launched_nodes(REPO / "launch/sim.launch.py")[executable]
    data = yaml.safe_load((REPO / "config" / NODES[executable][1]).read_text())
    assert list(data) == [launched["name"]]
    assert "ros__parameters" in data[launched["name"]]


@pytest.mark.ros
@pytest.mark.parametrize("executable", ["agent", "sim_bridge"])
def test_parameter_files_and_overrides_set_only_declared_parameters(executable):
    import importlib

    module = importlib.import_module(NODES[executable][0])
    declared = set(module.PARAMETERS)
    data = yaml.safe_load((REPO / "config" / NODES[executable][1]).read_text())
    params = next(iter(data.values()))["ros__parameters"]
    assert set(params) <= declared, set(params) - declared
    assert set(params) == declared  # the file documents every parameter
    for name, value in params.items():
        default = module.PARAMETERS[name][0]
        assert type(value) is type(default) or isinstance(default, float), (name, value)
    launched = _launched_nodes(REPO / "launch/sim.launch.py")[executable]
    assert launched["overrides"] <= declared


def test_agent_launch_file_really_launches_where_launch_ros_exists(tmp_path):
    """Where launch_ros exists (a ROS 2 install), launch agent.launch.py and see the node."""
    pytest.importorskip("launch_ros", reason="launch_ros has no PyPI wheel; needs a ROS 2 install")
    import threading

    import launch
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import PythonLaunchDescriptionSource

    from tests.ros_helpers import Probe, random_checkpoint

    try:
        share = Path(get_package_share_directory("steering_agent"))
    except PackageNotFoundError:
        pytest.skip("steering_agent is not installed (colcon build / pip install .)")
    params = yaml.safe_load((REPO / "config/agent.yaml").read_text())
    params["agent"]["ros__parameters"]["checkpoint"] = str(random_checkpoint(tmp_path / "r.pt"))
    params_file = tmp_path / "agent.yaml"
    params_file.write_text(yaml.safe_dump(params))
    service = launch.LaunchService()
    service.include_launch_description(
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(str(share / "launch/agent.launch.py")),
            launch_arguments={"params_file": str(params_file)}.items(),
        )
    )
    thread = threading.Thread(target=service.run, daemon=True)
    probe = Probe("launch_probe")
    thread.start()
    try:
        assert probe.spin_until(lambda: "agent" in probe.node.get_node_names(), 60.0)
    finally:
        # The launched agent first: a participant whose TCP peers are up can hang when deleted.
        service.shutdown()
        thread.join(30)
        probe.close()


class _Recorded:
    """Stand-in for a launch / launch_ros class: keeps its constructor arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


def _sim_launch_actions(monkeypatch, env: dict) -> list:
    """Run sim.launch.py's generate_launch_description under `env`, with STAND-IN `launch`
    and `launch_ros` modules (no PyPI wheel; the real ones run in the test above wherever a
    ROS 2 install has them) that record what the launch file builds."""
    import runpy
    import sys
    import types

    modules = {
        "launch": ["LaunchDescription"],
        "launch.actions": ["DeclareLaunchArgument", "SetEnvironmentVariable"],
        "launch.conditions": ["IfCondition"],
        "launch.substitutions": ["LaunchConfiguration"],
        "launch_ros": [],
        "launch_ros.actions": ["Node"],
    }
    for name, classes in modules.items():
        module = types.ModuleType(name)
        for cls in classes:
            setattr(module, cls, type(cls, (_Recorded,), {}))
        monkeypatch.setitem(sys.modules, name, module)
    for name in (
        "FASTDDS_BUILTIN_TRANSPORTS",
        "FASTDDS_DEFAULT_PROFILES_FILE",
        "FASTRTPS_DEFAULT_PROFILES_FILE",
        "ROS_DISTRO",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    generate = runpy.run_path(str(REPO / "launch/sim.launch.py"))["generate_launch_description"]
    return generate().args[0]


def _set_env(actions) -> dict:
    found = {}
    for a in actions:
        if type(a).__name__ == "SetEnvironmentVariable":
            assert type(a.kwargs["condition"]).__name__ == "IfCondition"
            found[a.args[0]] = a.args[1]
    return found


def test_sim_launch_sets_the_one_host_dds_profile_as_closed_loop_does(monkeypatch):
    from steering_agent.common.package_files import config_file
    from steering_agent.ros.dds import LOCAL_PROFILE

    profile = str(config_file(LOCAL_PROFILE))
    actions = _sim_launch_actions(monkeypatch, {})
    assert _set_env(actions) == {"FASTDDS_DEFAULT_PROFILES_FILE": profile}
    declared = {a.args[0]: a.kwargs for a in actions if type(a).__name__ == "DeclareLaunchArgument"}
    assert declared["local_dds"]["default_value"] == "true"
    # every node starts after the variable is set
    kinds = [type(a).__name__ for a in actions]
    assert kinds.index("SetEnvironmentVariable") < kinds.index("Node")
    # Humble's Fast DDS 2 reads the older name
    humble = _sim_launch_actions(monkeypatch, {"ROS_DISTRO": "humble"})
    assert _set_env(humble) == {"FASTRTPS_DEFAULT_PROFILES_FILE": profile}


@pytest.mark.parametrize(
    "choice",
    [
        {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"},
        {"FASTDDS_DEFAULT_PROFILES_FILE": "/etc/my_profile.xml"},
        {"FASTRTPS_DEFAULT_PROFILES_FILE": "/etc/my_profile.xml", "ROS_DISTRO": "humble"},
    ],
)
def test_sim_launch_leaves_a_users_transport_choice_alone(monkeypatch, choice):
    assert _set_env(_sim_launch_actions(monkeypatch, choice)) == {}
