"""The report page (index.html) and its browser-playable videos."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlparse

import cv2
import numpy as np
import pytest

from sim.seeds import eval_seeds
from steering_agent.common.extras import MissingExtra
from steering_agent.evaluation import html_report, report, svg_charts, video
from steering_agent.evaluation.evaluate import PolicyRun, results_json
from steering_agent.evaluation.metrics import EpisodeTrace, aggregate
from steering_agent.evaluation.vec_eval import EvalConfig, ExpertPolicy, run_episodes

REPO = Path(__file__).resolve().parents[1]
SCORES = ("driving_score", "route_completion_pct", "lane_departures_per_km", "collisions",
          "autonomy_pct", "mean_abs_lateral_m", "p95_abs_lateral_m",
          "lat_accel_exceed_per_km", "lat_jerk_exceed_per_km")  # fmt: skip
_VOID = {"meta", "link", "br", "hr", "img", "input", "source", "col", "wbr", "area", "base"}


class _Page(HTMLParser):
    """Links, tables (suite -> row headers) and tag-nesting errors of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.tables: dict[str, list[str]] = {}
        self.errors: list[str] = []
        self.videos = 0
        self._stack: list[str] = []
        self._table: str | None = None
        self._row_th = False
        self._text = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.links += [a[k] for k in ("src", "href") if a.get(k) is not None]
        if tag == "video":
            self.videos += 1
        if tag == "table" and "data-suite" in a:
            self._table = a["data-suite"]
            self.tables[self._table] = []
        if tag == "th" and a.get("scope") == "row":
            self._row_th, self._text = True, ""
        if tag not in _VOID:
            self._stack.append(tag)

    def handle_startendtag(self, tag, attrs):  # <line .../> inside SVG
        a = dict(attrs)
        self.links += [a[k] for k in ("src", "href") if a.get(k) is not None]

    def handle_endtag(self, tag):
        if tag in _VOID:
            return
        if not self._stack or self._stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self._stack[-1] if self._stack else None}>")
            if tag in self._stack:
                while self._stack.pop() != tag:
                    pass
            return
        self._stack.pop()
        if tag == "th" and self._row_th and self._table is not None:
            self.tables[self._table].append(self._text)
            self._row_th = False
        if tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._row_th:
            self._text += data

    def close(self):
        super().close()
        if self._stack:
            self.errors.append(f"unclosed: {self._stack}")


def parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def assert_links_exist(index: Path, page: _Page) -> None:
    for link in page.links:
        if link.startswith("#"):
            assert link[1:] in index.read_text(), link
            continue
        url = urlparse(link)
        assert not url.scheme and not url.netloc and not link.startswith("/"), link
        target = (index.parent / url.path).resolve()
        assert index.parent.resolve() in target.parents and target.is_file(), link


def fake_trace(seed: int, amplitude: float, n: int = 300) -> EpisodeTrace:
    t = EpisodeTrace(seed=seed, route_length_m=150.0, dt_s=0.05)
    for i in range(n):
        s = amplitude * np.sin(i / 20.0)
        t.add(0.8 * s, s, 0.9 * s, 0.5 * i)
    t.mark_intervention()
    return t


def suites_doc() -> dict:
    """The designed layout: suites -> policies -> scores with _ci95, plus penalties."""
    rng = np.random.default_rng(3)
    penalties = {"coefficients": {"collision_vehicle": 0.6, "lane_departure": 0.9},
                 "lat_accel_limit_mps2": 3.0}  # fmt: skip
    doc = {"suites": {}, "penalties": penalties}
    for suite in ("lane", "memory"):
        pols = {}
        for name in ("cnn", "cnn_lstm", "expert"):
            row = {}
            for key in SCORES:
                row[key] = float(rng.uniform(1, 90))
                row[f"{key}_ci95"] = float(rng.uniform(0.1, 5))
            pols[name] = row
        doc["suites"][suite] = {"policies": pols}
    return doc


@pytest.fixture(scope="module")
def expert_report(tmp_path_factory):
    """Two short expert episodes, the first filmed, written by `write_report`."""
    out = tmp_path_factory.mktemp("report")
    cfg = EvalConfig(route_length_m=15.0, num_envs=2)
    vid = report.EpisodeVideo(out / "episode_expert.mp4", "expert")
    traces = run_episodes(ExpertPolicy(), eval_seeds(2), cfg, frame_hook=vid.add)
    vid.close()
    run = PolicyRun("expert", "expert", traces, wall_s=1.0, summary=aggregate(traces))
    doc = results_json([run], eval_seeds(2), cfg)
    paths = report.write_report(out, doc, [run], video=vid)
    return out, paths, vid


