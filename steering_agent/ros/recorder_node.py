"""The `recorder` node: record ROS topics, as serialized bytes, into rosbag2 MCAP bags.

`ros2 run steering_agent recorder --ros-args -p output:=runs/rec -p max_bag_size_mb:=500`

Each topic's type comes from the graph (retried until a publisher appears); messages
arrive raw (no deserialization) and go straight into the bag, stamped with the node's
clock (simulation time with `use_sim_time`). Bags are `<output>/bag_0000`, `bag_0001`,
... (a new one when `max_bag_size_mb` or `max_bag_duration_s` is reached). SIGINT or
SIGTERM closes the bag (index and metadata.yaml written). Every `flush_period_s` the
pending chunk is written out, so after `kill -9` at most that much is lost and
`steering_agent.data.bagio.recover_bag` makes the rest readable.

With 800x600 frames over Fast DDS's default transports, a few small samples beside the
2 MB frames were lost (measured); the project's one-host profile, config/fastdds_local.xml
(shared memory with an 8 MB segment + UDP; `FASTDDS_DEFAULT_PROFILES_FILE`, in every
process), delivers all of them (tests/test_recorder_node.py).
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path
from typing import Any

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from steering_agent.common.files import check_writable_dir
from steering_agent.data import bagio
from steering_agent.interfaces import topics
from steering_agent.ros.params import declare_all, floating, string
from steering_agent.ros.spin import run_node

DEFAULT_TOPICS = [
    topics.IMAGE,
    topics.CAMERA_INFO,
    topics.SPEEDOMETER,
    topics.CONTROL,
    topics.CLOCK,
    # sim_bridge's: the expert's label per frame (what `train` learns from), the
    # interventions of the evaluation, the lateral error and the metrics (docs/ros_data.md)
    topics.EXPERT_CONTROL,
    topics.INTERVENTION,
    topics.LATERAL_ERROR,
    topics.METRICS,
]


def message_class(msgtype: str) -> Any:
    """The rclpy message class of 'pkg/msg/Name' (ImportError if not installed)."""
    package, _, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.msg"), name)


PARAMETERS = {
    "topics": (DEFAULT_TOPICS, ParameterDescriptor(description="topics to record")),
    "output": ("", string("folder for the bags (default: recording_<time>)")),
    "max_bag_size_mb": (0.0, floating("split size, MB (0: none)", 0.0, 1e9)),
    "max_bag_duration_s": (0.0, floating("split after this many s (0: none)", 0.0, 1e9)),
    "flush_period_s": (1.0, floating("write the pending chunk this often (s)", 0.01, 3600.0)),
}


class RecorderNode(Node):
    """Subscribes raw to the `topics` parameter and writes every message to a bag."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("recorder", **kwargs)
        p = declare_all(self, PARAMETERS)
        self.topic_names = list(p["topics"])
        self.output = Path(p["output"] or time.strftime("recording_%Y%m%d_%H%M%S"))
        check_writable_dir(self.output, "parameter output:=")  # refuse now, not at message 1
        self.max_bytes = p["max_bag_size_mb"] * 1e6
        self.max_ns = p["max_bag_duration_s"] * 1e9
        flush_s = p["flush_period_s"]
        self.counts: dict[str, int] = dict.fromkeys(self.topic_names, 0)
        self.bags: list[Path] = []
        self._types: dict[str, str] = {}
        self._subs: dict[str, Any] = {}
        self._skipped: set[str] = set()
        self._writer: Any = None
        self._conns: dict[str, Any] = {}
        self._bag_bytes = 0
        self._bag_start_ns = 0
        self._discover_timer = self.create_timer(0.2, self._discover)
        self.create_timer(flush_s, self._flush)
        self._discover()

    def _qos(self, topic: str) -> QoSProfile:
        """Reliable unless some publisher is best-effort (a reliable reader would not match)."""
        infos = self.get_publishers_info_by_topic(topic)
        best_effort = any(i.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT for i in infos)
        latched = bool(infos) and all(
            i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for i in infos
        )
        reliability = ReliabilityPolicy.BEST_EFFORT if best_effort else ReliabilityPolicy.RELIABLE
        return QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=100,
            reliability=reliability,
            durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE,
        )

    def _discover(self) -> None:
        """Subscribe to every wanted topic that now has a publisher (and a known type)."""
        graph = dict(self.get_topic_names_and_types())
        for topic in self.topic_names:
            if topic in self._subs or topic in self._skipped or topic not in graph:
                continue
            msgtype = graph[topic][0]
            try:
                cls = message_class(msgtype)
                if msgtype not in bagio.typestore().fielddefs:
                    raise KeyError(msgtype)
            except (ImportError, AttributeError, KeyError, ValueError) as err:
                self.get_logger().error(f"not recording {topic}: type {msgtype} unknown ({err})")
                self._skipped.add(topic)
                continue
            self._types[topic] = msgtype
            self._subs[topic] = self.create_subscription(
                cls,
                topic,
                lambda raw, t=topic: self._on_message(t, raw),
                self._qos(topic),
                raw=True,
            )
            self.get_logger().info(f"recording {topic} ({msgtype})")
        if len(self._subs) + len(self._skipped) == len(self.topic_names):
            self._discover_timer.cancel()

    def _open_bag(self, now_ns: int) -> None:
        self.output.mkdir(parents=True, exist_ok=True)
        index = len(self.bags)
        while (self.output / f"bag_{index:04d}").exists():
            index += 1
        path = self.output / f"bag_{index:04d}"
        self._writer = bagio.open_writer(path)
        self._conns = {}
        self.bags.append(path)
        self._bag_bytes, self._bag_start_ns = 0, now_ns

    def _connection(self, topic: str) -> Any:
        conn = self._conns.get(topic)
        if conn is None:
            conn = self._writer.add_connection(
                topic, self._types[topic], typestore=bagio.typestore()
            )
            self._conns[topic] = conn
        return conn

    def _on_message(self, topic: str, raw: bytes) -> None:
        now_ns = self.get_clock().now().nanoseconds
        if self._writer is not None and (
            (self.max_bytes and self._bag_bytes >= self.max_bytes)
            or (self.max_ns and now_ns - self._bag_start_ns >= self.max_ns)
        ):
            self._close_bag()
        if self._writer is None:
            self._open_bag(now_ns)
        self._writer.write(self._connection(topic), now_ns, raw)
        self._bag_bytes += len(raw)
        self.counts[topic] += 1

    def _flush(self) -> None:
        """Write the chunk being filled to disk (rosbags keeps up to 1 MiB in memory)."""
        storage = getattr(self._writer, "storage", None)
        chunk = getattr(storage, "chunk", None)
        if chunk is None:
            return
        if chunk.bio.tell():
            storage.close_chunk()
        storage.bio.flush()

    def _close_bag(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    def close(self) -> None:
        """Finish the current bag and log what was recorded."""
        self._close_bag()
        summary = ", ".join(f"{t}: {n}" for t, n in self.counts.items())
        line = f"closed {len(self.bags)} bag(s) in {self.output} ({summary})"
        if self.context.ok():
            self.get_logger().info(line)
        else:  # after a signal the context is gone and /rosout with it
            print(f"[recorder] {line}", file=sys.stderr, flush=True)


def main(args: list[str] | None = None) -> int:
    """`ros2 run steering_agent recorder`: record until Ctrl-C or SIGTERM."""
    return run_node("recorder", RecorderNode, RecorderNode.close, args)


if __name__ == "__main__":
    sys.exit(main())
