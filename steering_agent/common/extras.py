"""The optional dependencies (setup.py's extras) and the one-line error for a missing one.

`pip install steering_agent` alone drives, evaluates, records and trains. What an extra
adds, and what happens without it, is the same in every verb:

- plots (matplotlib): the PNG plots of `drive` and `eval --report`; where it is missing
  they are skipped with one line saying so, and everything else is still written.
- tensorboard: `train --logdir`; asked for without it, `train` stops before any work.
- onnx (onnx, onnxruntime): `export-onnx` and the onnxruntime per-frame backend; asked
  for without them, the command stops before any work (backend "auto" uses PyTorch).
- video (imageio-ffmpeg): the H.264 MP4 of `drive` and `eval --report`; without it the
  video is VP8 WebM through OpenCV (slower to write; steering_agent/evaluation/video.py).
- carla: the CARLA backend (`SteeringAgent/CarlaDrive-v0`).
- ray: `eval` and `record` with `--workers N` > 1 or `--ray-address` (a Ray fan-out,
  docs/scale.md); asked for without it, the command stops before any work (the serial
  default never imports ray).
- live (foxglove-sdk): `drive --live` and `closed-loop --live`, the Foxglove live view
  (docs/live_view.md); asked for without it, the command stops before any work.

rclpy and the ROS message packages are no extra: they come from a ROS 2 install (or
the ROS 2 wheels, `make setup`), declared in package.xml.
"""

from __future__ import annotations

import importlib.util

# extra -> the modules it provides (the distributions are in setup.py's extras_require)
EXTRAS: dict[str, tuple[str, ...]] = {
    "plots": ("matplotlib",),
    "tensorboard": ("tensorboard",),
    "onnx": ("onnx", "onnxruntime"),
    "carla": ("carla",),
    "ray": ("ray",),
    "video": ("imageio_ffmpeg",),
    "live": ("foxglove",),
}


class MissingExtra(ImportError):
    """A feature was asked for whose optional dependency is not installed."""

    def __init__(self, feature: str, extra: str, missing: list[str]) -> None:
        self.feature, self.extra, self.missing = feature, extra, missing
        super().__init__(
            f"{feature} needs {' and '.join(missing)}, not installed here: "
            f'pip install "steering_agent[{extra}]"'
        )


def missing_modules(extra: str) -> list[str]:
    """The modules of `extra` that cannot be found (found = installed; nothing is imported)."""
    return [m for m in EXTRAS[extra] if importlib.util.find_spec(m) is None]


def require(extra: str, feature: str, modules: tuple[str, ...] | None = None) -> None:
    """Raise `MissingExtra` unless the modules of `extra` (or just `modules`) are installed."""
    wanted = EXTRAS[extra] if modules is None else modules
    missing = [m for m in wanted if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingExtra(feature, extra, missing)


def skipped_notice(extra: str, what: str) -> str | None:
    """One line saying `what` is skipped for want of `extra`, or None where it is installed."""
    missing = missing_modules(extra)
    if not missing:
        return None
    return (
        f"{what} skipped: {' and '.join(missing)} not installed "
        f'(pip install "steering_agent[{extra}]")'
    )
