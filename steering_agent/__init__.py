"""steering_agent: a CNN+LSTM driving agent that steers from a front camera.

Importing this package loads neither rclpy nor torch; the modules that need them do.
`__version__` is package.xml's `<version>` (the one place it is written), looked up on
first use.
"""

from __future__ import annotations


def _version() -> str:
    """package.xml's version: the checkout's own file when run from a source tree, else
    the installed distribution's metadata (pip and colcon write it from setup.py, which
    reads package.xml)."""
    from pathlib import Path

    pkg_xml = Path(__file__).resolve().parents[1] / "package.xml"
    if pkg_xml.is_file():
        import xml.etree.ElementTree as ET

        root = ET.parse(pkg_xml).getroot()
        if root.findtext("name") == __name__ and root.findtext("version"):
            return root.findtext("version").strip()
    from importlib import metadata

    try:
        return metadata.version(__name__)
    except metadata.PackageNotFoundError:
        return "0+unknown"


def __getattr__(name: str):
    if name == "__version__":
        global __version__
        __version__ = _version()
        return __version__
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
