"""Test set-up shared by every test: the environment the ROS 2 wheels need."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# The ROS 2 wheels look up interfaces in the ament index of the venv (see Makefile).
_prefix = os.environ.get("AMENT_PREFIX_PATH", "")
if sys.prefix not in _prefix.split(os.pathsep):
    os.environ["AMENT_PREFIX_PATH"] = os.pathsep.join(p for p in (sys.prefix, _prefix) if p)
os.environ.setdefault("PYTHONUNBUFFERED", "1")

# Every DDS participant of the session, in this process (loaded once, at its first one)
# and in the node processes it starts, uses the project's one-host Fast DDS profile, as
# `steering-agent closed-loop` gives its nodes (config/fastdds_local.xml).
from steering_agent.ros.dds import (  # noqa: E402
    remove_stale_segments,
    use_local_transport,
)

use_local_transport()
# shared-memory segments of killed processes (tests kill nodes with SIGKILL on purpose)
remove_stale_segments()


def _have_rclpy() -> bool:
    try:
        import rclpy  # noqa: F401
    except Exception:
        return False
    return True


HAVE_RCLPY = _have_rclpy()


def pytest_collection_modifyitems(config, items):
    if HAVE_RCLPY:
        return
    skip = pytest.mark.skip(reason="rclpy is not importable (run `make test`, which installs it)")
    for item in items:
        if "ros" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def load_tool():
    """`load_tool("find_seeds")`: the module of tools/find_seeds.py (tools are scripts, not
    a package)."""
    import importlib.util

    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


@pytest.fixture(scope="module")
def domain():
    """A DDS domain for a whole test module (its node processes live across tests)."""
    from tests.ros_helpers import restore_domain, set_domain, unique_domain

    old = set_domain(unique_domain())
    yield
    restore_domain(old)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A checkpoint of an untrained network, shared by a module's node tests."""
    from tests.ros_helpers import random_checkpoint

    return random_checkpoint(tmp_path_factory.mktemp("ckpt") / "random.pt")


@pytest.fixture
def ros_domain(monkeypatch):
    """A DDS domain of this test's own, so parallel or leftover processes never cross-talk."""
    domain = str(1 + (os.getpid() % 100))
    monkeypatch.setenv("ROS_DOMAIN_ID", domain)
    return domain


def pytest_sessionfinish(session, exitstatus):
    session.config._steering_agent_exitstatus = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Leave without running Fast DDS's participant destructors, which can hang, when a
    test kept ROS objects alive (steering_agent.ros.dds.KEPT_UNTIL_EXIT)."""
    dds = sys.modules.get("steering_agent.ros.dds")
    if dds is not None and dds.KEPT_UNTIL_EXIT:
        dds.exit_without_destructors(getattr(config, "_steering_agent_exitstatus", 0))
