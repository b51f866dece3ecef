"""Training frames made once: each recorded episode preprocessed to the network's input
(through the calibrated view of the camera that recorded it), its labels turned into the
canonical car's steering, and kept in a cache folder so later runs map them from disk.

Per training frame only the network input stays resident (3 x 66 x 200 uint8 = 39.6 KB,
and the page cache shares it between processes training on the same data), not the raw
frame (a 320x240 bgra8 frame is 307 KB, 800x600 1.9 MB).

The cache folder (`--cache DIR`; default `$STEERING_AGENT_CACHE`, else
`$XDG_CACHE_HOME/steering_agent/frames`, else `~/.cache/steering_agent/frames`) holds one
`<key>.npy` (frames, uint8 [N, 3, h, w]) and `<key>.npz` (steer, speed) per episode. The
key hashes what the frames depend on: the bag (path, size, modification time), the
label topic, the camera and vehicle specs, the preprocessing settings and
`CACHE_VERSION` (raised whenever the way frames are made changes). A changed input gets
a new key, so a stale entry is never read; old entries can be deleted at any time.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from steering_agent.common.files import check_writable_dir
from steering_agent.data.dataset import BagProblem, _index_specs, _read_episode, find_bags
from steering_agent.data.sequences import PreparedEpisode
from steering_agent.interfaces import topics
from steering_agent.policy.calibration import (
    CameraCalibration,
    CameraSpec,
    GroundMemory,
    canonical_camera,
    car_motion,
)
from steering_agent.policy.control import VehicleSpec
from steering_agent.policy.preprocess import PreprocessConfig, preprocess_frames, to_color_space

CACHE_VERSION = 2  # 2: the ground memory


def default_cache_dir() -> Path:
    """Where prepared frames are cached unless `--cache` says otherwise (module doc)."""
    if env := os.environ.get("STEERING_AGENT_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "steering_agent" / "frames"


def calibrated_frames(
    images: np.ndarray,
    camera: dict | None,
    cfg: PreprocessConfig,
    speed: np.ndarray | None = None,
    stamps: np.ndarray | None = None,
    steer: np.ndarray | None = None,
    vehicle: dict | None = None,
    max_gap_s: float = 0.5,
) -> np.ndarray:
    """RGB frames [N, H, W, 3] of `camera` (a camera spec dict; None: the canonical
    camera) as network inputs uint8 [N, 3, h, w], through the calibrated view exactly as
    the policy makes them (`BatchedSteeringPolicy`).

    With the episode's `speed` (m/s), `stamps` (s) and `steer` (the commands, in
    `vehicle`'s units), ground the camera misses is filled from the frames before as the
    policy fills it (`calibration.GroundMemory`), the motion from each frame's speed and
    the command before it; a gap over `max_gap_s`, time going back or an unknown speed
    starts it afresh, as the policy's reset does. Without them: the calibration alone."""
    n = len(images)
    canon, first_row = canonical_camera(cfg.width, cfg.height, cfg.crop_top, cfg.crop_bottom)
    spec = None
    if camera is not None:
        h, w = images.shape[1:3]
        spec = CameraSpec.from_dict({**canon.to_dict(), **camera, "width": w, "height": h})
    if spec is None or spec.same_mount_and_view(canon):
        return preprocess_frames(images, cfg)
    calib = CameraCalibration(spec, canon, cfg.width, cfg.height, first_row)
    memory = None
    if speed is not None and stamps is not None and steer is not None:
        memory = GroundMemory(calib, first_row)
        memory = memory if memory.active else None
    car = VehicleSpec.from_dict(vehicle) if vehicle is not None else VehicleSpec()
    out = np.empty((n, cfg.height, cfg.width, 3), np.uint8)  # NHWC, as the policy fills it
    for i in range(n):
        view = calib.view(images[i])  # the policy's path
        if memory is not None:
            dt = float(stamps[i] - stamps[i - 1]) if i else math.nan
            if not 0.0 <= dt <= max_gap_s:  # the first frame, or a gap: start afresh
                memory.reset()
                ds = dpsi = math.nan
            else:
                ds, dpsi = car_motion(float(speed[i]), dt, float(steer[i - 1]), car)
            memory.fill(0, view, ds, dpsi)
        to_color_space(view, cfg.color, out[i])
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def canonical_steer(steer: np.ndarray, vehicle: dict | None) -> np.ndarray:
    """Labels in `vehicle`'s steering units as the canonical car's (same path curvature)."""
    steer = np.asarray(steer, np.float32)
    if vehicle is None:
        return steer
    source, target = VehicleSpec.from_dict(vehicle), VehicleSpec()
    if source == target:
        return steer
    curvature = np.tan(steer * np.radians(source.max_steer_deg)) / source.wheelbase_m
    angle = np.arctan(curvature * target.wheelbase_m) / np.radians(target.max_steer_deg)
    return np.clip(angle, -1.0, 1.0).astype(np.float32)


