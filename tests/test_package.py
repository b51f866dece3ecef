"""The package itself: imports, installed layout, and a colcon build whose `agent` runs."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import pytest

from tests.conftest import REPO


def _python(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True
    )


@pytest.mark.parametrize("module", ["sim", "steering_agent"])
def test_import_pulls_in_neither_rclpy_nor_torch(module):
    out = _python(
        f"import sys, {module}; "
        "print(sorted(m for m in ('rclpy', 'torch', 'carla') if m in sys.modules))"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_import_sim_registers_both_envs():
    out = _python(
        "import gymnasium, sim; ids = gymnasium.registry.keys(); "
        "print('SteeringAgent/Drive-v0' in ids, 'SteeringAgent/CarlaDrive-v0' in ids)"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "True"]


def test_package_xml_declares_the_runtime_dependencies():
    root = ET.parse(REPO / "package.xml").getroot()
    assert root.get("format") == "3"
    assert root.findtext("name") == "steering_agent"
    deps = {e.text for e in root if e.tag in ("depend", "exec_depend")}
    assert {
        "rclpy",
        "sensor_msgs",
        "std_msgs",
        "geometry_msgs",
        "std_srvs",
        "rosgraph_msgs",
    } <= deps
    assert root.find("export/build_type").text == "ament_python"


def test_console_scripts_point_at_real_functions():
    import importlib
    import re

    text = (REPO / "setup.py").read_text()
    scripts = dict(re.findall(r'"([\w-]+) = ([\w.]+:\w+)"', text))
    assert {"steering-agent", "agent", "sim_bridge", "recorder"} <= scripts.keys()
    for target in scripts.values():
        module, func = target.split(":")
        assert callable(getattr(importlib.import_module(module), func)), target


def test_cli_help_lists_every_verb(capsys):
    from steering_agent.cli import VERBS, main

    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for verb in VERBS:
        assert verb in out


@pytest.mark.parametrize("verb", ["drive", "record", "train", "eval", "bench", "closed-loop"])
def test_every_verb_has_its_own_help(verb):
    out = subprocess.run(
        [sys.executable, "-m", "steering_agent.cli", verb, "--help"],
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert f"steering-agent {verb}" in out.stdout


@pytest.mark.slow
@pytest.mark.ros
def test_colcon_build_and_run_agent_from_install_space(tmp_path, ros_domain, monkeypatch):
    # Default transports for the agent and this process's probe node alike: it is
    # destroyed below, and a LARGE_DATA (TCP) participant can hang when deleted.
    monkeypatch.delenv("FASTDDS_BUILTIN_TRANSPORTS", raising=False)
    colcon = shutil.which("colcon", path=os.path.dirname(sys.executable))
    if colcon is None:
        pytest.skip("colcon is not installed in this environment (make setup installs it)")
    build = subprocess.run(
        [colcon, "build", "--base-paths", str(REPO), "--build-base", str(tmp_path / "build"),
         "--install-base", str(tmp_path / "install"), "--event-handlers", "console_direct-"],
        cwd=tmp_path, capture_output=True, text=True,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    install = tmp_path / "install"
    exe = install / "steering_agent/lib/steering_agent/agent"
    share = install / "steering_agent/share/steering_agent"
    assert exe.exists()
    assert (share / "config/agent.yaml").exists()
    assert (share / "package.xml").exists()

    # Source the install space the way a ROS user does (colcon writes the POSIX sh variant
    # everywhere; the bash one needs colcon-bash), and run the installed executable.
    script = f"source {install}/local_setup.sh && exec {exe} --ros-args -r __node:=colcon_agent"
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # the install space, not the checkout, must provide the code
    proc = subprocess.Popen(
        ["bash", "-c", script], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        import rclpy

        rclpy.init()
        node = rclpy.create_node("colcon_probe")
        try:
            seen = False
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                rclpy.spin_once(node, timeout_sec=0.2)
                if "colcon_agent" in node.get_node_names():
                    seen = True
                    break
        finally:
            node.destroy_node()
            rclpy.shutdown()
        assert seen, "the agent from the colcon install space never joined the ROS graph"
        # The node must come from the install space, not the source tree.
        out = subprocess.run(
            ["bash", "-c", f"source {install}/local_setup.sh && {sys.executable} -c "
             "'import steering_agent.ros.agent_node as m; print(m.__file__)'"],
            cwd=tmp_path, env=env, capture_output=True, text=True,
        )  # fmt: skip
        assert str(install) in out.stdout, out.stdout + out.stderr
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            rc = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            rc = proc.wait()
        log = proc.stdout.read()
    assert rc == 0, log[-3000:]
