"""Reading bags into episodes: pairing, ordering, and bad bags named while good ones load."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from steering_agent.data import bagio
from steering_agent.data.dataset import load_episodes
from steering_agent.data.imageconv import rgb_to_image_fields
from steering_agent.data.recording import EpisodeBagWriter
from steering_agent.interfaces import topics

# 77 kB a frame: 30 frames fill two of rosbags' 1 MiB chunks, so a cut file keeps one.
W, H = 160, 120
INFO = {"width": W, "height": H, "fx": 80.0, "fy": 80.0, "cx": 80.0, "cy": 60.0}


def _frames(n, seed):
    return np.random.default_rng(seed).integers(0, 256, (n, H, W, 3), dtype=np.uint8)


def write_episode(path, images, t0=0.0):
    """Expert steers -i/100, executed +i/100: the reader must return the expert's."""
    with EpisodeBagWriter(path, W, H, INFO) as writer:
        for i, image in enumerate(images):
            writer.write_step(t0 + 0.05 * i, image, 3.0 + i, [i / 100, 0.5, 0], [-i / 100, 0.5, 0])


@pytest.fixture
def two_bags(tmp_path):
    images = [_frames(25, 0), _frames(30, 1)]
    for k, frames in enumerate(images):
        write_episode(tmp_path / f"ep{k}", frames, t0=100.0 * k)
    return tmp_path, images


def test_loads_every_bag_with_labels_speeds_and_stamps(two_bags):
    folder, images = two_bags
    report = load_episodes(folder)
    assert report.problems == []
    assert [e.name for e in report.episodes] == ["ep0", "ep1"]
    assert report.frames == 55
    for episode, frames in zip(report.episodes, images, strict=True):
        n = len(frames)
        assert episode.images.shape == (n, H, W, 3) and episode.images.dtype == np.uint8
        np.testing.assert_array_equal(episode.images, frames)
        np.testing.assert_allclose(episode.steer, -np.arange(n) / 100, atol=1e-6)
        np.testing.assert_allclose(episode.speed, 3.0 + np.arange(n))
        assert np.all(np.diff(episode.stamps) > 0)
    np.testing.assert_allclose(report.episodes[1].stamps[0], 100.0)


def test_truncated_bag_is_named_and_the_rest_loads_then_recovers(two_bags):
    folder, images = two_bags
    mcap = next((folder / "ep1").glob("*.mcap"))
    data = mcap.read_bytes()
    mcap.write_bytes(data[: int(len(data) * 0.6)])  # a writer killed mid-file
    (folder / "ep1" / "metadata.yaml").unlink()

    report = load_episodes(folder)
    assert [e.name for e in report.episodes] == ["ep0"]
    assert len(report.problems) == 1
    assert "ep1" in report.problems[0] and "recover_bag" in report.problems[0]

    kept = bagio.recover_bag(folder / "ep1")
    assert 0 < kept < 30 * 6
    assert (folder / "ep1" / "metadata.yaml").exists()
    report = load_episodes(folder)
    assert report.problems == []
    recovered = report.episodes[1]
    assert 0 < len(recovered) < 30
    np.testing.assert_array_equal(recovered.images, images[1][: len(recovered)])
    assert bagio.recover_bag(folder / "ep1") == kept  # a readable bag is left as it is


def test_bag_without_metadata_but_complete_mcap_loads(two_bags):
    folder, _ = two_bags
    (folder / "ep0" / "metadata.yaml").unlink()
    report = load_episodes(folder / "ep0")
    assert report.problems == [] and len(report.episodes[0]) == 25


def test_corrupt_file_is_named(two_bags):
    folder, _ = two_bags
    mcap = next((folder / "ep0").glob("*.mcap"))
    with mcap.open("r+b") as f:
        f.write(b"garbage!")
    report = load_episodes(folder)
    assert [e.name for e in report.episodes] == ["ep1"]
    assert "ep0" in report.problems[0] and "cannot be opened" in report.problems[0]
    with pytest.raises(ValueError, match="not an MCAP file"):
        bagio.recover_bag(folder / "ep0")


