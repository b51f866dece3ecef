"""An episode folder: one rosbag2 (MCAP) bag per episode, written by `EpisodeBagWriter`
with what the CARLA ROS bridge would publish, and `index.json` listing the episodes."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from steering_agent.common.cli_args import UsageError
from steering_agent.common.files import write_text_atomic
from steering_agent.data import bagio
from steering_agent.data.imageconv import rgb_to_image_fields
from steering_agent.interfaces import topics

FRAME_ID = f"{topics.ROLE}/rgb_front"
INDEX_FILE = "index.json"


class EpisodeBagWriter:
    """Write one episode as a rosbag2 MCAP bag; use as a context manager.

    Args:
        path: the bag directory to create (must not exist).
        width, height: the camera image size (every frame must have it).
        camera_info: pinhole dict(width, height, fx, fy, cx, cy), e.g.
            `env.unwrapped.camera_info()`.
        image_encoding: encoding of the image topic (CARLA publishes bgra8).
    """

    def __init__(
        self,
        path: str | Path,
        width: int,
        height: int,
        camera_info: dict,
        image_encoding: str = "bgra8",
    ) -> None:
        self.path = Path(path)
        self.width, self.height = int(width), int(height)
        self.camera_info = dict(camera_info)
        self.image_encoding = image_encoding
        self.frames = 0
        self._writer: Any = None
        self._conns: dict[str, Any] = {}

    def __enter__(self) -> EpisodeBagWriter:
        store = bagio.typestore()
        self._writer = bagio.open_writer(self.path)
        for topic, msgtype in (
            (topics.CLOCK, "rosgraph_msgs/msg/Clock"),
            (topics.IMAGE, "sensor_msgs/msg/Image"),
            (topics.CAMERA_INFO, "sensor_msgs/msg/CameraInfo"),
            (topics.SPEEDOMETER, "std_msgs/msg/Float32"),
            (topics.CONTROL, topics.CONTROL_TYPE),
            (topics.EXPERT_CONTROL, topics.CONTROL_TYPE),
        ):
            self._conns[topic] = self._writer.add_connection(topic, msgtype, typestore=store)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def close(self) -> None:
        """Finish the bag (index, metadata.yaml); safe to call twice."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()

    def write_step(
        self,
        stamp_s: float,
        image_rgb: np.ndarray,
        speed_mps: float,
        executed_action: Any,
        expert_action: Any,
    ) -> None:
        """Write one frame: clock, image, camera_info, speed, executed and expert control.

        Raises:
            ValueError: the image is not uint8 HxWx3 of the size given at construction.
        """
        if self._writer is None:
            raise RuntimeError("EpisodeBagWriter.write_step outside its `with` block")
        if image_rgb.shape != (self.height, self.width, 3):
            raise ValueError(
                f"frame {self.frames}: image shape {image_rgb.shape} differs from the "
                f"bag's {(self.height, self.width, 3)}"
            )
        stamp_ns = round(stamp_s * 1e9)
        fields = rgb_to_image_fields(image_rgb, self.image_encoding)
        for topic, msg in (
            (topics.CLOCK, bagio.clock_msg(stamp_ns)),
            (topics.IMAGE, bagio.image_msg(stamp_ns, fields, FRAME_ID)),
            (topics.CAMERA_INFO, bagio.camera_info_msg(stamp_ns, self.camera_info, FRAME_ID)),
            (topics.SPEEDOMETER, bagio.float32_msg(speed_mps)),
            (topics.CONTROL, bagio.control_msg(stamp_ns, executed_action)),
            (topics.EXPERT_CONTROL, bagio.control_msg(stamp_ns, expert_action)),
        ):
            conn = self._conns[topic]
            data = bagio.typestore().serialize_cdr(msg, conn.msgtype)
            self._writer.write(conn, stamp_ns, data)
        self.frames += 1


_BAG_NAME = re.compile(r"^\w+?_\d{4}_seed(\d+)$")


def read_episode_index(out: Path) -> list[dict]:
    """The episodes folder `out` holds: the entries of its index.json (each with its
    camera size and noise, taken from the index's top level where an older index kept
    them only there), plus any episode bag in `out` the index does not list (an index
    overwritten by an older version, or a recording cut short), as {bag, seed}.

    Raises:
        UsageError: index.json exists but is not a readable index (it is left as it is).
    """
    out = Path(out)
    entries: list[dict] = []
    index_path = out / INDEX_FILE
    if index_path.is_file():
        try:
            index = json.loads(index_path.read_text("utf8"))
            listed = index["episodes"]
            if not isinstance(listed, list) or not all(isinstance(e, dict) for e in listed):
                raise TypeError("'episodes' is not a list of episodes")
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise UsageError(
                f"--out {out}: its {INDEX_FILE} is not a readable episode index ({e}); "
                f"move it away or pick another --out (nothing was recorded)"
            ) from None
        shared = {k: index[k] for k in ("width", "height", "noise_sigma") if k in index}
        entries = [{**shared, **e} for e in listed]
    listed_bags = {e.get("bag") for e in entries}
    if out.is_dir():
        for path in sorted(out.iterdir()):
            match = _BAG_NAME.match(path.name)
            if match and path.is_dir() and path.name not in listed_bags:
                entries.append({"bag": path.name, "seed": int(match.group(1))})
    return entries


LOCK_FILE = ".index.lock"


@contextlib.contextmanager
def _index_lock(out: Path) -> Iterator[None]:
    """An exclusive lock on DIR's index (a `flock` on DIR/.index.lock) for a read-merge-
    write; where `fcntl` is missing (Windows) the merge runs unlocked."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not on Linux or macOS
        yield
        return
    with open(Path(out) / LOCK_FILE, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def add_to_episode_index(out: Path, entries: list[dict]) -> None:
    """Put `entries` (this recording's episodes so far, in its order) into DIR/index.json:
    under the index lock, what the index holds now (episodes other recordings added
    meanwhile, also into the same DIR) stays, an entry of the same bag is replaced, and
    `entries` come after the others. So recordings running side by side lose nothing."""
    with _index_lock(out):
        mine = {e.get("bag") for e in entries}
        others = [e for e in read_episode_index(out) if e.get("bag") not in mine]
        write_episode_index(out, [*others, *entries])


def write_episode_index(out: Path, entries: list[dict]) -> None:
    """DIR/index.json listing `entries` (one per bag). The top-level width, height and
    noise_sigma are those every episode shares (None where they differ: see each one)."""
    index: dict[str, Any] = {}
    for key in ("width", "height", "noise_sigma"):
        values = {e.get(key) for e in entries}
        index[key] = values.pop() if len(values) == 1 else None
    index["episodes"] = entries
    write_text_atomic(out / INDEX_FILE, json.dumps(index, indent=2) + "\n")
