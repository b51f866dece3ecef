"""Small file helpers shared by the recorders and the simulator bridge."""

from __future__ import annotations

import os
import threading
from pathlib import Path


def write_text_atomic(path: Path, text: str) -> None:
    """Replace `path` by `text` (UTF-8) so that a reader sees the old or the new file,
    never half of one: written next to it, then renamed over it. The temporary name is
    the writer's own (process and thread), so writers side by side never share one."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_text(text, "utf8")
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def check_writable_dir(path: str | Path, what: str) -> Path:
    """Make sure folder `path` can be created (or exists) and written into, before any
    work is done; `what` names the option or parameter for the message.

    Raises:
        ValueError: one line naming `what`, the path and the problem.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{what} {path} is a file, not a directory; pass a folder")
    probe_dir = path
    while not probe_dir.exists():  # the nearest folder that exists must take a new entry
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise ValueError(f"{what} {path}: {probe_dir} is a file, not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write_test_{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ValueError(
            f"{what} {path} is not writable ({e.strerror or e}); pass a folder you can write"
        ) from None
    return path


def check_writable_file(path: str | Path, what: str) -> Path:
    """Make sure file `path` can be written (its folder created), before any work."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {path} is a directory, not a file; pass a file name")
    check_writable_dir(path.parent if str(path.parent) else Path("."), what)
    return path
