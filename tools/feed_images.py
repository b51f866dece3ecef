"""Publish synthetic camera frames like the CARLA bridge does, for recorder soak tests.

    python tools/feed_images.py --rate 30 --duration 60 --width 800 --height 600

Publishes sensor_msgs/Image (bgra8), std_msgs/Float32 speed and rosgraph_msgs/Clock at
`--rate` Hz, after waiting for `--wait-subscribers` subscribers on each topic, waits
for them to acknowledge every message, and prints a JSON line with the counts it
published and whether all were acknowledged.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from steering_agent.ros.dds import exit_without_destructors

_KEPT: list = []  # ROS objects held until os._exit (see the end of main)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=30.0, help="frames per second")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds to publish")
    parser.add_argument("--width", type=int, default=800)
    parser.add_argument("--height", type=int, default=600)
    parser.add_argument(
        "--wait-subscribers",
        type=int,
        default=1,
        help="wait (up to 20 s) for this many subscribers on each topic",
    )
    parser.add_argument(
        "--linger",
        type=float,
        default=1.0,
        help="seconds to stay up after every subscriber acknowledged the last message",
    )
    parser.add_argument(
        "--ack-timeout",
        type=float,
        default=20.0,
        help="wait at most this long (s) for subscribers to acknowledge every message",
    )
    args = parser.parse_args(argv)

    import numpy as np
    import rclpy
    from rclpy.duration import Duration
    from rclpy.qos import QoSProfile
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import Image
    from std_msgs.msg import Float32

    from steering_agent.data.imageconv import fill_image_msg
    from steering_agent.interfaces import topics

    rclpy.init()
    node = rclpy.create_node("feed_images")
    qos = QoSProfile(depth=100)
    pubs = {
        "image": node.create_publisher(Image, topics.IMAGE, qos),
        "speed": node.create_publisher(Float32, topics.SPEEDOMETER, qos),
        "clock": node.create_publisher(Clock, topics.CLOCK, qos),
    }
    # No destroy_node()/shutdown(), and the node and publishers outlive main(): Fast DDS
    # 3.2 can hang deleting a LARGE_DATA (TCP) participant or its writers (also when the
    # last reference goes away; seen here); the process ends with os._exit instead.
    _KEPT.extend([node, pubs])
    rgb = np.random.default_rng(0).integers(0, 256, (args.height, args.width, 3), np.uint8)
    image = fill_image_msg(Image(), rgb, "bgra8")
    image.header.frame_id = f"{topics.ROLE}/rgb_front"
    deadline = time.monotonic() + 20.0
    while min(p.get_subscription_count() for p in pubs.values()) < args.wait_subscribers:
        if time.monotonic() > deadline:
            print("feed_images: subscribers did not appear within 20 s", file=sys.stderr)
            return 1
        time.sleep(0.05)
    time.sleep(0.3)  # matched on our side; give the subscriber's side a moment as well
    counts = dict.fromkeys(pubs, 0)
    period = 1.0 / args.rate
    frames = round(args.duration * args.rate)
    start = time.monotonic()
    for i in range(frames):
        time.sleep(max(0.0, start + i * period - time.monotonic()))
        stamp = node.get_clock().now().to_msg()
        image.header.stamp = stamp
        pubs["clock"].publish(Clock(clock=stamp))
        pubs["image"].publish(image)
        pubs["speed"].publish(Float32(data=float(i % 20)))
        for key in counts:
            counts[key] += 1
    seconds = round(time.monotonic() - start, 2)
    # Reliable delivery: a sample lost on the way is repaired only after the writer's next
    # heartbeat (seconds apart), so wait until every subscriber has acknowledged all.
    timeout = Duration(seconds=args.ack_timeout)
    acked = {key: pub.wait_for_all_acked(timeout) for key, pub in pubs.items()}
    time.sleep(args.linger)
    print(json.dumps({"published": counts, "acked": acked, "seconds": seconds}))
    return 0


if __name__ == "__main__":
    exit_without_destructors(main())
