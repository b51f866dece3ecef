"""rosbag2 (MCAP) helpers shared by the recorders and the dataset reader, no ROS needed.

- `typestore()`: the rosbags typestore (ROS 2 Humble definitions, which Jazzy and
  Kilted share for every type used here) with carla_msgs' CarlaEgoVehicleControl added.
- `open_writer(path)`: a rosbags Writer for a new MCAP bag (rosbag2 format 9).
- message builders for the CARLA bridge topics (steering_agent.interfaces.topics).
- `recover_bag(path)`: make a bag whose recorder was killed (no metadata.yaml, MCAP
  file without its summary/footer, maybe cut mid-record) readable again; `recover`
  says what it did, and `steering-agent recover BAG` is its command.
"""

from __future__ import annotations

import argparse
import functools
import struct
import sys
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from typing import Any

from steering_agent.common.files import write_text_atomic
from steering_agent.data.imageconv import camera_info_fields
from steering_agent.interfaces.carla_msgs_def import register_carla_types
from steering_agent.interfaces.stamps import ns_to_sec_nanosec

MCAP_MAGIC = b"\x89MCAP0\r\n"
_OP_HEADER, _OP_FOOTER, _OP_DATA_END = 0x01, 0x02, 0x0F


@functools.lru_cache(maxsize=1)
def typestore():
    """The shared rosbags typestore: ROS 2 Humble types plus CarlaEgoVehicleControl."""
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_HUMBLE)
    register_carla_types(store)
    return store


