"""What every `steering-agent` verb checks in its command line, in one place.

- argparse `type=` functions for numbers (`positive_int`, `positive_float`, `nonneg_int`,
  `nonneg_float`, `finite_float`, `fraction`, `route_length`, `camera_px`, `bounded`)
  and for `--device` (`device`): a bad value stops the parser with one line naming the
  option, before any work is done.
- `UsageError`: a mistake in the command line found later (an output that cannot be
  written, a checkpoint that cannot be read); `steering_agent.cli` prints it as one
  line and exits with 2, as it does for the other user-facing errors (`user_errors`).
- `writable_dir`, `writable_file`: the checks of output paths that each verb runs
  before any work (checkpoints are checked by loading them: `load_checkpoint(path,
  option=...)`).

The limits of `route_length` and `camera_px` are those of the embedded simulator
(`sim.env.DriveEnv`, `sim.camera.IpmCamera`); a test keeps the two in agreement.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROUTE_LENGTH_M = (10.0, 100_000.0)  # sim.env.DriveEnv's route_length_m
CAMERA_PX = (16, 4096)  # sim.camera.IpmCamera's width and height
DEVICES = "auto, cpu, cuda or cuda:N"


class UsageError(ValueError):
    """A mistake in the command line (the message names the option and the fix)."""


def user_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that are the user's doing, not a bug: `steering_agent.cli` prints
    them as one line and exits with 2; everything else keeps its traceback.

    Classes of modules that are not loaded cannot have been raised, so they are only
    looked up in `sys.modules` (nothing is imported here).
    """
    found: list[type[BaseException]] = [
        UsageError,
        FileNotFoundError,
        IsADirectoryError,
        NotADirectoryError,
        PermissionError,
    ]
    for module, name in (
        ("steering_agent.policy.checkpoint", "CheckpointError"),
        ("steering_agent.common.extras", "MissingExtra"),
        ("sim.carla_session", "CarlaConnectionError"),
        ("sim.carla_session", "CarlaSensorTimeoutError"),
        ("sim.carla_backend", "CarlaConnectionError"),  # where older code defined them
        ("sim.carla_backend", "CarlaSensorTimeoutError"),
    ):
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            found.append(cls)
    return tuple(found)


def one_line(err: BaseException) -> str:
    """An exception's message on one line (OSErrors as 'strerror: filename')."""
    if isinstance(err, OSError) and err.strerror and err.filename is not None:
        text = f"{err.filename}: {err.strerror}"
        if err.filename2 is not None:
            text = f"{err.filename} -> {err.filename2}: {err.strerror}"
    else:
        text = str(err) or type(err).__name__
    return " ".join(text.split())


# -- numbers -------------------------------------------------------------------------


def _number(text: str, kind: type) -> float | int:
    """`text` as an int or a finite float; ArgumentTypeError naming what was expected."""
    word = "a whole number" if kind is int else "a number"
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {word}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def bounded(
    kind: type = float,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    unit: str = "",
) -> Callable[[str], float | int]:
    """An argparse type: a finite `kind` within [low, high] (open ends where asked)."""

    def parse(text: str) -> float | int:
        value = _number(text, kind)
        too_low = low is not None and (value <= low if low_open else value < low)
        too_high = high is not None and (value >= high if high_open else value > high)
        if too_low or too_high:
            raise argparse.ArgumentTypeError(f"must be {_range_text()}, got {text!r}")
        return value

    def _range_text() -> str:
        word = "a whole number" if kind is int else "a number"
        u = f" {unit}" if unit else ""
        if low is not None and high is not None:
            lo = "(" if low_open else "["
            hi = ")" if high_open else "]"
            return f"{word} in {lo}{low:g}, {high:g}{hi}{u}"
        if low is not None:
            return f"{word} {'>' if low_open else '>='} {low:g}{u}"
        if high is not None:
            return f"{word} {'<' if high_open else '<='} {high:g}{u}"
        return f"{word}{u}"

    parse.__name__ = f"{kind.__name__}_in_range"
    return parse


