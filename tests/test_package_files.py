"""Finding config/, launch/ and checkpoints/ outside a source checkout."""

from __future__ import annotations

import sys

import pytest

from steering_agent import package_files as pf


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