def test_report_page_references_only_files_that_exist(expert_report):
    out, paths, vid = expert_report
    index = out / "index.html"
    assert paths[-1] == index
    page = parse(index)
    assert not page.errors, page.errors
    assert page.videos == 1 and vid.path.name in page.links  # relative: just the name
    assert "results.json" in page.links
    assert_links_exist(index, page)
    assert page.tables == {"lane": ["expert"]}  # today's layout: one suite, its policies
    text = index.read_text()
    assert "Lateral error over distance" in text and "Steering against the expert" in text


def test_the_video_is_browser_playable(expert_report):
    _, _, vid = expert_report
    info = video.probe_video(vid.path)
    assert info["codec"] in video.BROWSER_CODECS and info["browser_playable"], info
    assert info["codec"] == vid.encoder.codec
    if info["container"] == "mp4":
        assert info["faststart"] and info["profile"] in ("baseline", "main", "high"), info
    cap = cv2.VideoCapture(str(vid.path))
    ok, frame = cap.read()
    cap.release()
    assert ok and (frame.shape[1], frame.shape[0]) == (info["width"], info["height"])
    assert frame.shape[0] >= 66 * 3 + video.EpisodeVideo.GAUGE_H


def test_the_probe_tells_mpeg4_part2_from_browser_codecs(tmp_path):
    path = tmp_path / "old.mp4"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for v in range(0, 250, 50):
        w.write(np.full((48, 64, 3), v, np.uint8))
    w.release()
    info = video.probe_video(path)
    assert info["codec"] == "mpeg4" and not info["browser_playable"], info
    assert (info["width"], info["height"]) == (64, 48)
    (tmp_path / "x.bin").write_bytes(b"not a video at all")
    with pytest.raises(ValueError, match="neither MP4"):
        video.probe_video(tmp_path / "x.bin")


class _Env:
    """Stands in for the env in `EpisodeVideo.add`: just a top-down view."""

    def __init__(self) -> None:
        self.unwrapped = self
        self.k = 0

    def topdown(self) -> np.ndarray:
        img = np.zeros((160, 160, 3), np.uint8)
        img[:, (self.k * 3) % 150 : (self.k * 3) % 150 + 10] = (0, 200, 0)
        return img


@pytest.mark.parametrize("name", ["h264", "vp8", "vp9"])
def test_each_working_encoder_writes_its_browser_codec(tmp_path, name):
    if not video.encoder_works(name):
        pytest.skip(f"encoder {name} not available here")
    vid = video.EpisodeVideo(tmp_path / "ep.mp4", "test", stride=1, encoder=name)
    assert vid.path.suffix == video.ENCODERS[name].suffix
    env, image = _Env(), np.zeros((66, 200, 3), np.uint8)
    for k in range(6):
        env.k = k
        image[:] = (k * 40, 100, 200 - k * 30)
        info = {"expert_action": [0.1], "lateral_error_m": 0.2, "progress_m": float(k)}
        vid.add(env, image, np.array([0.3 * (k - 3) / 3]), info)
    vid.close()
    info = video.probe_video(vid.path)
    assert info["codec"] == name and info["browser_playable"], info
    cap = cv2.VideoCapture(str(vid.path))
    frames = []
    while (got := cap.read())[0]:
        frames.append(got[1])
    cap.release()
    assert len(frames) == vid.frames == 6
    # the camera view holds the image (BGR on reading back), the gauge strip is drawn
    b, g, r = frames[-1][40, 40].astype(int)
    assert abs(r - 200) < 25 and abs(g - 100) < 25 and abs(b - 50) < 25, (b, g, r)
    assert frames[-1][66 * 3 :].max() > 100
    if name == "h264":  # cross-check with the ffmpeg that imageio-ffmpeg ships
        import imageio_ffmpeg

        out = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i",
                              str(vid.path)], capture_output=True, text=True)  # fmt: skip
        assert re.search(r"Video: h264 \(High\).*yuv420p", out.stderr), out.stderr


def test_without_any_encoder_the_error_names_the_video_extra(monkeypatch, tmp_path):
    monkeypatch.setattr(video, "encoder_works", lambda name: False)
    with pytest.raises(MissingExtra, match=r"steering_agent\[video\]"):
        video.EpisodeVideo(tmp_path / "ep.mp4", "x")
    with pytest.raises(ValueError, match="h264, vp8 or vp9"):
        video.choose_encoder("mpeg4")