def range_options(group, limits: dict[str, tuple[float, float, str]]) -> None:
    """One float option per key of `limits` ({keyword: (low, high, unit)}, as
    `sim.limits`): `--camera-height-m` for `camera_height_m`, default None (not given),
    checked against its range, the unit as its help."""
    for key, (low, high, unit) in limits.items():
        group.add_argument(
            "--" + key.replace("_", "-"), dest=key, type=bounded(float, low, high),
            default=None, help=unit,
        )  # fmt: skip


def finite_float(text: str) -> float:
    """Any finite number (no nan, no inf)."""
    return _number(text, float)


def positive_float(text: str) -> float:
    """A finite number > 0."""
    return bounded(float, 0.0, low_open=True)(text)


def nonneg_float(text: str) -> float:
    """A finite number >= 0."""
    return bounded(float, 0.0)(text)


def positive_int(text: str) -> int:
    """A whole number >= 1."""
    return bounded(int, 1)(text)


def nonneg_int(text: str) -> int:
    """A whole number >= 0."""
    return bounded(int, 0)(text)


def fraction(text: str) -> float:
    """A share in [0, 1)."""
    return bounded(float, 0.0, 1.0, high_open=True)(text)


def route_length(text: str) -> float:
    """Route length in metres, within the simulator's limits."""
    return bounded(float, *ROUTE_LENGTH_M, unit="m")(text)


def camera_px(text: str) -> int:
    """Camera width or height in pixels, within the simulator's limits."""
    return bounded(int, *CAMERA_PX, unit="pixels")(text)


# -- devices -------------------------------------------------------------------------


def device(text: str) -> str:
    """A torch device for the network: auto, cpu, cuda or cuda:N (checked to exist).

    Imports torch only for a CUDA device (to ask whether there is one).
    """
    text = text.strip()
    if text in ("auto", "cpu"):
        return text
    m = re.fullmatch(r"cuda(?::(\d+))?", text)
    if m is None:
        raise argparse.ArgumentTypeError(f"unknown device {text!r}; use {DEVICES}")
    import torch

    if not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(
            f"{text!r}: no CUDA device here (torch {torch.__version__} finds none); "
            "use --device cpu, or --device auto (CUDA where present)"
        )
    count = torch.cuda.device_count()
    if m.group(1) is not None and int(m.group(1)) >= count:
        raise argparse.ArgumentTypeError(
            f"{text!r}: this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}; "
            "pick one of those, or use --device cuda"
        )
    return text


# -- paths ---------------------------------------------------------------------------


def _nearest_existing(path: Path) -> Path:
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe


def _check_can_create_in(folder: Path, option: str, path: Path) -> None:
    """A file can be made in the existing folder `folder` (a probe, removed at once)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".steering_agent_probe_", dir=folder)
    except OSError as e:
        raise UsageError(
            f"{option} {path} cannot be written ({e.strerror or e} in {folder}); "
            "pass a path you can write to"
        ) from None
    os.close(fd)
    os.unlink(probe)


def writable_dir(path: str | Path, option: str) -> Path:
    """Folder `path` exists or can be created, and takes new files (`option` names it).

    Nothing is left behind: a folder that does not exist yet is not created here (its
    nearest existing parent is probed instead).

    Raises:
        UsageError: one line naming `option`, the path, the problem and the fix.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path} is a file, not a folder; pass a folder")
    base = _nearest_existing(path)
    if not base.is_dir():
        raise UsageError(
            f"{option} {path}: {base} is a file, not a folder; pass a path inside a folder"
        )
    _check_can_create_in(base, option, path)
    return path


def writable_file(path: str | Path, option: str) -> Path:
    """File `path` can be written: not a directory, and its folder exists or can be
    created and takes files (nothing is created here)."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{option} {path} is a directory, not a file; pass a file name")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise UsageError(f"{option} {path} is not writable; pass a file you can write")
        return path
    base = _nearest_existing(path.parent)
    if not base.is_dir():
        raise UsageError(
            f"{option} {path}: {base} is a file, not a folder; pass a path inside a folder"
        )
    _check_can_create_in(base, option, path)
    return path
