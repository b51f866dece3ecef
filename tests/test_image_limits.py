"""Compressed frames are sized from their header and refused over a pixel limit before
decoding (a small PNG or JPEG can hold a huge image)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from steering_agent.data.imageconv import (
    ImageDecodeError,
    compressed_size,
    compressed_to_rgb,
    image_to_rgb,
    rgb_to_compressed_fields,
    rgb_to_image_fields,
)

RGB = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)


def _resized_header(fmt: str, width: int, height: int) -> bytes:
    """A real small image whose header claims `width` x `height`."""
    data = bytearray(rgb_to_compressed_fields(RGB, fmt)["data"].tobytes())
    if fmt == "png":
        data[16:20], data[20:24] = width.to_bytes(4, "big"), height.to_bytes(4, "big")
        return bytes(data)
    i = 2
    while not (0xC0 <= data[i + 1] <= 0xC3):  # baseline/progressive SOF
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    data[i + 5 : i + 7], data[i + 7 : i + 9] = height.to_bytes(2, "big"), width.to_bytes(2, "big")
    return bytes(data)


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_header_size_of_real_images(fmt):
    data = rgb_to_compressed_fields(RGB, fmt)["data"]
    assert compressed_size(data) == (fmt, 64, 48)


@pytest.mark.parametrize(("fmt", "w", "h"), [("png", 20000, 20000), ("jpeg", 8000, 8000)])
def test_huge_images_are_refused_before_decoding(fmt, w, h):
    msg = SimpleNamespace(format=fmt, data=_resized_header(fmt, w, h))
    with pytest.raises(ImageDecodeError, match=rf"{w}x{h}.*max_image_pixels"):
        compressed_to_rgb(msg, max_pixels=4096 * 2304)
    small = SimpleNamespace(format=fmt, data=rgb_to_compressed_fields(RGB, fmt)["data"])
    assert compressed_to_rgb(small, max_pixels=64 * 48).shape == (48, 64, 3)


def test_other_formats_are_refused_naming_the_supported_ones():
    bmp = SimpleNamespace(format="bmp", data=b"BM" + b"\x00" * 60)
    with pytest.raises(ImageDecodeError, match="neither PNG nor JPEG"):
        compressed_to_rgb(bmp)


def test_raw_frames_over_the_limit_are_refused():
    f = rgb_to_image_fields(RGB, "bgra8")
    msg = SimpleNamespace(**f)
    with pytest.raises(ImageDecodeError, match="64x48 = 3072 pixels"):
        image_to_rgb(msg, max_pixels=3071)
    assert image_to_rgb(msg, max_pixels=3072).shape == (48, 64, 3)