def _key(bag: Path, label_topic: str, specs: dict, cfg: PreprocessConfig) -> str:
    files = sorted(bag.rglob("*")) if bag.is_dir() else [bag]
    stat = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.is_file()]
    doc = {
        "version": CACHE_VERSION,
        "bag": str(bag.resolve()),
        "files": stat,
        "label_topic": label_topic,
        "specs": specs,
        "preprocess": cfg.to_dict(),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:24]


def _load(base: Path, name: str) -> PreparedEpisode | None:
    try:
        frames = np.load(base.with_suffix(".npy"), mmap_mode="r")
        with np.load(base.with_suffix(".npz")) as z:
            steer, speed = z["steer"], z["speed"]
    except (OSError, ValueError, KeyError, EOFError):
        return None  # missing or half-written: made again
    if len(frames) != len(steer):
        return None
    return PreparedEpisode(name, frames, steer, speed)


def _save(base: Path, ep: PreparedEpisode) -> None:
    """Write atomically: a crash leaves no entry that loads."""
    tmp = base.with_name(f"{base.name}_tmp{os.getpid()}")  # no dot: with_suffix keeps it
    np.save(tmp.with_suffix(".npy"), ep.frames)
    np.savez(tmp.with_suffix(".npz"), steer=ep.steer, speed=ep.speed)
    os.replace(tmp.with_suffix(".npz"), base.with_suffix(".npz"))
    os.replace(tmp.with_suffix(".npy"), base.with_suffix(".npy"))


def prepare_episode(ep, cfg: PreprocessConfig) -> PreparedEpisode:
    """One loaded `Episode` as network inputs and canonical-car labels."""
    return PreparedEpisode(
        ep.name,
        calibrated_frames(
            ep.images,
            getattr(ep, "camera", None),
            cfg,
            ep.speed,
            ep.stamps,
            ep.steer,
            getattr(ep, "vehicle", None),
        ),
        canonical_steer(ep.steer, getattr(ep, "vehicle", None)),
        np.asarray(ep.speed, dtype=np.float32),
    )


def prepared_episodes(
    data: str | Path | Iterable[str | Path],
    cfg: PreprocessConfig,
    label_topic: str = topics.EXPERT_CONTROL,
    cache_dir: str | Path | None = None,
    problems: list[str] | None = None,
) -> Iterator[PreparedEpisode]:
    """The episodes of the bags under `data`, prepared (module doc), one at a time:
    from the cache where it holds them, else read, prepared and (with `cache_dir`)
    cached. A bad bag is one line in `problems` (and on stderr) and is skipped.

    Raises:
        UsageError: `cache_dir` cannot be written.
    """
    cache = None if cache_dir is None else Path(cache_dir)
    if cache is not None:
        check_writable_dir(cache, "--cache")
        cache.mkdir(parents=True, exist_ok=True)
    index: dict = {}
    for bag in find_bags(data):
        specs = _index_specs(bag, index) if bag.exists() else {}
        camera, vehicle = specs.get("camera"), specs.get("vehicle")
        base = None
        if cache is not None and bag.exists():
            base = cache / _key(bag, label_topic, specs, cfg)
            if (hit := _load(base, bag.name)) is not None:
                yield hit
                continue
        try:
            ep = _read_episode(bag, label_topic)
        except BagProblem as err:
            if problems is not None:
                problems.append(f"{bag}: {err}")
            print(f"warning: {bag}: {err}", file=sys.stderr)
            continue
        ep.camera, ep.vehicle = camera, vehicle
        prepared = prepare_episode(ep, cfg)
        del ep
        if base is not None:
            _save(base, prepared)
            prepared = _load(base, prepared.name) or prepared
        yield prepared
