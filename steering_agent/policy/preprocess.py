"""One preprocessing function shared by training and inference.

Crop a frame taller than the training camera's aspect ratio to it (rows around the
centre: `aspect_crop`), crop the sky and the bonnet (fractions of the image height),
resize to the network's input size (`resize`: exact 2x box reductions, then bilinear),
convert the colour space, and lay the result out as uint8 CHW. `normalize` turns that
into the float input of the network. The settings live in a `PreprocessConfig` that is
stored in every checkpoint, so inference always uses exactly what training used.

Frames are uint8 RGB (H x W x 3) or BGRA (H x W x 4: the layout of bgra8 camera
messages, taken as a view of the message without a conversion). A BGRA frame is
cropped and resized as it is and its colour converted once, at the network's size; the
result is the same, to the bit, as converting it to RGB first (the box averages and the
bilinear step work on each channel alone).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch

COLOR_SPACES = ("yuv", "rgb")


@dataclass(frozen=True)
class PreprocessConfig:
    """How camera frames become network input.

    Attributes:
        crop_top: fraction of the image height removed at the top (sky).
        crop_bottom: fraction of the image height removed at the bottom (bonnet).
        height: network input height in pixels (PilotNet: 66).
        width: network input width in pixels (PilotNet: 200).
        color: "yuv" (as PilotNet) or "rgb".
        aspect_crop: keep only the centre rows of a frame whose width / height is below
            `camera_aspect` (a taller frame, e.g. CARLA's 4:3 800x600 against 200x66),
            as many as a frame of that aspect has. For pinhole cameras with the same
            horizontal field of view and a centred principal point (CARLA's and the
            embedded camera at their 90-degree default), those rows see exactly what
            the training camera saw, so the network is not fed a squeezed road.
            Frames of the training aspect are untouched. Checkpoints saved before this
            setting existed load with it off (as they were trained).
    """

    crop_top: float = 0.0
    crop_bottom: float = 0.0
    height: int = 66
    width: int = 200
    color: str = "yuv"
    aspect_crop: bool = True

    def __post_init__(self) -> None:
        if not (
            self.crop_top >= 0.0
            and self.crop_bottom >= 0.0
            and self.crop_top + self.crop_bottom < 1.0
        ):
            raise ValueError(
                f"PreprocessConfig: crop_top ({self.crop_top}) and crop_bottom "
                f"({self.crop_bottom}) must be >= 0 and sum to less than 1"
            )
        if self.height < 1 or self.width < 1:
            raise ValueError(f"PreprocessConfig: size {self.height}x{self.width} must be >= 1")
        if self.color not in COLOR_SPACES:
            raise ValueError(f"PreprocessConfig: color {self.color!r} is not one of {COLOR_SPACES}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PreprocessConfig:
        d = dict(d)
        d.setdefault("aspect_crop", False)  # saved before it existed: as trained
        return cls(**d)

    @property
    def camera_aspect(self) -> float:
        """Width / height of the frames this config maps onto the network input without
        distortion: after the crop fractions they have the network's aspect."""
        return self.width / self.height * (1.0 - self.crop_top - self.crop_bottom)

    def aspect_rows(self, image_height: int, image_width: int) -> tuple[int, int]:
        """The centre rows [start, stop) that `aspect_crop` keeps of an image this size
        (all rows when it is off or the image is not taller than `camera_aspect`). An
        image of just those rows gives the same network input."""
        if not self.aspect_crop:
            return 0, image_height
        rows = min(image_height, max(1, round(image_width / self.camera_aspect)))
        offset = (image_height - rows) // 2
        return offset, offset + rows

    def crop_rows(self, image_height: int, image_width: int | None = None) -> tuple[int, int]:
        """The row range [top, bottom) kept from an image `image_height` rows tall (and,
        for `aspect_crop`, `image_width` columns wide)."""
        offset, rows = 0, image_height
        if image_width is not None:
            offset, stop = self.aspect_rows(image_height, image_width)
            rows = stop - offset
        top = offset + round(self.crop_top * rows)
        bottom = offset + rows - round(self.crop_bottom * rows)
        if bottom - top < 1:
            raise ValueError(f"crop of {self} leaves no rows of a {image_height}-row image")
        return top, bottom


def resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Anti-aliased resize of an H x W x C uint8 image to `height` x `width`.

    While the image is at least twice the target size in a direction it is halved with an
    exact 2-pixel box average (2x2 through `cv2.INTER_AREA` at scale 2, OpenCV's
    vectorised path; rows only through `cv2.addWeighted` of the even and odd rows; an odd
    last row or column is dropped). The remaining factor, below 2, is bilinear
    (`cv2.INTER_LINEAR`), as is any upscaling.

    Against a single `cv2.INTER_AREA` of the same crop (measured on 80 frames of 10 seeds
    of the 800x600 embedded simulator; tests/test_preprocess.py checks it): at exact
    2x/4x factors, as the default aspect crop gives (800x264 rows to 200x66), it is the
    same box average up to the rounding in between, at most 1 grey level off anywhere
    (mean 0.27), on any image. Squeezing the whole 800x600 frame (aspect crop off: 9.09x
    down, the last step bilinear) the mean absolute difference is 0.8 to 1.7 grey levels
    a frame (1.15 on average; single pixels at sharp edges up to 44), about half that of
    one bilinear resize; on white noise it is 4.9. There, INTER_AREA at its non-integer
    factor takes 6 to 9 times longer (0.29 versus 1.7 ms on one machine, 0.13 versus
    1.2 ms on another; not a test).
    """
    while True:
        h, w = image.shape[:2]
        halve_x, halve_y = w >= 2 * width, h >= 2 * height
        if halve_x and halve_y:
            image = cv2.resize(
                image[: h - h % 2, : w - w % 2], (w // 2, h // 2), interpolation=cv2.INTER_AREA
            )
        elif halve_y:
            image = cv2.addWeighted(image[0 : h - 1 : 2], 0.5, image[1:h:2], 0.5, 0.0)
        elif halve_x:
            image = cv2.resize(image[:, : w - w % 2], (w // 2, h), interpolation=cv2.INTER_AREA)
        else:
            break
    if image.shape[:2] != (height, width):
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    return image


def _one_frame(image: np.ndarray, cfg: PreprocessConfig, out_chw: np.ndarray) -> None:
    rows = cfg.crop_rows(image.shape[0], image.shape[1])
    preprocess_into(image, cfg, rows, out_chw.transpose(1, 2, 0))


def preprocess_into(
    image: np.ndarray, cfg: PreprocessConfig, rows: tuple[int, int], out_hwc: np.ndarray
) -> None:
    """One frame, already checked (uint8 H x W x 3 RGB or x 4 BGRA), into `out_hwc`
    (height x width x 3): rows `rows` (`cfg.crop_rows` of its size, which a caller that
    sees one size of frame looks up once), resized, in the network's colour space."""
    crop = image[rows[0] : rows[1]]
    if crop.shape[0] != cfg.height or crop.shape[1] != cfg.width:
        crop = resize(crop, cfg.width, cfg.height)
    to_color_space(crop, cfg.color, out_hwc)


def preprocess_frames(
    images: np.ndarray, cfg: PreprocessConfig, out: np.ndarray | None = None
) -> np.ndarray:
    """Crop, resize and colour-convert RGB (or BGRA) frames.

    Args:
        images: uint8 RGB, [N, H, W, 3] or one frame [H, W, 3]; or BGRA with 4 channels
            (module doc). Row-strided views (padded rows) are read in place.
        cfg: the preprocessing settings (from the checkpoint).
        out: optional uint8 [N, 3, height, width] buffer to fill (no allocation).

    Returns:
        uint8 [N, 3, cfg.height, cfg.width] (N = 1 for a single frame).
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] not in (3, 4) or images.dtype != np.uint8:
        raise ValueError(
            f"preprocess_frames: expected uint8 RGB [N,H,W,3] or [H,W,3] (or BGRA, 4 "
            f"channels), got {images.dtype} {images.shape}; convert the camera image to "
            "uint8 RGB first"
        )
    n = images.shape[0]
    shape = (n, 3, cfg.height, cfg.width)
    if out is None:
        out = np.empty(shape, dtype=np.uint8)
    elif out.shape != shape or out.dtype != np.uint8:
        raise ValueError(
            f"preprocess_frames: out must be uint8 {shape}, got {out.dtype} {out.shape}"
        )
    for i in range(n):
        _one_frame(images[i], cfg, out[i])
    return out


def normalize(frames: torch.Tensor | np.ndarray, out: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 (any shape) -> float32 in about [-1, 1]: x / 127.5 - 1.

    With `out` (a float32 tensor of the same shape) nothing is allocated, and it is one
    kernel, -1 + x * (1 / 127.5): the same to float rounding (1.2e-7).
    """
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(frames)
    if out is None:
        return frames.to(torch.float32).div_(127.5).sub_(1.0)
    return torch.add(-1.0, frames, alpha=1.0 / 127.5, out=out)


# (colour space, channels of the image) -> OpenCV code (None: RGB as is)
_TO_COLOR = {
    ("yuv", 3): cv2.COLOR_RGB2YUV,
    ("yuv", 4): cv2.COLOR_BGR2YUV,  # OpenCV reads the 4th channel as alpha and drops it
    ("rgb", 3): None,
    ("rgb", 4): cv2.COLOR_BGRA2RGB,
}


def to_color_space(rgb: np.ndarray, color: str, out_hwc: np.ndarray) -> None:
    """An RGB uint8 HxWx3 (or BGRA HxWx4) image in the network's colour space, into
    `out_hwc` (HxWx3; straight into it where it is C-contiguous, else one strided copy,
    e.g. into a CHW buffer)."""
    code = _TO_COLOR[color, rgb.shape[2]]
    if code is None:
        np.copyto(out_hwc, rgb)
    elif out_hwc.flags.c_contiguous:
        cv2.cvtColor(rgb, code, dst=out_hwc)
    else:
        np.copyto(out_hwc, cv2.cvtColor(rgb, code))