def test_suites_layout_tables_charts_and_penalties(tmp_path):
    doc = suites_doc()
    traces = {"memory": {"cnn": [fake_trace(1, 0.2), fake_trace(2, 0.6), fake_trace(3, 0.4)],
                         "expert": [fake_trace(4, 0.1)]}}  # fmt: skip
    index = html_report.write_html(tmp_path, doc, traces=traces)
    page = parse(index)
    assert not page.errors, page.errors
    assert page.tables == {s: ["cnn", "cnn_lstm", "expert"] for s in ("lane", "memory")}
    assert_links_exist(index, page)
    text = index.read_text()
    row = doc["suites"]["memory"]["policies"]["cnn_lstm"]
    assert f"{row['driving_score']:.1f} &plusmn; {row['driving_score_ci95']:.1f}" in text
    assert "driving score penalties" in text.lower()
    assert '<th colspan="2">coefficients</th>' in text
    assert "<td>lane_departure</td><td>0.9</td>" in text
    assert "<td>lat_accel_limit_mps2</td><td>3.0</td>" in text
    svgs = re.findall(r"<svg.*?</svg>", text, flags=re.S)
    # per suite a bar chart; for memory a lateral chart and two steering charts
    assert len(svgs) == 2 + 1 + 2
    for svg in svgs:  # each chart is well-formed XML with every point inside its box
        root = ET.fromstring(svg)
        w, h = float(root.get("width")), float(root.get("height"))
        for line in root.iter("{http://www.w3.org/2000/svg}polyline"):
            pts = np.array([p.split(",") for p in line.get("points").split()], float)
            assert (pts >= -0.5).all() and (pts[:, 0] <= w).all() and (pts[:, 1] <= h).all()
    bars = ET.fromstring(svgs[0])
    errorbars = [p for p in bars.iter("{http://www.w3.org/2000/svg}path")]
    assert len(errorbars) == 3  # one per policy: every score has its interval
    # the representative episode of cnn is the median one (seed 3 of amplitudes .2 .6 .4)
    assert "cnn: steering, seed 3 (3 episodes)" in text


def test_cells_layout_and_videos_outside_the_folder(tmp_path):
    src = tmp_path / "elsewhere" / "clip.webm"
    src.parent.mkdir()
    src.write_bytes(b"\x1a\x45\xdf\xa3")  # a stub: only copied and linked
    doc = {
        "suite": "cameras",
        "policies": {
            "cnn": {
                "canonical": {"autonomy_pct": 98.0, "interventions": 1, "mean_abs_lateral_m": 0.1},
                "grid00": {"autonomy_pct": 71.5, "interventions": 9, "mean_abs_lateral_m": 0.4},
            }
        },
    }
    out = tmp_path / "out"
    index = html_report.write_html(
        out, doc, videos={"cameras": [src, tmp_path / "missing.mp4"]}
    )  # fmt: skip
    page = parse(index)
    assert page.tables == {"cameras": ["cnn / canonical", "cnn / grid00"]}
    assert page.videos == 1 and "videos/clip.webm" in page.links
    assert (out / "videos" / "clip.webm").read_bytes() == src.read_bytes()
    assert "missing.mp4" not in index.read_text()
    assert_links_exist(index, page)


def test_the_page_needs_no_matplotlib(tmp_path):
    code = (
        "import sys\nsys.modules['matplotlib'] = None\n"
        "from steering_agent.evaluation import report, html_report\n"
        "from steering_agent.evaluation.metrics import EpisodeTrace\n"
        "t = EpisodeTrace(seed=5, route_length_m=10.0, dt_s=0.05)\n"
        "for i in range(50): t.add(0.01 * i, 0.1, 0.12, 0.2 * i)\n"
        "class R: name = 'cnn'; traces = [t]\n"
        "doc = {'policies': {'cnn': {'autonomy_pct': 90.0, 'interventions': 2,\n"
        "       'mean_abs_lateral_m': 0.2, 'p95_abs_lateral_m': 0.5,\n"
        "       'route_completion_pct': 100.0, 'distance_km': 0.01, 'steer_smoothness': 0.1}},\n"
        "       'settings': {'seeds': [1000000], 'route_length_m': 10.0, 'width': 200,\n"
        "       'height': 66, 'frame_drop': 0.0, 'image_noise': 0.0, 'brightness': 0.0,\n"
        "       'control_delay': 0}}\n"
        f"paths = report.write_report({str(tmp_path)!r}, doc, [R()])\n"
        "print(sorted(p.name for p in paths))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "['index.html', 'results.json', 'results.md']"
    text = (tmp_path / "index.html").read_text()
    assert text.count("<svg") == 3 and "cnn: steering, seed 5" in text  # bars, lateral, steer
    assert not list(tmp_path.glob("*.png"))


def test_nice_ticks_and_decimation_keep_the_extremes():
    assert svg_charts.nice_ticks(0, 100) == [0, 20, 40, 60, 80, 100]
    assert svg_charts.nice_ticks(-1.2, 1.2, 5) == [-1.0, -0.5, 0.0, 0.5, 1.0]
    x = np.arange(10_000, dtype=float)
    y = np.zeros_like(x)
    y[4321], y[777] = 5.0, -3.0
    xs, ys = svg_charts.decimate(x, y, 200)
    assert len(xs) <= 204 and ys.max() == 5.0 and ys.min() == -3.0
    assert xs[0] == 0 and xs[-1] == 9999 and np.all(np.diff(xs) > 0)
