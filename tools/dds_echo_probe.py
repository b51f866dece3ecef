"""The cost of moving a camera frame through DDS alone, without the policy.

Starts a child process that subscribes to the camera topic raw (as the agent does),
reads the stamp and at once publishes a CarlaEgoVehicleControl with it; this process
publishes serialized bgra8 frames (as sim_bridge does) one at a time and times each
until its control comes back. Both processes log `time.perf_counter()` (CLOCK_MONOTONIC,
shared between processes), so the round trip splits into: publish (the call),
publish end -> callback entry, the callback, callback end -> control received.

    PYTHONPATH=. python tools/dds_echo_probe.py [--sizes 200x66 800x600] [--frames 200]
        [--no-heap-tuning] [--bytes] [--out FILE.json]

`--no-heap-tuning` leaves glibc's malloc as it is in both processes
(steering_agent/common/heap.py says what the tuning does).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _echo(log_path: str, count: int, tune: bool) -> None:
    from steering_agent.common.heap import retain_frame_buffers

    if tune:
        retain_frame_buffers()
    import rclpy
    from carla_msgs.msg import CarlaEgoVehicleControl
    from rclpy.node import Node
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import Image

    from steering_agent.interfaces import topics
    from steering_agent.ros.image_cdr import read_stamp

    rclpy.init()
    node = Node("dds_echo")
    pub = node.create_publisher(CarlaEgoVehicleControl, topics.CONTROL, QoSProfile(depth=10))
    msg = CarlaEgoVehicleControl()
    log: dict[int, tuple[float, float]] = {}

    def on_image(raw: bytes) -> None:
        t = time.perf_counter()
        sec, nanosec = read_stamp(raw)
        msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
        pub.publish(msg)
        log[sec * 1_000_000_000 + nanosec] = (t, time.perf_counter())
        if len(log) >= count:
            Path(log_path).write_text(json.dumps(log))
            os._exit(0)  # skip the DDS destructors (steering_agent.ros.dds)

    node.create_subscription(Image, topics.IMAGE, on_image, QoSProfile(depth=1), raw=True)
    rclpy.spin(node)


def _size(text: str) -> tuple[int, int]:
    w, _, h = text.partition("x")
    return int(w), int(h)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", type=_size, default=[(200, 66), (800, 600)])
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--no-heap-tuning", action="store_true")
    p.add_argument(
        "--bytes",
        action="store_true",
        help="publish through bytes(buffer) and rclpy, not from the buffer",
    )
    p.add_argument("--out", default=None)
    p.add_argument("--echo", nargs=2, help=argparse.SUPPRESS)  # the child: LOG COUNT
    a = p.parse_args()
    tune = not a.no_heap_tuning
    if a.echo:
        _echo(a.echo[0], int(a.echo[1]), tune)
        return 0

    from steering_agent.common.heap import retain_frame_buffers
    from steering_agent.ros.dds import use_local_transport

    use_local_transport()
    tuned = retain_frame_buffers() if tune else False
    import numpy as np
    import rclpy
    from carla_msgs.msg import CarlaEgoVehicleControl
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import QoSProfile
    from sensor_msgs.msg import Image

    from steering_agent.interfaces import topics
    from steering_agent.interfaces.stamps import ns_to_sec_nanosec, stamp_to_ns
    from steering_agent.ros.closed_loop import _camera_frames
    from steering_agent.ros.serialized_publish import RawPublisher

    per_size = a.warmup + a.frames
    log_path = Path(tempfile.mkdtemp(prefix="dds_echo_")) / "echo.json"
    cmd = [sys.executable, __file__, "--echo", str(log_path), str(per_size * len(a.sizes))]
    child = subprocess.Popen(cmd + (["--no-heap-tuning"] if not tune else []))
    rclpy.init()
    node = Node("dds_echo_probe")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    replies: dict[int, float] = {}
    node.create_subscription(
        CarlaEgoVehicleControl, topics.CONTROL,
        lambda m: replies.setdefault(stamp_to_ns(m.header.stamp), time.perf_counter()),
        QoSProfile(depth=10),
    )  # fmt: skip
    pub = node.create_publisher(Image, topics.IMAGE, QoSProfile(depth=1))
    deadline = time.monotonic() + 60
    while pub.get_subscription_count() == 0 or node.count_publishers(topics.CONTROL) == 0:
        if child.poll() is not None or time.monotonic() > deadline:
            print("the echo process did not come up", file=sys.stderr)
            return 1
        executor.spin_once(timeout_sec=0.1)
    sent: list[tuple[int, int, int, float, float, float]] = []
    k = 0
    for w, h in a.sizes:
        frames = _camera_frames(w, h)
        if not a.bytes:
            raws = [RawPublisher(pub, f.buffer) for f in frames]
        for i in range(per_size):
            k += 1
            ns = k * 50_000_000
            frame = frames[i % len(frames)]
            frame.set_stamp(*ns_to_sec_nanosec(ns))
            t0 = time.perf_counter()
            if a.bytes:
                pub.publish(frame.to_bytes())
            else:
                raws[i % len(frames)].publish()
            t1 = time.perf_counter()
            while ns not in replies and time.perf_counter() - t0 < 2.0:
                executor.spin_once(timeout_sec=2.0)
            if i >= a.warmup:
                sent.append((w, h, ns, t0, t1, replies.get(ns, float("nan"))))
    child.wait(timeout=30)
    echo = json.loads(log_path.read_text())
    command = "PYTHONPATH=. python tools/dds_echo_probe.py " + " ".join(sys.argv[1:])
    result = {
        "command": command.strip(),
        "heap_tuning": tuned,
        "publish": "bytes" if a.bytes else "from the buffer",
        "frames": a.frames,
        "sizes": [],
    }
    for w, h in a.sizes:
        rows = [(t0, t1, tr, *echo[str(ns)]) for sw, sh, ns, t0, t1, tr in sent
                if (sw, sh) == (w, h) and str(ns) in echo and tr == tr]  # fmt: skip
        med = lambda xs: round(statistics.median(xs) * 1e3, 3)  # noqa: E731
        entry = {
            "width": w, "height": h, "lost": a.frames - len(rows),
            "round_trip_ms": med([tr - t0 for t0, t1, tr, c0, c1 in rows]),
            "round_trip_p10_ms": round(float(np.percentile(
                [tr - t0 for t0, t1, tr, c0, c1 in rows], 10)) * 1e3, 3),
            "publish_ms": med([t1 - t0 for t0, t1, tr, c0, c1 in rows]),
            "publish_end_to_callback_ms": med([c0 - t1 for t0, t1, tr, c0, c1 in rows]),
            "callback_ms": med([c1 - c0 for t0, t1, tr, c0, c1 in rows]),
            "callback_end_to_control_ms": med([tr - c1 for t0, t1, tr, c0, c1 in rows]),
        }  # fmt: skip
        result["sizes"].append(entry)
        print(json.dumps(entry))
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=1) + "\n")
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
