"""sensor_msgs/Image and CompressedImage <-> numpy RGB, without cv_bridge.

Duck-typed on the message attributes (`encoding, height, width, step, is_bigendian,
data`), so rclpy messages, rosbags dataclasses and plain objects all work. `data` may
be bytes, bytearray, array.array, memoryview or a numpy array; it is viewed in place
(np.frombuffer), and each decode is one cv2.cvtColor from a strided view of it.
"""

from __future__ import annotations

import array
from typing import Any

import cv2
import numpy as np

# encoding -> (channels, OpenCV code turning that layout into RGB; None = already RGB)
_DECODE: dict[str, tuple[int, int | None]] = {
    "bgra8": (4, cv2.COLOR_BGRA2RGB),
    "bgr8": (3, cv2.COLOR_BGR2RGB),
    "rgb8": (3, None),
    "rgba8": (4, cv2.COLOR_RGBA2RGB),
    "mono8": (1, cv2.COLOR_GRAY2RGB),
    # OpenCV's generic types carry no colour order; OpenCV's own convention is BGR(A).
    "8UC1": (1, cv2.COLOR_GRAY2RGB),
    "8UC3": (3, cv2.COLOR_BGR2RGB),
    "8UC4": (4, cv2.COLOR_BGRA2RGB),
}
# encoding -> OpenCV code turning RGB into that layout (None = RGB as is)
_ENCODE: dict[str, int | None] = {
    "bgra8": cv2.COLOR_RGB2BGRA,
    "bgr8": cv2.COLOR_RGB2BGR,
    "rgb8": None,
    "rgba8": cv2.COLOR_RGB2RGBA,
    "mono8": cv2.COLOR_RGB2GRAY,
    "8UC1": cv2.COLOR_RGB2GRAY,
    "8UC3": cv2.COLOR_RGB2BGR,
    "8UC4": cv2.COLOR_RGB2BGRA,
}
ENCODINGS: tuple[str, ...] = tuple(_DECODE)
COMPRESSED_FORMATS: tuple[str, ...] = ("jpeg", "png")


class ImageDecodeError(ValueError):
    """An image message that cannot be turned into pixels; the message says why."""


