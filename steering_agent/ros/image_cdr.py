"""sensor_msgs/Image in its serialized (CDR) form, read and written without rclpy.

A raw subscription (`create_subscription(..., raw=True)`) hands the callback the message
as the middleware carried it: `bytes` in CDR. `parse_image` reads the fields at their
offsets and gives the pixels as a numpy view into those bytes, so a frame costs the one
copy the middleware makes into the Python `bytes` and no other. `ImageCdr` is the
publishing side: one buffer per frame size, the pixels written straight into it (e.g. by
the colour conversion of the renderer's RGB frame) and the stamp patched in place.

The layout (XCDR1 and, identical for this type, plain XCDR2; either byte order): a 4-byte
encapsulation header (0x00 0x01 little endian, 0x00 0x00 big endian; 0x00 0x07 / 0x00
0x06 for XCDR2), then, aligned relative to the byte after that header: header.stamp.sec
(int32), header.stamp.nanosec (uint32), header.frame_id (uint32 length including the
terminating NUL, the characters, the NUL), height and width (uint32, aligned to 4),
encoding (a string as frame_id), is_bigendian (uint8), step (uint32, aligned to 4), and
data (uint32 count, the bytes).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from steering_agent.data.imageconv import ImageDecodeError

_ORIGIN = 4  # alignment is counted from the end of the encapsulation header
# encapsulation id (second byte; the first is 0) -> little endian?
_ENCAPSULATIONS = {0x00: False, 0x01: True, 0x06: False, 0x07: True}
_CDR_LE = b"\x00\x01\x00\x00"
_STAMP = (struct.Struct("<iI"), struct.Struct(">iI"))
_U32 = (struct.Struct("<I"), struct.Struct(">I"))
_U32X2 = (struct.Struct("<II"), struct.Struct(">II"))


def _align4(pos: int) -> int:
    return _ORIGIN + ((pos - _ORIGIN + 3) & ~3)


@dataclass
class RawImage:
    """The fields of a serialized sensor_msgs/Image; `data` is a memoryview into the
    serialized bytes (no copy). Duck-types as a message for steering_agent.data.imageconv."""

    sec: int
    nanosec: int
    frame_id: str
    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: memoryview


def read_stamp(buf) -> tuple[int, int]:
    """(sec, nanosec) of a serialized message that starts with a std_msgs/Header.

    Raises:
        ImageDecodeError: too short, or not CDR.
    """
    little = _encapsulation(buf)
    if len(buf) < 12:
        raise ImageDecodeError(f"serialized Image of {len(buf)} bytes: too short for a stamp")
    return _STAMP[0 if little else 1].unpack_from(buf, 4)


def _encapsulation(buf) -> bool:
    if len(buf) < 4 or buf[0] != 0 or buf[1] not in _ENCAPSULATIONS:
        head = bytes(buf[:4]).hex()
        raise ImageDecodeError(f"not a CDR-serialized message (encapsulation header {head})")
    return _ENCAPSULATIONS[buf[1]]


def _string(buf, pos: int, u32: struct.Struct, what: str) -> tuple[str, int]:
    """(the string at `pos`, the position after it)."""
    pos = _align4(pos)
    if pos + 4 > len(buf):
        raise ImageDecodeError(f"serialized Image truncated in {what} ({len(buf)} bytes)")
    (n,) = u32.unpack_from(buf, pos)
    pos += 4
    if n > len(buf) - pos:
        raise ImageDecodeError(
            f"serialized Image: {what} of {n} bytes runs past the end ({len(buf)} bytes)"
        )
    raw = bytes(buf[pos : pos + n])
    if n and raw[-1] != 0:
        raise ImageDecodeError(f"serialized Image: {what} is not NUL-terminated")
    try:
        return raw[:-1].decode(), pos + n
    except UnicodeDecodeError:
        raise ImageDecodeError(f"serialized Image: {what} is not UTF-8") from None


def parse_image(buf) -> RawImage:
    """The fields of a CDR-serialized sensor_msgs/Image (module doc), `data` a view.

    Checks the layout only (every length within the buffer, the data count at most what
    is left); the pixel checks (encoding, step, data size against height * step) are
    steering_agent.data.imageconv's, on the returned object.

    Raises:
        ImageDecodeError: not CDR, truncated, or a length that runs past the end.
    """
    little = _encapsulation(buf)
    k = 0 if little else 1
    u32, u32x2 = _U32[k], _U32X2[k]
    size = len(buf)
    if size < 16:
        raise ImageDecodeError(f"serialized Image of {size} bytes: too short")
    sec, nanosec = _STAMP[k].unpack_from(buf, 4)
    frame_id, pos = _string(buf, 12, u32, "header.frame_id")
    pos = _align4(pos)
    if pos + 8 > size:
        raise ImageDecodeError(f"serialized Image truncated before height/width ({size} bytes)")
    height, width = u32x2.unpack_from(buf, pos)
    encoding, pos = _string(buf, pos + 8, u32, "encoding")
    if pos + 1 > size:
        raise ImageDecodeError(f"serialized Image truncated before is_bigendian ({size} bytes)")
    is_bigendian = buf[pos]
    pos = _align4(pos + 1)
    if pos + 8 > size:
        raise ImageDecodeError(f"serialized Image truncated before step/data ({size} bytes)")
    step, count = u32x2.unpack_from(buf, pos)
    pos += 8
    if count > size - pos:
        raise ImageDecodeError(
            f"serialized Image truncated: data of {count} bytes announced, {size - pos} present"
        )
    data = memoryview(buf)[pos : pos + count]
    return RawImage(sec, nanosec, frame_id, height, width, encoding, is_bigendian, step, data)


class ImageCdr:
    """A serialized sensor_msgs/Image (little-endian XCDR1) for one frame size, reused.

    Write the pixels into `pixels` (H x W x C uint8, a view into the buffer, rows of
    `step` bytes), set the stamp with `set_stamp`, and publish `buffer` as it is with
    `serialized_publish.RawPublisher` (or `to_bytes()`, a copy, for rclpy's
    `Publisher.publish`).
    """

    def __init__(
        self, height: int, width: int, encoding: str = "bgra8", channels: int = 4,
        frame_id: str = "", row_padding: int = 0,
    ) -> None:  # fmt: skip
        self.height, self.width, self.encoding = int(height), int(width), encoding
        self.step = self.width * channels + int(row_padding)
        head = bytearray(_CDR_LE) + bytes(8)
        for text in (frame_id,):
            _put_string(head, text)
        _pad4(head)
        head += struct.pack("<II", self.height, self.width)
        _put_string(head, encoding)
        head.append(0)  # is_bigendian
        _pad4(head)
        head += struct.pack("<II", self.step, self.height * self.step)
        self._offset = len(head)
        self.buffer = bytearray(head) + bytearray(self.height * self.step)
        rows = np.frombuffer(self.buffer, np.uint8, self.height * self.step, self._offset)
        rows = rows.reshape(self.height, self.step)[:, : self.width * channels]
        self.pixels = rows.reshape(self.height, self.width, channels)

    def set_stamp(self, sec: int, nanosec: int) -> None:
        _STAMP[0].pack_into(self.buffer, 4, int(sec), int(nanosec))

    def to_bytes(self) -> bytes:
        return bytes(self.buffer)


def _put_string(buf: bytearray, text: str) -> None:
    _pad4(buf)
    raw = text.encode() + b"\x00"
    buf += struct.pack("<I", len(raw)) + raw


def _pad4(buf: bytearray) -> None:
    buf += bytes((-(len(buf) - _ORIGIN)) % 4)
