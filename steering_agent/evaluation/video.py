"""Browser-playable videos of one episode: camera view, steering gauge, top-down view.

Encoders, chosen by `choose_encoder` (the first that works here, unless asked for):

- ``h264``: H.264 (yuv420p, High profile) in MP4 with the index in front (faststart),
  through the ffmpeg binary that the `imageio-ffmpeg` wheel ships (the `video` extra,
  ``pip install "steering_agent[video]"``; `make setup` installs it); plays in every
  browser, Safari included, and is fast (about 9 ms a 798x254 frame here).
- ``vp8`` / ``vp9``: VP8 or VP9 (profile 0, 4:2:0) in WebM through OpenCV's own FFmpeg
  (a hard dependency; the opencv-python wheels of `constraints.txt` carry libvpx); play
  in Chrome, Firefox and Edge, and in Safari 14.1+ (VP9) / 15+ (VP8). OpenCV passes no
  encoder options (libvpx's slow "good" deadline): about 60 ms a frame for VP8 and 140
  ms for VP9 here, so "auto" falls back to VP8.

Where none works, `EpisodeVideo` raises `MissingExtra` naming the `video` extra.
OpenCV's default 'mp4v' (MPEG-4 Part 2) plays in no browser.
`probe_video` reads a written file's container and codec from its bytes (no ffprobe).
"""

from __future__ import annotations

import functools
import os
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from steering_agent.common.extras import MissingExtra
from steering_agent.evaluation.video_probe import BROWSER_CODECS, probe_video

__all__ = [
    "BROWSER_CODECS",
    "ENCODERS",
    "Encoder",
    "EpisodeVideo",
    "choose_encoder",
    "encoder_works",
    "probe_video",
]


@dataclass(frozen=True)
class Encoder:
    """One way of writing a browser-playable file: its name, file suffix and codec."""

    name: str
    suffix: str
    codec: str


ENCODERS = {
    "h264": Encoder("h264", ".mp4", "h264"),
    "vp8": Encoder("vp8", ".webm", "vp8"),
    "vp9": Encoder("vp9", ".webm", "vp9"),
}
_PREFERENCE = ("h264", "vp8")  # H.264: every device, fast; VP8: no extra (VP9: slower)


class _Cv2Sink:
    """VP8 or VP9 in WebM through OpenCV's VideoWriter (BGR frames)."""

    FOURCC = "VP80"

    def __init__(self, path: Path, fps: float, size: tuple[int, int]) -> None:
        with _without_tag_warning():
            fourcc = cv2.VideoWriter_fourcc(*self.FOURCC)
            self._w = cv2.VideoWriter(str(path), fourcc, fps, size)
        if not self._w.isOpened():
            raise RuntimeError(f"cannot open {path} for writing ({self.FOURCC}/WebM)")

    def write(self, rgb: np.ndarray, bgr_scratch: np.ndarray) -> None:
        cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR, dst=bgr_scratch)
        self._w.write(bgr_scratch)

    def close(self) -> None:
        self._w.release()


class _FfmpegSink:
    """H.264 (yuv420p, faststart) in MP4 through imageio-ffmpeg's ffmpeg (RGB frames)."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int]) -> None:
        import imageio_ffmpeg

        self._gen = imageio_ffmpeg.write_frames(
            str(path), size, fps=fps, codec="libx264", pix_fmt_in="rgb24",
            pix_fmt_out="yuv420p", quality=None, macro_block_size=2,
            ffmpeg_log_level="error",
            output_params=["-preset", "veryfast", "-crf", "23", "-movflags", "+faststart"],
        )  # fmt: skip
        self._gen.send(None)

    def write(self, rgb: np.ndarray, bgr_scratch: np.ndarray) -> None:
        self._gen.send(rgb)

    def close(self) -> None:
        self._gen.close()


class _Cv2Vp9Sink(_Cv2Sink):
    FOURCC = "VP90"


_SINKS = {"h264": _FfmpegSink, "vp8": _Cv2Sink, "vp9": _Cv2Vp9Sink}


@contextmanager
def _without_tag_warning():
    """OpenCV's FFmpeg backend prints "tag 'VP80' is not supported ... WebM" on every
    open (harmless: it then writes the codec with WebM's own codec id); this drops that line
    from the C-level stderr and passes every other line through."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real stderr (captured): leave it
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), fd)
        try:
            yield
        finally:
            os.dup2(saved, fd)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode(errors="replace")
    kept = [ln for ln in text.splitlines(keepends=True) if "is not supported with codec" not in ln]
    if kept:
        sys.stderr.write("".join(kept))


@functools.cache
def encoder_works(name: str) -> bool:
    """Whether encoder `name` ("h264", "vp8", "vp9") writes a file of its codec on this machine
    (a two-frame test video, once per process)."""
    enc = ENCODERS[name]
    if name == "h264":
        import importlib.util

        if importlib.util.find_spec("imageio_ffmpeg") is None:
            return False
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"probe{enc.suffix}"
        try:
            sink = _SINKS[name](path, 10.0, (32, 32))
            frame = np.zeros((32, 32, 3), np.uint8)
            scratch = np.empty_like(frame)
            for v in (0, 200):
                frame[:] = v
                sink.write(frame, scratch)
            sink.close()
            return probe_video(path)["codec"] == enc.codec
        except Exception:  # any failure here means: this encoder cannot be used
            return False


