"""Finding config/, launch/ and checkpoints/ outside a source checkout."""

from __future__ import annotations

import sys

import pytest

from steering_agent.common import package_files as pf


@pytest.fixture
def installed_only(monkeypatch, tmp_path):
    """No source checkout, no AMENT_PREFIX_PATH: only `pip install .` data files, if any."""
    monkeypatch.setattr(pf, "_CHECKOUT", tmp_path / "nowhere")
    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "venv"))
    return tmp_path / "venv"


def test_pip_prefix_share_dir_is_found_without_ament_prefix_path(installed_only):
    share = installed_only / "share" / "steering_agent"
    share.mkdir(parents=True)
    (share / "package.xml").write_text("<package/>")
    assert pf.share_dir() == share
    assert pf.config_file("agent.yaml") == share / "config" / "agent.yaml"


def test_no_share_dir_names_the_fix(installed_only):
    with pytest.raises(FileNotFoundError, match="AMENT_PREFIX_PATH"):
        pf.shipped_checkpoint()


def test_local_transport_profile_is_set_unless_the_user_chose_one():
    import xml.etree.ElementTree as ET

    from steering_agent.ros.dds import LOCAL_PROFILE, local_transport_env

    env = local_transport_env({"PATH": "/bin", "ROS_DISTRO": "kilted"})
    profile = env["FASTDDS_DEFAULT_PROFILES_FILE"]
    assert (
        profile == str(pf.config_file(LOCAL_PROFILE))
        and "FASTRTPS_DEFAULT_PROFILES_FILE" not in env
    )
    ns = {"f": "http://www.eprosima.com"}
    root = ET.parse(profile).getroot()
    segment = root.find(".//f:transport_descriptor[f:type='SHM']/f:segment_size", ns)
    assert int(segment.text) >= 4 * 800 * 600 * 4  # room for a few 800x600 bgra8 frames
    assert root.find(".//f:transport_descriptor[f:type='TCPv4']", ns) is None
    humble = local_transport_env({"ROS_DISTRO": "humble"})
    assert humble["FASTRTPS_DEFAULT_PROFILES_FILE"] == profile
    for chosen in ({"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"},
                   {"FASTDDS_DEFAULT_PROFILES_FILE": "/etc/mine.xml"},
                   {"FASTRTPS_DEFAULT_PROFILES_FILE": "/etc/mine.xml"}):  # fmt: skip
        assert local_transport_env(dict(chosen)) == chosen
