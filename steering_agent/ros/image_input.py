"""Camera messages -> the frame the policy takes, for the agent node.

Raw images arrive serialized (a raw subscription: the CDR bytes, steering_agent.ros
.image_cdr); bgra8 and rgb8 frames are then handed to the policy as numpy views into
those bytes (BGRA: 4 channels, the layout CARLA's and this project's cameras send; the
policy's preprocessing crops, resizes and converts the colour at the network's size,
steering_agent.policy.preprocess). Other encodings are converted to RGB once, into a
buffer kept while the frame size stays. Compressed images are decoded to RGB.
"""

from __future__ import annotations

import numpy as np

from steering_agent.data.imageconv import (
    ImageDecodeError,
    compressed_to_rgb,
    policy_pixels,
)
from steering_agent.ros.image_cdr import parse_image, read_stamp


class FrameDecoder:
    """Decodes one camera stream's messages; `max_pixels` refuses larger frames."""

    def __init__(self, max_pixels: int | None) -> None:
        self.max_pixels = max_pixels
        self._rgb: np.ndarray | None = None  # reused for converted encodings

    def serialized(self, buf) -> np.ndarray:
        """Pixels of a serialized sensor_msgs/Image (a view for bgra8/rgb8).

        Raises:
            ImageDecodeError: a truncated or inconsistent message, an unknown encoding,
                a frame over `max_pixels`.
        """
        return self._pixels(parse_image(buf))

    def typed(self, msg) -> np.ndarray:
        """Pixels of a deserialized sensor_msgs/Image (a view for bgra8/rgb8)."""
        return self._pixels(msg)

    def _pixels(self, msg) -> np.ndarray:
        out = policy_pixels(msg, out=self._rgb, max_pixels=self.max_pixels)
        if out.flags.owndata:  # a converted frame: its buffer serves the next one
            self._rgb = out
        return out

    def compressed(self, msg) -> np.ndarray:
        return compressed_to_rgb(msg, max_pixels=self.max_pixels)


def serialized_stamp(buf) -> tuple[int, int] | None:
    """(sec, nanosec) of a serialized Image, or None where not even that can be read
    (the frame is then refused by `FrameDecoder.serialized`)."""
    try:
        return read_stamp(buf)
    except ImageDecodeError:
        return None