def choose_encoder(prefer: str = "auto") -> Encoder:
    """The encoder to use: `prefer` ("h264", "vp8", "vp9") or, with "auto", the first
    that works of H.264 (the `video` extra) and VP8 (OpenCV).

    Raises:
        MissingExtra: nothing here can write a browser-playable video (or `prefer` "h264"
            without imageio-ffmpeg): names the `video` extra.
        ValueError: `prefer` is no encoder's name.
    """
    if prefer != "auto" and prefer not in ENCODERS:
        raise ValueError(f"video encoder must be auto, h264, vp8 or vp9, got {prefer!r}")
    for name in _PREFERENCE if prefer == "auto" else (prefer,):
        if encoder_works(name):
            return ENCODERS[name]
    raise MissingExtra("a browser-playable video (H.264 MP4 or VP8/VP9 WebM)", "video",
                       ["imageio_ffmpeg"])  # fmt: skip


class EpisodeVideo:
    """A browser-playable video of one episode: upscaled camera, top-down view, gauge.

    `add` has the signature of `vec_eval.FrameHook`; the file is opened on the first frame.
    The file's suffix is the encoder's (`path` ".mp4" becomes ".webm" for VP8/VP9:
    read `self.path` after construction). Every `stride`-th step is kept (at 20 Hz simulation,
    stride 2 plays in real time at 10 fps).

    Args:
        encoder: "auto" (H.264 where the `video` extra is installed, else VP8), "h264",
            "vp8" or "vp9" (`choose_encoder`; raises `MissingExtra` where none works).
    """

    GAUGE_H = 56

    def __init__(
        self, path: Path, label: str, scale: int = 3, stride: int = 2, encoder: str = "auto"
    ) -> None:
        self.encoder = choose_encoder(encoder)
        self.path = Path(path).with_suffix(self.encoder.suffix)
        self.label = label
        self.scale = scale
        self.stride = max(1, int(stride))
        self.fps = 20.0 / self.stride
        self.frames = 0
        self._steps = 0
        self._sink = None
        self._canvas: np.ndarray | None = None
        self._bgr: np.ndarray | None = None
        self._interventions = 0

    def add(
        self, env, image: np.ndarray, cmd: np.ndarray, info: dict, interventions: int = 0
    ) -> None:
        """Appends one frame (the camera image the policy saw, the executed command)."""
        self._steps += 1
        if (self._steps - 1) % self.stride:
            return
        h, w = image.shape[:2]
        ch, cw = h * self.scale, w * self.scale
        top = env.unwrapped.topdown()
        tw = round(top.shape[1] * ch / top.shape[0])
        if self._canvas is None:  # even sides: 4:2:0 chroma needs them
            H, W = ch + self.GAUGE_H, cw + tw
            self._canvas = np.zeros((H + H % 2, W + W % 2, 3), np.uint8)
            self._bgr = np.empty_like(self._canvas)
        canvas = self._canvas
        cv2.resize(image, (cw, ch), dst=canvas[:ch, :cw], interpolation=cv2.INTER_NEAREST)
        cv2.resize(top, (tw, ch), dst=canvas[:ch, cw : cw + tw])
        canvas[ch:] = 0
        self._interventions = interventions
        self._gauge(canvas[ch:], float(cmd[0]), float(info["expert_action"][0]), info)
        if self._sink is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            size = (canvas.shape[1], canvas.shape[0])
            self._sink = _SINKS[self.encoder.name](self.path, self.fps, size)
        self._sink.write(canvas, self._bgr)
        self.frames += 1

    def _gauge(self, strip: np.ndarray, steer: float, expert: float, info: dict) -> None:
        """Bar from the centre to the agent's steer (blue), expert's steer as a white tick."""
        w = strip.shape[1]
        cx, y0, y1, half = w // 2, 8, 24, w // 2 - 10
        cv2.rectangle(strip, (cx - half, y0), (cx + half, y1), (60, 60, 60), -1)
        x = cx + round(np.clip(steer, -1, 1) * half)
        cv2.rectangle(strip, (min(cx, x), y0), (max(cx, x), y1), (60, 140, 255), -1)
        xe = cx + round(np.clip(expert, -1, 1) * half)
        cv2.line(strip, (xe, y0 - 4), (xe, y1 + 4), (255, 255, 255), 2)
        cv2.line(strip, (cx, y0), (cx, y1), (180, 180, 180), 1)
        text = (
            f"{self.label}  t={float(info.get('sim_time_s', 0.0)):6.1f}s  "
            f"steer={steer:+.2f} expert={expert:+.2f}  "
            f"lat={float(info['lateral_error_m']):+.2f}m  "
            f"{float(info['progress_m']):6.0f}m  interventions={self._interventions}"
        )
        cv2.putText(strip, text, (8, 46), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (230, 230, 230), 1)

    def close(self) -> None:
        if self._sink is not None:
            self._sink.close()
            self._sink = None
