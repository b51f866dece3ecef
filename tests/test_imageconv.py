"""Image <-> numpy conversion: every encoding, padded rows, every data container, bad input."""

from __future__ import annotations

import array
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from steering_agent.data import bagio
from steering_agent.data.imageconv import (
    ENCODINGS,
    ImageDecodeError,
    compressed_to_rgb,
    fill_image_msg,
    image_to_rgb,
    rgb_to_compressed_fields,
    rgb_to_image_fields,
)

GRAY = {"mono8", "8UC1"}


@pytest.fixture(scope="module")
def rgb():
    return np.random.default_rng(1).integers(0, 256, (13, 17, 3), dtype=np.uint8)


def _msg(fields, container=np.asarray):
    return SimpleNamespace(**{**fields, "data": container(fields["data"])})


def _expected(rgb, encoding):
    if encoding in GRAY:
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        return np.repeat(gray[:, :, None], 3, axis=2)
    return rgb


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("padding", [0, 7])
def test_round_trip_every_encoding(rgb, encoding, padding):
    fields = rgb_to_image_fields(rgb, encoding, row_padding=padding)
    channels = {"mono8": 1, "8UC1": 1, "bgra8": 4, "rgba8": 4, "8UC4": 4}.get(encoding, 3)
    assert fields["step"] == 17 * channels + padding
    assert fields["data"].size == 13 * fields["step"]
    np.testing.assert_array_equal(image_to_rgb(_msg(fields)), _expected(rgb, encoding))


@pytest.mark.parametrize(
    "container",
    [bytes, bytearray, memoryview, lambda b: array.array("B", b), np.asarray],
    ids=["bytes", "bytearray", "memoryview", "array", "numpy"],
)
def test_data_containers(rgb, container):
    fields = rgb_to_image_fields(rgb, "bgra8", row_padding=3)
    msg = _msg(fields, lambda d: container(d.tobytes()) if container is not np.asarray else d)
    np.testing.assert_array_equal(image_to_rgb(msg), rgb)


def test_channel_order_is_interpreted(rgb):
    """A pure-red pixel must come out red whatever the wire order."""
    red = np.zeros((2, 2, 3), np.uint8)
    red[..., 0] = 255
    bgra = rgb_to_image_fields(red, "bgra8")["data"].reshape(2, 2, 4)
    np.testing.assert_array_equal(bgra[0, 0], [0, 0, 255, 255])
    np.testing.assert_array_equal(image_to_rgb(_msg(rgb_to_image_fields(red, "bgr8"))), red)


def test_last_row_padding_may_be_omitted(rgb):
    fields = rgb_to_image_fields(rgb, "bgr8", row_padding=5)
    fields["data"] = fields["data"][:-5]
    np.testing.assert_array_equal(image_to_rgb(_msg(fields)), rgb)


def test_decode_into_preallocated_slot(rgb):
    out = np.zeros((2, 13, 17, 3), np.uint8)
    result = image_to_rgb(_msg(rgb_to_image_fields(rgb, "bgra8")), out=out[1])
    assert np.shares_memory(result, out)
    np.testing.assert_array_equal(out[1], rgb)
    with pytest.raises(ImageDecodeError, match="does not fit"):
        image_to_rgb(_msg(rgb_to_image_fields(rgb, "bgra8")), out=np.zeros((5, 5, 3), np.uint8))


def test_rosbags_message_through_cdr(rgb):
    store = bagio.typestore()
    msg = bagio.image_msg(123, rgb_to_image_fields(rgb, "bgra8", row_padding=4), "cam")
    back = store.deserialize_cdr(store.serialize_cdr(msg, msg.__msgtype__), msg.__msgtype__)
    np.testing.assert_array_equal(image_to_rgb(back), rgb)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"encoding": "yuv422"}, r"unknown image encoding 'yuv422'; supported: bgra8"),
        ({"height": 0}, "empty frame"),
        ({"width": 0}, "empty frame"),
        ({"step": 10}, r"step 10 < width\*channels"),
        ({"is_bigendian": 2}, "is_bigendian"),
        ({"height": 14}, "data size .* does not match height\\*step"),
        ({"data": np.zeros(5, np.uint8)}, "data size 5"),
    ],
)
def test_bad_inputs_name_the_problem(rgb, change, match):
    msg = _msg(rgb_to_image_fields(rgb, "bgra8"))
    for key, value in change.items():
        setattr(msg, key, value)
    with pytest.raises(ImageDecodeError, match=match):
        image_to_rgb(msg)


def test_is_bigendian_true_accepted_for_8bit(rgb):
    msg = _msg(rgb_to_image_fields(rgb, "rgb8"))
    msg.is_bigendian = True
    np.testing.assert_array_equal(image_to_rgb(msg), rgb)


def test_encode_rejects_bad_arrays(rgb):
    with pytest.raises(ImageDecodeError, match="uint8 HxWx3"):
        rgb_to_image_fields(rgb.astype(np.float32))
    with pytest.raises(ImageDecodeError, match="unknown image encoding 'bgr16'"):
        rgb_to_image_fields(rgb, "bgr16")


def test_image_decode_error_is_value_error():
    assert issubclass(ImageDecodeError, ValueError)


def test_compressed_png_is_lossless_and_jpeg_close(rgb):
    png = SimpleNamespace(**rgb_to_compressed_fields(rgb, "png"))
    np.testing.assert_array_equal(compressed_to_rgb(png), rgb)
    smooth = np.full((32, 32, 3), (200, 40, 90), np.uint8)
    jpeg = SimpleNamespace(**rgb_to_compressed_fields(smooth, "jpeg", quality=95))
    assert np.abs(compressed_to_rgb(jpeg).astype(int) - smooth).max() <= 4


def test_corrupt_and_empty_compressed(rgb):
    data = rgb_to_compressed_fields(rgb, "jpeg")["data"]
    corrupt = SimpleNamespace(format="jpeg", data=bytes(data[:20]) + b"\x00" * 10)
    with pytest.raises(ImageDecodeError, match=r"corrupt"):
        compressed_to_rgb(corrupt)
    with pytest.raises(ImageDecodeError, match="empty compressed image"):
        compressed_to_rgb(SimpleNamespace(format="png", data=b""))
    with pytest.raises(ImageDecodeError, match="unknown compressed format 'gif'"):
        rgb_to_compressed_fields(rgb, "gif")


def test_fill_image_msg_rosbags(rgb):
    msg = bagio.image_msg(0, rgb_to_image_fields(rgb, "rgb8"), "cam")
    fill_image_msg(msg, rgb[::-1].copy(), "bgra8")
    assert msg.encoding == "bgra8"
    np.testing.assert_array_equal(image_to_rgb(msg), rgb[::-1])


@pytest.mark.ros
def test_fill_image_msg_rclpy_round_trip(rgb):
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import Image

    msg = fill_image_msg(Image(), rgb, "bgra8")
    assert isinstance(msg.data, array.array)
    back = deserialize_message(serialize_message(msg), Image)
    np.testing.assert_array_equal(image_to_rgb(back), rgb)
