"""Report files: the Markdown table, the PNG plots, the page and the video of one episode."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from sim.seeds import eval_seeds
from steering_agent.evaluation import report, video_probe
from steering_agent.evaluation.evaluate import PolicyRun, results_json
from steering_agent.evaluation.metrics import aggregate
from steering_agent.evaluation.vec_eval import EvalConfig, ExpertPolicy, run_episodes


@pytest.fixture(scope="module")
def expert_run(tmp_path_factory):
    """Two short expert episodes, the first filmed."""
    cfg = EvalConfig(route_length_m=15.0, num_envs=2)
    video = report.EpisodeVideo(tmp_path_factory.mktemp("video") / "ep.mp4", "expert")
    traces = run_episodes(ExpertPolicy(), eval_seeds(2), cfg, frame_hook=video.add)
    video.close()
    run = PolicyRun("expert", "expert", traces, wall_s=1.0, summary=aggregate(traces))
    return run, cfg, video


def test_markdown_table_has_one_row_per_policy(expert_run):
    run, cfg, _ = expert_run
    other = PolicyRun("cnn", "cnn.pt", run.traces, 1.0, summary=dict(run.summary))
    doc = results_json([run, other], eval_seeds(2), cfg)
    lines = report.markdown_table(doc).splitlines()
    assert lines[0].startswith("| policy | autonomy % |")
    assert lines[2].startswith("| expert | 100.0 | 0 |")
    assert lines[3].startswith("| cnn |")
    assert "2 held-out seeds (1000000..1000001)" in lines[-1]


def test_write_report_files_hold_the_results(tmp_path, expert_run):
    run, cfg, video = expert_run
    doc = results_json([run], eval_seeds(2), cfg)
    paths = report.write_report(tmp_path, doc, [run], video=video)
    names = [p.name for p in paths]
    pngs = ["steering.png", "lateral_error.png", "lateral_hist.png"]
    assert names == ["results.json", "results.md", *pngs, video.path.name, "index.html"], names
    # the page links the plots and the video (copied in: it was written elsewhere)
    page = (tmp_path / "index.html").read_text()
    for name in ["results.json", *pngs, f"videos/{video.path.name}"]:
        assert f'href="{name}"' in page, name
    assert (tmp_path / "videos" / video.path.name).is_file()
    assert json.loads((tmp_path / "results.json").read_text()) == doc
    assert (tmp_path / "results.md").read_text() == report.markdown_table(doc) + "\n"
    for name in pngs:  # each plot is a readable image with something drawn on it
        png = cv2.imread(str(tmp_path / name))
        assert png is not None and png.shape[0] > 100 and png.std() > 1.0, name


def test_video_has_one_frame_per_step_and_the_composed_layout(expert_run):
    run, _, video = expert_run
    cap = cv2.VideoCapture(str(video.path))
    frames = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, frame = cap.read()
    cap.release()
    assert ok and frames == video.frames == (run.traces[0].steps + 1) // video.stride
    # camera 200x66 upscaled 3x, the top-down inset beside it, the gauge strip below
    assert frame.shape[0] == 66 * 3 + report.EpisodeVideo.GAUGE_H
    assert frame.shape[1] > 200 * 3
    assert np.any(frame[66 * 3 :] > 0)  # the gauge strip is drawn
    assert video_probe.probe_video(video.path)["browser_playable"]


def test_versions_record_machine_and_libraries():
    v = report.versions()
    for key in ("python", "numpy", "opencv", "torch", "onnxruntime", "cpu", "cores"):
        assert v[key], key