def _as_bytes_array(data: Any) -> np.ndarray:
    """A flat uint8 view of `data` (no copy for buffer objects and uint8 arrays)."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:  # a list of ints, as rclpy also accepts
        return np.asarray(data, dtype=np.uint8)


def _pixel_view(msg: Any) -> tuple[np.ndarray, int | None]:
    """Validate `msg` and return (H x W x C strided view of its data, cvtColor code)."""
    encoding = str(msg.encoding)
    if encoding not in _DECODE:
        raise ImageDecodeError(
            f"unknown image encoding {encoding!r}; supported: {', '.join(ENCODINGS)}"
        )
    channels, code = _DECODE[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageDecodeError(f"empty frame: {width}x{height} {encoding} image")
    if int(msg.is_bigendian) not in (0, 1):
        raise ImageDecodeError(f"is_bigendian must be 0 or 1, got {msg.is_bigendian!r}")
    row = width * channels
    if step < row:
        raise ImageDecodeError(
            f"step {step} < width*channels = {width}*{channels} = {row} for {encoding}"
        )
    flat = _as_bytes_array(msg.data)
    # The last row's padding may be left out by some producers; anything else is corrupt.
    if not (height - 1) * step + row <= flat.size <= height * step:
        raise ImageDecodeError(
            f"data size {flat.size} does not match height*step = {height}*{step} = "
            f"{height * step} for a {width}x{height} {encoding} image"
        )
    if flat.size < height * step:
        flat = np.concatenate([flat, np.zeros(height * step - flat.size, np.uint8)])
    rows = flat[: height * step].reshape(height, step)[:, :row]
    return rows.reshape(height, width, channels), code


def image_to_rgb(
    msg: Any, out: np.ndarray | None = None, max_pixels: int | None = None
) -> np.ndarray:
    """Pixels of a sensor_msgs/Image as RGB uint8 HxWx3 (a new array, or `out`).

    Args:
        msg: anything with `encoding, height, width, step, is_bigendian, data`.
        out: optional C-contiguous uint8 HxWx3 array to write into (saves an allocation,
            e.g. a slot of a preallocated episode array).
        max_pixels: refuse a frame of more pixels than this (None: any size).

    Raises:
        ImageDecodeError: unknown encoding, empty frame, step too small, data size wrong,
            or `out` of the wrong shape.
    """
    _check_pixels(int(msg.width), int(msg.height), max_pixels, "a frame")
    view, code = _pixel_view(msg)
    shape = (*view.shape[:2], 3)
    if out is None:
        out = np.empty(shape, np.uint8)
    elif out.shape != shape or out.dtype != np.uint8 or not out.flags.c_contiguous:
        raise ImageDecodeError(
            f"output array {out.shape} {out.dtype} does not fit a {shape} uint8 image"
        )
    if code is None:
        out[...] = view
    else:
        cv2.cvtColor(view, code, dst=out)
    return out


# Encodings the policy takes as they are (a view, no conversion): 4 channels are BGRA
# (steering_agent.policy.preprocess), 3 channels RGB.
_POLICY_AS_IS = {"bgra8": 4, "8UC4": 4, "rgb8": 3}


def policy_pixels(
    msg: Any, out: np.ndarray | None = None, max_pixels: int | None = None
) -> np.ndarray:
    """The frame as the policy takes it, without a copy where the encoding allows.

    bgra8 / 8UC4 give an H x W x 4 BGRA view and rgb8 an H x W x 3 RGB view of the
    message's `data` (rows may be strided: `step` padding is skipped, not copied); the
    other encodings are converted to RGB by `image_to_rgb` (into `out` when it fits).
    A view is valid as long as `msg.data` is (a raw subscription's bytes, e.g.).

    Raises:
        ImageDecodeError: as `image_to_rgb`.
    """
    _check_pixels(int(msg.width), int(msg.height), max_pixels, "a frame")
    channels = _POLICY_AS_IS.get(str(msg.encoding))
    if channels is None:
        if out is not None and out.shape != (int(msg.height), int(msg.width), 3):
            out = None
        return image_to_rgb(msg, out=out)
    view, _ = _pixel_view(msg)
    return view


def rgb_to_image_fields(
    rgb: np.ndarray, encoding: str = "bgra8", row_padding: int = 0
) -> dict[str, Any]:
    """The fields of a sensor_msgs/Image holding `rgb` (uint8 HxWx3) in `encoding`.

    Returns:
        dict(height, width, encoding, is_bigendian=0, step, data) with `data` a flat
        uint8 numpy array (what rosbags messages take; `.tobytes()` for others).
        `row_padding` adds that many zero bytes after each row (tests, alignment).

    Raises:
        ImageDecodeError: `rgb` is not uint8 HxWx3, or `encoding` is unknown.
    """
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.size == 0:
        raise ImageDecodeError(
            f"expected a non-empty uint8 HxWx3 RGB array, got {rgb.shape} {rgb.dtype}"
        )
    if encoding not in _ENCODE:
        raise ImageDecodeError(
            f"unknown image encoding {encoding!r}; supported: {', '.join(ENCODINGS)}"
        )
    code = _ENCODE[encoding]
    pixels = np.ascontiguousarray(rgb) if code is None else cv2.cvtColor(rgb, code)
    height, width = rgb.shape[:2]
    row = pixels.reshape(height, -1)
    step = row.shape[1] + int(row_padding)
    if row_padding:
        padded = np.zeros((height, step), np.uint8)
        padded[:, : row.shape[1]] = row
        row = padded
    return {
        "height": height,
        "width": width,
        "encoding": encoding,
        "is_bigendian": 0,
        "step": step,
        "data": row.reshape(-1),
    }


def fill_image_msg(msg: Any, rgb: np.ndarray, encoding: str = "bgra8") -> Any:
    """Set the pixel fields of an Image message (rclpy or rosbags) in place; return it.

    rclpy messages get `data` as array.array('B') filled with one copy (assigning a
    numpy array or bytes there would go element by element); others get the array.
    """
    fields = rgb_to_image_fields(rgb, encoding)
    data = fields.pop("data")
    for key, value in fields.items():
        setattr(msg, key, value)
    if isinstance(getattr(msg, "data", None), array.array):
        buf = array.array("B")
        buf.frombytes(data)
        msg.data = buf
    else:
        msg.data = data
    return msg


def camera_info_fields(camera: dict) -> dict[str, Any]:
    """The fields of a sensor_msgs/CameraInfo for a pinhole camera without distortion,
    given dict(width, height, fx, fy, cx, cy) (e.g. an env's `camera_info()`)."""
    fx, fy, cx, cy = (float(camera[k]) for k in ("fx", "fy", "cx", "cy"))
    return {
        "width": int(camera["width"]),
        "height": int(camera["height"]),
        "distortion_model": "plumb_bob",
        "d": np.zeros(5),
        "k": np.array([fx, 0, cx, 0, fy, cy, 0, 0, 1], np.float64),
        "r": np.eye(3).reshape(-1),
        "p": np.array([fx, 0, cx, 0, 0, fy, cy, 0, 0, 0, 1, 0], np.float64),
    }


def compressed_size(data: np.ndarray) -> tuple[str, int, int]:
    """(format, width, height) read from the header of PNG or JPEG bytes, without decoding.

    Raises:
        ImageDecodeError: neither PNG nor JPEG, or a header too short or corrupt to say.
    """
    b = data[:65536].tobytes() if data.size > 65536 else data.tobytes()
    if b[:8] == b"\x89PNG\r\n\x1a\n":
        if len(b) < 24 or b[12:16] != b"IHDR":
            raise ImageDecodeError("corrupt PNG: no IHDR header")
        return "png", int.from_bytes(b[16:20], "big"), int.from_bytes(b[20:24], "big")
    if b[:2] == b"\xff\xd8":
        i = 2
        while i + 9 <= len(b):
            if b[i] != 0xFF:
                raise ImageDecodeError("corrupt JPEG: bad marker before the frame header")
            marker = b[i + 1]
            if marker == 0xFF:  # fill byte
                i += 1
                continue
            length = int.from_bytes(b[i + 2 : i + 4], "big")
            # SOF0..SOF15 carry the frame size; C4 (DHT), C8 (JPG), CC (DAC) do not
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                height = int.from_bytes(b[i + 5 : i + 7], "big")
                width = int.from_bytes(b[i + 7 : i + 9], "big")
                return "jpeg", width, height
            i += 2 + length
        raise ImageDecodeError("corrupt JPEG: no frame header in its first 64 KB")
    raise ImageDecodeError(
        f"compressed image is neither PNG nor JPEG; supported: {', '.join(COMPRESSED_FORMATS)}"
    )


def _check_pixels(width: int, height: int, max_pixels: int | None, what: str) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise ImageDecodeError(
            f"{what} of {width}x{height} = {width * height} pixels is over the limit of "
            f"{max_pixels} (parameter max_image_pixels); refused before decoding"
        )


def compressed_to_rgb(msg: Any, max_pixels: int | None = None) -> np.ndarray:
    """Pixels of a sensor_msgs/CompressedImage (jpeg or png) as RGB uint8 HxWx3.

    The size is read from the header first: an image of more than `max_pixels` pixels is
    refused without decoding it (a small file can hold a huge image).

    Raises:
        ImageDecodeError: empty, corrupt or too large data, or a format other than PNG/JPEG.
    """
    buf = _as_bytes_array(msg.data)
    fmt = str(getattr(msg, "format", ""))
    if buf.size == 0:
        raise ImageDecodeError(f"empty compressed image (format {fmt!r})")
    kind, width, height = compressed_size(buf)
    if width <= 0 or height <= 0:
        raise ImageDecodeError(f"corrupt {kind}: header says {width}x{height}")
    _check_pixels(width, height, max_pixels, f"a {kind} image")
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageDecodeError(
            f"corrupt or undecodable compressed image (format {fmt!r}, {buf.size} bytes); "
            f"supported: {', '.join(COMPRESSED_FORMATS)}"
        )
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def rgb_to_compressed_fields(rgb: np.ndarray, fmt: str = "jpeg", quality: int = 90) -> dict:
    """The fields of a sensor_msgs/CompressedImage: dict(format, data uint8 array).

    Raises:
        ImageDecodeError: unknown format or an array OpenCV cannot encode.
    """
    if fmt not in COMPRESSED_FORMATS:
        raise ImageDecodeError(
            f"unknown compressed format {fmt!r}; supported: {', '.join(COMPRESSED_FORMATS)}"
        )
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if fmt == "jpeg" else []
    ok, buf = cv2.imencode(f".{fmt}", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ImageDecodeError(f"OpenCV could not encode a {rgb.shape} image as {fmt}")
    return {"format": fmt, "data": buf.reshape(-1)}
