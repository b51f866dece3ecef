"""Small file helpers shared by the recorders and the simulator bridge."""

from __future__ import annotations

from pathlib import Path


def write_text_atomic(path: Path, text: str) -> None:
    """Replace `path` by `text` (UTF-8) so that a reader sees the old or the new file,
    never half of one: written next to it, then renamed over it."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, "utf8")
    tmp.replace(path)