def open_writer(path: str | Path):
    """An opened rosbags Writer for a new MCAP bag directory `path` (must not exist)."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    writer = Writer(Path(path), version=9, storage_plugin=StoragePlugin.MCAP)
    writer.open()
    return writer


def mcap_files(bag: Path) -> list[Path]:
    """The .mcap files of a bag directory (or the file itself), sorted by name."""
    bag = Path(bag)
    return [bag] if bag.is_file() else sorted(bag.glob("*.mcap"))


def to_time(stamp_ns: int):
    """builtin_interfaces/Time for an integer time in nanoseconds."""
    sec, nanosec = ns_to_sec_nanosec(stamp_ns)
    return typestore().types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)


def header(stamp_ns: int, frame_id: str = ""):
    """std_msgs/Header."""
    return typestore().types["std_msgs/msg/Header"](stamp=to_time(stamp_ns), frame_id=frame_id)


def image_msg(stamp_ns: int, fields: dict, frame_id: str):
    """sensor_msgs/Image from imageconv.rgb_to_image_fields(...) output."""
    return typestore().types["sensor_msgs/msg/Image"](header=header(stamp_ns, frame_id), **fields)


def camera_info_msg(stamp_ns: int, info: dict, frame_id: str):
    """sensor_msgs/CameraInfo for a pinhole camera dict(width, height, fx, fy, cx, cy)."""
    types = typestore().types
    return types["sensor_msgs/msg/CameraInfo"](
        header=header(stamp_ns, frame_id),
        **camera_info_fields(info),
        binning_x=0,
        binning_y=0,
        roi=types["sensor_msgs/msg/RegionOfInterest"](
            x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
        ),
    )


def float32_msg(value: float):
    """std_msgs/Float32."""
    return typestore().types["std_msgs/msg/Float32"](data=float(value))


def clock_msg(stamp_ns: int):
    """rosgraph_msgs/Clock."""
    return typestore().types["rosgraph_msgs/msg/Clock"](clock=to_time(stamp_ns))


def control_msg(stamp_ns: int, action: Any, frame_id: str = ""):
    """carla_msgs/CarlaEgoVehicleControl from an action [steer, throttle, brake]."""
    steer, throttle, brake = (float(x) for x in action[:3])
    return typestore().types["carla_msgs/msg/CarlaEgoVehicleControl"](
        header=header(stamp_ns, frame_id),
        throttle=min(max(throttle, 0.0), 1.0),
        steer=min(max(steer, -1.0), 1.0),
        brake=min(max(brake, 0.0), 1.0),
        hand_brake=False,
        reverse=False,
        gear=1,
        manual_gear_shift=False,
    )


def _complete_records_end(f, size: int) -> int:
    """Offset after the last complete MCAP record before any footer/summary (seeks only)."""
    pos = len(MCAP_MAGIC)
    while pos + 9 <= size:
        f.seek(pos)
        op, length = struct.unpack("<BQ", f.read(9))
        if op in (0, _OP_FOOTER, _OP_DATA_END) or pos + 9 + length > size:
            break
        pos += 9 + length
    return pos


def _truncate_and_close_mcap(path: Path) -> int:
    """Cut `path` after its last complete record and append DataEnd + an empty Footer.

    A footer with summary offset 0 makes readers (rosbags too) scan the records instead
    of trusting an index, which the killed writer never wrote.
    """
    size = path.stat().st_size
    with path.open("r+b") as f:
        head = f.read(len(MCAP_MAGIC) + 1)
        if not head.startswith(MCAP_MAGIC) or len(head) <= len(MCAP_MAGIC):
            raise ValueError(f"{path}: not an MCAP file (bad magic or empty); nothing to recover")
        if head[-1] != _OP_HEADER:
            raise ValueError(f"{path}: MCAP file does not start with a header record")
        end = _complete_records_end(f, size)
        f.truncate(end)
        f.seek(end)
        f.write(struct.pack("<BQI", _OP_DATA_END, 4, 0))
        f.write(struct.pack("<BQQQI", _OP_FOOTER, 20, 0, 0, 0) + MCAP_MAGIC)
    return size - end


def _metadata_yaml(mcap: Path) -> str:
    """rosbag2 metadata.yaml text (format 9) for one readable MCAP file."""
    from rosbags.rosbag2 import Reader
    from ruamel.yaml import YAML

    store = typestore()
    with Reader(mcap) as reader:
        start = reader.start_time if reader.message_count else 0
        duration = max(0, reader.end_time - 1 - start) if reader.message_count else 0
        topics = []
        for conn in reader.connections:
            digest = store.hash_rihs01(conn.msgtype) if conn.msgtype in store.fielddefs else ""
            meta = {
                "name": conn.topic,
                "type": conn.msgtype,
                "serialization_format": "cdr",
                "offered_qos_profiles": [],
                "type_description_hash": digest,
            }
            topics.append({"topic_metadata": meta, "message_count": conn.msgcount})
        count = reader.message_count
    span = {
        "starting_time": {"nanoseconds_since_epoch": start},
        "duration": {"nanoseconds": duration},
    }
    info = {
        "version": 9,
        "storage_identifier": "mcap",
        "relative_file_paths": [mcap.name],
        **span,
        "message_count": count,
        "topics_with_message_count": topics,
        "compression_format": "",
        "compression_mode": "",
        "files": [{"path": mcap.name, **span, "message_count": count}],
        "custom_data": {"recovered": "true"},
        "ros_distro": "rosbags",
    }
    out = StringIO()
    yaml = YAML(typ="safe")
    yaml.default_flow_style = False
    yaml.dump({"rosbag2_bagfile_information": info}, out)
    return out.getvalue()


@dataclass
class Recovered:
    """What `recover` found and did.

    Attributes:
        mcap: the storage file.
        messages: messages the bag holds now; `topics`: per topic.
        repaired: the file lacked its footer and was cut and closed.
        dropped_bytes: bytes cut off its end (the record being written when it died).
        metadata_written: metadata.yaml was (re)built.
    """

    mcap: Path
    messages: int
    topics: dict[str, int] = field(default_factory=dict)
    repaired: bool = False
    dropped_bytes: int = 0
    metadata_written: bool = False

    def summary(self) -> str:
        """One line for the `recover` command."""
        if not self.repaired and not self.metadata_written:
            done = "complete already, left as it is"
        else:
            parts = []
            if self.repaired:
                parts.append(f"closed the MCAP file after its last complete record "
                             f"({self.dropped_bytes} bytes after it dropped)")  # fmt: skip
            if self.metadata_written:
                parts.append("wrote metadata.yaml")
            done = "recovered: " + " and ".join(parts)
        per_topic = ", ".join(f"{t} {n}" for t, n in sorted(self.topics.items()))
        return f"{self.mcap}: {done}; {self.messages} messages ({per_topic or 'no topics'})"


def recover(path: str | Path) -> Recovered:
    """Make an unfinished MCAP bag readable and say what was done (`recover_bag`).

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: `path` holds no .mcap file (or several), the file is not MCAP, or it
            cannot be read even after the repair.
    """
    from rosbags.rosbag2 import Reader

    bag = Path(path)
    if not bag.exists():
        raise FileNotFoundError(f"{bag} does not exist; pass a bag folder or its .mcap file")
    files = mcap_files(bag)
    if len(files) != 1:
        raise ValueError(
            f"{bag}: expected one .mcap file to recover, found {len(files)}; pass a bag "
            "folder (holding one .mcap file) or the .mcap file itself"
        )
    mcap = files[0]
    repaired, dropped = False, 0
    try:
        with Reader(mcap):
            pass
    except Exception:  # any failure to open means a missing or damaged footer/summary
        dropped = _truncate_and_close_mcap(mcap)
        repaired = True
    meta = bag / "metadata.yaml"
    written = bag.is_dir() and (repaired or not meta.exists())
    try:
        text = _metadata_yaml(mcap) if written else None
        with Reader(mcap) as reader:
            topics = {c.topic: int(c.msgcount) for c in reader.connections}
            count = int(reader.message_count)
    except Exception as e:  # rosbags' ReaderError and friends: the records themselves
        raise ValueError(
            f"{mcap}: still unreadable after closing it ({type(e).__name__}: {e}); "
            "its records are damaged, not just unfinished"
        ) from None
    if text is not None:
        write_text_atomic(meta, text)
    return Recovered(mcap, count, topics, repaired, dropped, written)


def recover_bag(path: str | Path) -> int:
    """Make an unfinished MCAP bag readable; return how many messages it now holds.

    For a recorder killed with `kill -9`: its .mcap lacks the summary and footer and may
    end mid-record, and metadata.yaml is missing. The file is cut after its last
    complete record (everything in completed chunks survives; the chunk being filled
    when the process died is lost), closed with a footer, and metadata.yaml is
    rebuilt from a scan of the records. A complete bag is left as it is.

    Raises:
        FileNotFoundError: `path` does not exist.
        ValueError: `path` holds no .mcap file, or the file is not MCAP.
    """
    return recover(path).messages


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `steering-agent recover`."""
    parser.add_argument(
        "bags", nargs="+", metavar="BAG", help="bag folder (or .mcap file) of a killed recorder"
    )


def run(args: argparse.Namespace) -> int:
    """`steering-agent recover BAG...`: repair each bag, one line per bag on what it did;
    a bag that cannot be recovered is one line on stderr (exit 2), the others go on."""
    failed = 0
    for bag in args.bags:
        try:
            print(recover(bag).summary())
        except (FileNotFoundError, ValueError) as e:
            failed += 1
            print(f"steering-agent recover: {e}", file=sys.stderr)
    return 2 if failed else 0
