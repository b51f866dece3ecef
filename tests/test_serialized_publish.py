"""RawPublisher (steering_agent.ros.serialized_publish): a frame published straight from
its ImageCdr buffer arrives in another participant as the same message rclpy
deserializes from that buffer (both participants live in this process; sim_bridge
publishes this way, so the closed-loop tests carry such frames between processes);
later changes to the buffer are published as they are; a destroyed publisher is
refused with an error, not a crash; without rcl's handle it falls back to
`publish(bytes)`."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rclpy")
rclpy_serialization = pytest.importorskip("rclpy.serialization")
Image = pytest.importorskip("sensor_msgs.msg").Image

from rclpy.exceptions import InvalidHandle  # noqa: E402

from steering_agent.ros.image_cdr import ImageCdr  # noqa: E402
from steering_agent.ros.serialized_publish import RawPublisher  # noqa: E402

from .ros_helpers import Probe  # noqa: E402

TOPIC = "/test_raw_publisher/image"


def _frame(h, w, seed, frame_id="ego_vehicle/rgb_front"):
    cdr = ImageCdr(h, w, "bgra8", 4, frame_id)
    cdr.pixels[:] = np.random.default_rng(seed).integers(0, 256, cdr.pixels.shape, np.uint8)
    return cdr


@pytest.mark.ros
def test_a_frame_published_from_its_buffer_arrives_as_that_message(ros_domain):
    sender, receiver = Probe("raw_sender"), Probe("raw_receiver")
    try:
        got = receiver.record(Image, TOPIC)
        pub = sender.node.create_publisher(Image, TOPIC, 10)
        cdr = _frame(600, 800, 1)
        raw = RawPublisher(pub, cdr.buffer)
        assert raw.direct  # this rclpy has the handle's pointer and rcl is loaded
        assert receiver.spin_until(lambda: pub.get_subscription_count() > 0, 20)
        for k, sec in enumerate((5, 6)):
            cdr.set_stamp(sec, 1000 + k)
            cdr.pixels[k, :, 2] = 7 + k  # the buffer as it is at each publish
            raw.publish()
            assert receiver.spin_until(lambda n=k: len(got) > n, 20), "frame not received"
            want = rclpy_serialization.deserialize_message(bytes(cdr.buffer), Image)
            msg = got[k]
            assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (sec, 1000 + k)
            assert msg.header.frame_id == want.header.frame_id == "ego_vehicle/rgb_front"
            assert (msg.height, msg.width, msg.encoding, msg.step) == (600, 800, "bgra8", 3200)
            pixels = np.frombuffer(bytes(msg.data), np.uint8).reshape(600, 800, 4)
            assert np.array_equal(pixels, cdr.pixels)
            assert bytes(msg.data) == bytes(want.data)
    finally:
        sender.close()
        receiver.close()


@pytest.mark.ros
def test_a_destroyed_publisher_is_refused_not_crashed(ros_domain):
    sender = Probe("raw_destroyed")
    try:
        pub = sender.node.create_publisher(Image, TOPIC, 10)
        raw = RawPublisher(pub, _frame(4, 6, 2).buffer)
        assert raw.direct
        raw.publish()
        sender.node.destroy_publisher(pub)
        with pytest.raises(InvalidHandle):  # raised before rcl is called
            raw.publish()
    finally:
        sender.close()


class _BytesOnly:
    """A stand-in publisher without rcl's handle (another rclpy): records what it gets."""

    def __init__(self) -> None:
        self.sent: list = []

    def publish(self, msg) -> None:
        self.sent.append(msg)


def test_without_rcls_handle_it_publishes_a_copy_as_bytes():
    cdr = _frame(3, 5, 3)
    pub = _BytesOnly()
    raw = RawPublisher(pub, cdr.buffer)
    assert not raw.direct
    cdr.set_stamp(9, 10)
    raw.publish()
    assert pub.sent == [bytes(cdr.buffer)] and isinstance(pub.sent[0], bytes)
    back = rclpy_serialization.deserialize_message(pub.sent[0], Image)
    assert (back.header.stamp.sec, back.header.stamp.nanosec, back.width) == (9, 10, 5)
