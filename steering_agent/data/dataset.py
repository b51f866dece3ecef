"""Read recorded bags into time-ordered training episodes.

`load_episodes(folder_or_paths)` opens every bag (a rosbag2 directory, or a bare .mcap),
checks it, and turns the good ones into `Episode`s: RGB frames in one preallocated
uint8 array per episode, the expert's steering label paired to each frame by header
stamp, and the speed last reported at or before the frame. A bad bag (truncated,
corrupt, missing a topic, unknown image encoding) becomes one line in
`DatasetReport.problems`, naming the file and the problem, and loading goes on.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from steering_agent.data import bagio
from steering_agent.data.imageconv import image_to_rgb
from steering_agent.interfaces import topics
from steering_agent.interfaces.stamps import stamp_to_ns


@dataclass
class Episode:
    """One recorded drive, time-ordered; arrays share their first dimension N."""

    name: str
    images: np.ndarray  # uint8 [N, H, W, 3] RGB
    steer: np.ndarray  # float32 [N], the expert's label
    speed: np.ndarray  # float32 [N], m/s (NaN before the first speedometer message)
    stamps: np.ndarray  # float64 [N], seconds (image header stamps)
    camera: dict | None = None  # camera spec (intrinsics + mount) from the folder's index
    vehicle: dict | None = None  # vehicle spec (wheelbase_m, max_steer_deg) of the labels

    def __len__(self) -> int:
        return len(self.stamps)


@dataclass
class DatasetReport:
    """The episodes that loaded and one line per bag (or part of one) that did not."""

    episodes: list[Episode] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return sum(len(e) for e in self.episodes)


class BagProblem(Exception):
    """A bag that cannot become an episode; the message says why and what to do."""


def find_bags(folder_or_paths: str | Path | Iterable[str | Path]) -> list[Path]:
    """Bag paths under a folder (directories holding metadata.yaml or .mcap, and bare
    .mcap files outside such directories), or the given paths as they are; sorted."""
    if isinstance(folder_or_paths, (str, Path)):
        root = Path(folder_or_paths)
        if not root.is_dir() or (root / "metadata.yaml").exists() or any(root.glob("*.mcap")):
            return [root]
        dirs: set[Path] = set()
        # followlinks: a folder may link bags of other recordings in (tools/link_datasets.py)
        for here, _, names in os.walk(root, followlinks=True):
            here_path = Path(here)
            if here_path != root and any(
                n == "metadata.yaml" or n.endswith(".mcap") for n in names
            ):
                dirs.add(here_path)
        files = sorted(root.glob("*.mcap"))
        return sorted(dirs) + files
    return [Path(p) for p in folder_or_paths]


def _open_reader(bag: Path):
    from rosbags.rosbag2 import Reader

    if not bag.exists():
        raise BagProblem("does not exist")
    target = bag
    if bag.is_dir() and not (bag / "metadata.yaml").exists():
        files = bagio.mcap_files(bag)
        if not files:
            raise BagProblem("no metadata.yaml and no .mcap file: not a rosbag2 bag")
        target = files[0]  # an unfinished recording: read the storage file directly
    try:
        reader = Reader(target)
        reader.open()
    except Exception as err:
        raise BagProblem(
            f"cannot be opened ({err}); if its recorder was killed, "
            f"`steering_agent.data.bagio.recover_bag('{bag}')` keeps the complete chunks"
        ) from None
    return reader


def _read_episode(bag: Path, label_topic: str) -> Episode:
    """Read one bag; raise BagProblem naming what is wrong."""
    store = bagio.typestore()
    reader = _open_reader(bag)
    try:
        present = reader.topics
        needed = (topics.IMAGE, label_topic)
        if missing := [t for t in needed if t not in present or not present[t].msgcount]:
            has = ", ".join(sorted(t for t, info in present.items() if info.msgcount))
            raise BagProblem(f"missing topic(s) {', '.join(missing)} (has messages on: {has})")
        wanted = (topics.IMAGE, label_topic, topics.SPEEDOMETER)
        conns = [c for c in reader.connections if c.topic in wanted]
        capacity = present[topics.IMAGE].msgcount
        images = stamps = None
        labels: dict[int, float] = {}
        speed_log: list[tuple[int, float]] = []
        image_log: list[int] = []
        count = 0
        for conn, log_ns, raw in reader.messages(connections=conns):
            msg = store.deserialize_cdr(raw, conn.msgtype)
            if conn.topic == topics.SPEEDOMETER:
                speed_log.append((log_ns, float(msg.data)))
            elif conn.topic == label_topic:
                labels[stamp_to_ns(msg.header.stamp)] = float(msg.steer)
            else:
                if images is None:
                    images = np.empty((capacity, int(msg.height), int(msg.width), 3), np.uint8)
                    stamps = np.empty(capacity, np.int64)
                if count == capacity:
                    raise BagProblem(f"more images than the {capacity} its index lists")
                try:
                    image_to_rgb(msg, out=images[count])
                except ValueError as err:
                    raise BagProblem(f"image {count}: {err}") from None
                stamps[count] = stamp_to_ns(msg.header.stamp)
                image_log.append(log_ns)
                count += 1
    except BagProblem:
        raise
    except Exception as err:  # a chunk that fails to decompress or deserialize
        raise BagProblem(f"corrupt data ({type(err).__name__}: {err})") from None
    finally:
        reader.close()
    if not count:
        raise BagProblem(f"no messages on {topics.IMAGE}")
    speeds = _speed_at(np.asarray(image_log, np.int64), speed_log)
    return _pair(bag, images[:count], stamps[:count], speeds, labels)


def _speed_at(times_ns: np.ndarray, speed_log: list[tuple[int, float]]) -> np.ndarray:
    """The speed last logged at or before each time (Float32 has no header stamp)."""
    if not speed_log:
        return np.full(len(times_ns), np.nan, np.float32)
    log_ns = np.fromiter((t for t, _ in speed_log), np.int64, len(speed_log))
    log_v = np.fromiter((v for _, v in speed_log), np.float32, len(speed_log))
    order = np.argsort(log_ns, kind="stable")
    idx = np.searchsorted(log_ns[order], times_ns, side="right") - 1
    values = log_v[order][np.maximum(idx, 0)]
    values[idx < 0] = np.nan
    return values


def _pair(bag: Path, images, stamps_ns, speeds, labels: dict[int, float]) -> Episode:
    """Keep frames that have a label with the same header stamp, in time order."""
    keep = np.fromiter((int(s) in labels for s in stamps_ns), bool, len(stamps_ns))
    if not keep.any():
        raise BagProblem("no image has an expert label with the same header stamp")
    order = np.argsort(stamps_ns, kind="stable")
    order = order[keep[order]]
    if np.all(np.diff(order) > 0):
        # Increasing sources: compact in place, frame by frame, no second full array.
        for dst, src in enumerate(order):
            if dst != src:
                images[dst] = images[src]
        images = images[: len(order)]
    else:
        images = images[order]  # frames out of time order in the bag (rare): one copy
    stamps_ns = stamps_ns[order]
    steer = np.fromiter((labels[int(s)] for s in stamps_ns), np.float32, len(stamps_ns))
    return Episode(bag.name, images, steer, speeds[order], stamps_ns / 1e9)


def _index_specs(bag: Path, cache: dict) -> dict:
    """The index.json entry of `bag` in its folder (camera and vehicle specs), or {}."""
    import json

    folder = bag.parent
    if folder not in cache:
        entries = {}
        try:
            index = json.loads((folder / "index.json").read_text("utf8"))
            for e in index.get("episodes", []):
                if isinstance(e, dict) and isinstance(e.get("bag"), str):
                    entries[e["bag"]] = e
        except (OSError, ValueError, AttributeError):
            pass  # no index (bags copied on their own): the canonical camera and car
        cache[folder] = entries
    entry = cache[folder].get(bag.name, {})
    out = {}
    for key in ("camera", "vehicle"):
        if isinstance(entry.get(key), dict):
            out[key] = dict(entry[key])
    return out


def iter_episodes(
    folder_or_paths: str | Path | Iterable[str | Path],
    label_topic: str = topics.EXPERT_CONTROL,
    report: DatasetReport | None = None,
    warn: bool = True,
):
    """Like `load_episodes`, one episode at a time (only one bag's raw frames are in
    memory at once); each bad bag's line goes to `report.problems` (when given) and,
    with `warn`, to stderr as it is met. Episodes carry the `camera` and `vehicle` specs
    their folder's index.json lists for them (None: the canonical camera and car)."""
    import sys

    def problem(text: str) -> None:
        if report is not None:
            report.problems.append(text)
        if warn:
            print(f"warning: {text}", file=sys.stderr)

    bags = find_bags(folder_or_paths)
    if not bags:
        problem(f"{folder_or_paths}: no bags found (metadata.yaml or *.mcap)")
    specs: dict = {}
    for bag in bags:
        try:
            ep = _read_episode(bag, label_topic)
        except BagProblem as err:
            problem(f"{bag}: {err}")
            continue
        for key, value in _index_specs(bag, specs).items():
            setattr(ep, key, value)
        yield ep


def load_episodes(
    folder_or_paths: str | Path | Iterable[str | Path],
    label_topic: str = topics.EXPERT_CONTROL,
) -> DatasetReport:
    """Load every bag of a folder (or the given bag paths) as episodes.

    Args:
        folder_or_paths: a folder searched for bags, one bag, or a list of bags.
        label_topic: the CarlaEgoVehicleControl topic whose `steer` is the label
            (topics.CONTROL for drives without an expert, e.g. a human in CARLA).

    Returns:
        DatasetReport: the good episodes, and per bad bag "<path>: <problem>".
    """
    report = DatasetReport()
    report.episodes = list(iter_episodes(folder_or_paths, label_topic, report, warn=False))
    return report
