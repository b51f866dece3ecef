"""Serialized sensor_msgs/Image read in place (steering_agent.ros.image_cdr): the fields
and pixels equal rclpy's own deserialization over encodings, sizes, padded rows and
frame_id lengths; bad messages are refused; the policy gets BGRA views, not copies, and
preprocesses them exactly as the RGB frame."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from steering_agent.data.imageconv import (
    ENCODINGS,
    ImageDecodeError,
    image_to_rgb,
    rgb_to_image_fields,
)
from steering_agent.policy.calibration import (
    CANONICAL_MOUNT,
    CameraCalibration,
    CameraSpec,
    canonical_camera,
)
from steering_agent.policy.preprocess import PreprocessConfig, preprocess_frames

rclpy_serialization = pytest.importorskip("rclpy.serialization")
Image = pytest.importorskip("sensor_msgs.msg").Image

from steering_agent.ros.image_cdr import ImageCdr, parse_image, read_stamp  # noqa: E402
from steering_agent.ros.image_input import FrameDecoder, serialized_stamp  # noqa: E402


def _typed(rgb, encoding, frame_id, padding=0, stamp=(12, 345)):
    f = rgb_to_image_fields(rgb, encoding, row_padding=padding)
    msg = Image(height=f["height"], width=f["width"], encoding=f["encoding"],
                is_bigendian=0, step=f["step"])  # fmt: skip
    msg.data = f["data"].tobytes()
    msg.header.frame_id = frame_id
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
    return msg


CASES = [
    (enc, hw, fid, pad)
    for enc in ENCODINGS
    for hw, fid, pad in (((3, 5), "", 0), ((7, 9), "c", 1), ((6, 11), "cam", 3),
                         ((2, 4), "ego_vehicle/rgb_front", 0), ((5, 2), "abcd", 2))
]  # fmt: skip


@pytest.mark.parametrize("encoding,hw,frame_id,padding", CASES)
def test_parse_matches_rclpy_deserialization(encoding, hw, frame_id, padding):
    rgb = np.random.default_rng(len(frame_id) + hw[0]).integers(0, 256, (*hw, 3), np.uint8)
    buf = rclpy_serialization.serialize_message(_typed(rgb, encoding, frame_id, padding))
    ref = rclpy_serialization.deserialize_message(buf, Image)
    raw = parse_image(buf)
    assert (raw.sec, raw.nanosec) == (ref.header.stamp.sec, ref.header.stamp.nanosec)
    assert read_stamp(buf) == (12, 345) and serialized_stamp(buf) == (12, 345)
    assert raw.frame_id == ref.header.frame_id == frame_id
    assert (raw.height, raw.width, raw.step) == (ref.height, ref.width, ref.step)
    assert raw.encoding == ref.encoding and raw.is_bigendian == ref.is_bigendian
    assert bytes(raw.data) == bytes(ref.data)
    np.testing.assert_array_equal(image_to_rgb(raw), image_to_rgb(ref))
    frame = FrameDecoder(None).serialized(buf)
    if encoding in ("bgra8", "8UC4", "rgb8"):  # a view into the received bytes
        assert np.shares_memory(frame, np.frombuffer(buf, np.uint8))
        expect = rgb if encoding == "rgb8" else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA)
        np.testing.assert_array_equal(frame, expect)
    else:
        np.testing.assert_array_equal(frame, image_to_rgb(ref))


@pytest.mark.parametrize("frame_id", ["", "a", "abcde", "ego_vehicle/rgb_front"])
def test_image_cdr_deserializes_to_the_same_message(frame_id):
    rgb = np.random.default_rng(3).integers(0, 256, (9, 13, 3), np.uint8)
    cdr = ImageCdr(9, 13, "bgra8", 4, frame_id)
    cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA, dst=cdr.pixels)
    cdr.set_stamp(7, 999)
    back = rclpy_serialization.deserialize_message(cdr.to_bytes(), Image)
    assert back == _typed(rgb, "bgra8", frame_id, stamp=(7, 999))


def test_padded_rows_are_skipped_in_place():
    rgb = np.random.default_rng(4).integers(0, 256, (4, 6, 3), np.uint8)
    cdr = ImageCdr(4, 6, "bgra8", 4, "x", row_padding=5)
    cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA, dst=cdr.pixels)
    buf = cdr.to_bytes()
    frame = FrameDecoder(None).serialized(buf)
    assert frame.shape == (4, 6, 4) and frame.strides[0] == 6 * 4 + 5
    np.testing.assert_array_equal(frame[..., 2::-1], rgb)


def _good():
    rgb = np.random.default_rng(5).integers(0, 256, (6, 8, 3), np.uint8)
    return rclpy_serialization.serialize_message(_typed(rgb, "bgra8", "cam"))


def test_truncated_messages_are_refused_at_every_length():
    buf = _good()
    for n in range(len(buf)):
        with pytest.raises(ImageDecodeError):
            FrameDecoder(None).serialized(buf[:n])
    assert serialized_stamp(buf[:11]) is None and serialized_stamp(buf[:12]) is not None


def test_inconsistent_sizes_and_headers_are_refused():
    buf = bytearray(_good())
    raw = parse_image(bytes(buf))
    off = len(buf) - len(raw.data) - 8  # step, then the data count
    wrong_step = bytearray(buf)
    wrong_step[off : off + 4] = (raw.step + 4).to_bytes(4, "little")  # data too short now
    with pytest.raises(ImageDecodeError, match="does not match"):
        FrameDecoder(None).serialized(bytes(wrong_step))
    huge = bytearray(buf)
    huge[off + 4 : off + 8] = (2**31).to_bytes(4, "little")
    with pytest.raises(ImageDecodeError, match="truncated"):
        parse_image(bytes(huge))
    with pytest.raises(ImageDecodeError, match="not a CDR"):
        parse_image(b"\x01\x02" + bytes(buf[2:]))
    with pytest.raises(ImageDecodeError, match="over the limit"):
        FrameDecoder(max_pixels=47).serialized(bytes(buf))


def test_bgra_frames_preprocess_as_their_rgb():
    rng = np.random.default_rng(6)
    for h, w in ((66, 200), (600, 800), (37, 91)):
        rgb = rng.integers(0, 256, (h, w, 3), np.uint8)
        bgra = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGRA)
        for cfg in (PreprocessConfig(), PreprocessConfig(color="rgb", crop_top=0.2),
                    PreprocessConfig(aspect_crop=False)):  # fmt: skip
            np.testing.assert_array_equal(preprocess_frames(bgra, cfg), preprocess_frames(rgb, cfg))
        mount = {**CANONICAL_MOUNT, "x_m": 2.0, "height_m": 2.0, "pitch_deg": 0.0}
        canon, first = canonical_camera(200, 66)
        calib = CameraCalibration(CameraSpec.from_fov(w, h, 90.0, **mount), canon, 200, 66, first)
        np.testing.assert_array_equal(calib.apply(bgra), calib.apply(rgb))