def _custom_bag(path, encoding="bgra8", with_label=True, skip_label=(), order=None):
    store = bagio.typestore()
    writer = bagio.open_writer(path)
    image_conn = writer.add_connection(topics.IMAGE, "sensor_msgs/msg/Image", typestore=store)
    label_conn = writer.add_connection(topics.EXPERT_CONTROL, topics.CONTROL_TYPE, typestore=store)
    frames = _frames(5, 2)
    for i in order or range(5):
        ns = 1_000_000_000 + i * 50_000_000
        fields = rgb_to_image_fields(frames[i], "bgra8")
        fields["encoding"] = encoding
        msg = bagio.image_msg(ns, fields, "cam")
        writer.write(image_conn, ns, store.serialize_cdr(msg, image_conn.msgtype))
        if with_label and i not in skip_label:
            label = bagio.control_msg(ns, [i / 10, 0.3, 0.0])
            writer.write(label_conn, ns, store.serialize_cdr(label, label_conn.msgtype))
    writer.close()
    return frames


def test_missing_topic_and_unknown_encoding_are_named(tmp_path):
    write_episode(tmp_path / "good", _frames(4, 3))
    _custom_bag(tmp_path / "nolabel", with_label=False)
    _custom_bag(tmp_path / "yuv", encoding="yuv422")
    report = load_episodes(tmp_path)
    assert [e.name for e in report.episodes] == ["good"]
    problems = dict(p.split(": ", 1) for p in report.problems)
    assert (
        "missing topic(s) /steering_agent/expert_control_cmd" in problems[str(tmp_path / "nolabel")]
    )
    assert "unknown image encoding 'yuv422'" in problems[str(tmp_path / "yuv")]


def test_frames_without_label_dropped_and_time_ordered(tmp_path):
    frames = _custom_bag(tmp_path / "b", skip_label={2}, order=[0, 3, 1, 2, 4])
    report = load_episodes([tmp_path / "b"])
    episode = report.episodes[0]
    np.testing.assert_allclose(episode.stamps, 1.0 + np.array([0, 1, 3, 4]) * 0.05)
    np.testing.assert_array_equal(episode.images, frames[[0, 1, 3, 4]])
    np.testing.assert_allclose(episode.steer, [0.0, 0.1, 0.3, 0.4], atol=1e-6)
    assert np.isnan(episode.speed).all()  # no speedometer topic in this bag


def test_label_topic_can_be_the_executed_control(two_bags):
    folder, _ = two_bags
    report = load_episodes(folder / "ep0", label_topic=topics.CONTROL)
    np.testing.assert_allclose(report.episodes[0].steer, np.arange(25) / 100, atol=1e-6)


def test_empty_folder_and_missing_path(tmp_path):
    assert "no bags found" in load_episodes(tmp_path).problems[0]
    report = load_episodes([tmp_path / "nope"])
    assert report.problems == [f"{tmp_path / 'nope'}: does not exist"]


def test_bare_mcap_file(two_bags, tmp_path_factory):
    folder, _ = two_bags
    other = tmp_path_factory.mktemp("bare")
    shutil.copy(next((folder / "ep0").glob("*.mcap")), other / "x.mcap")
    report = load_episodes(other)
    assert report.problems == [] and len(report.episodes[0]) == 25


def test_find_bags_follows_linked_bags_and_link_datasets_merges_indexes(tmp_path):
    """Two recordings linked into one folder (tools/link_datasets.py) are one data set."""
    import importlib.util

    from steering_agent.data.dataset import find_bags
    from steering_agent.data.episode_bags import read_episode_index, write_episode_index

    spec = importlib.util.spec_from_file_location(
        "link_datasets", Path(__file__).resolve().parents[1] / "tools" / "link_datasets.py"
    )
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    sources = []
    for name, seeds in (("a", [1, 2]), ("b", [7])):
        src = tmp_path / name
        for s in seeds:
            (src / f"episode_seed{s}").mkdir(parents=True)
            (src / f"episode_seed{s}" / "metadata.yaml").write_text("x")
        write_episode_index(src, [{"bag": f"episode_seed{s}", "seed": s} for s in seeds])
        sources.append(src)
    out = tmp_path / "merged"
    entries = tool.link(out, sources)
    assert [e["seed"] for e in entries] == [1, 2, 7]
    found = find_bags(out)
    assert [p.name for p in found] == [e["bag"] for e in entries]
    assert all(p.is_symlink() and (p / "metadata.yaml").is_file() for p in found)
    assert [e["bag"] for e in read_episode_index(out)] == [p.name for p in found]
    with pytest.raises(SystemExit, match="not empty"):
        tool.link(out, sources)
