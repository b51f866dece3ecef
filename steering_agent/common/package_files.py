"""Where the package's data files (config/, launch/, checkpoints/) are.

Run from a source checkout (package.xml next to this package), they are the checkout's
own files, so edits take effect without reinstalling; installed (colcon or `pip
install .`), they are in the package's share directory, found with ament_index_python.
"""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE = "steering_agent"
_CHECKOUT = Path(__file__).resolve().parents[2]


def share_dir() -> Path:
    """The directory holding config/, launch/ and checkpoints/.

    Raises:
        FileNotFoundError: neither a source checkout nor an installed share directory
            (AMENT_PREFIX_PATH must include the install prefix) was found.
    """
    if (_CHECKOUT / "package.xml").is_file() and (_CHECKOUT / "config").is_dir():
        return _CHECKOUT
    try:
        from ament_index_python.packages import (
            PackageNotFoundError,
            get_package_share_directory,
        )
    except ImportError as e:
        problem = f"ament_index_python is not importable ({e})"
    else:
        try:
            return Path(get_package_share_directory(PACKAGE))
        # OSError: AMENT_PREFIX_PATH is not set at all.
        except (PackageNotFoundError, KeyError, ValueError, OSError) as e:
            problem = str(e)
    # `pip install .` puts the data files under the environment's prefix.
    prefixed = Path(sys.prefix) / "share" / PACKAGE
    if (prefixed / "package.xml").is_file():
        return prefixed
    raise FileNotFoundError(
        f"{PACKAGE}: share directory not found ({problem}); set AMENT_PREFIX_PATH to the "
        "install prefix (e.g. the venv), source a ROS 2 install, or run from the repository"
    )


def config_file(name: str) -> Path:
    """`config/<name>` (e.g. `agent.yaml`) of the package."""
    return share_dir() / "config" / name


def launch_file(name: str) -> Path:
    """`launch/<name>` (e.g. `sim.launch.py`) of the package."""
    return share_dir() / "launch" / name


def shipped_checkpoint() -> Path:
    """The shipped trained weights, `checkpoints/cnn_lstm.pt` (may not exist yet)."""
    return share_dir() / "checkpoints" / "cnn_lstm.pt"
