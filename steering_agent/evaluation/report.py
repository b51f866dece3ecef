"""Evaluation reports: the JSON, a Markdown table, PNG plots, a video and index.html.

Plots use matplotlib's Agg backend (no display); without matplotlib (the `plots` extra)
they are skipped and the rest is written (`plots_notice` says so). The page
(`html_report.write_html`: tables, SVG charts, the video) needs no matplotlib. The
video (`video.EpisodeVideo`, re-exported here) is browser-playable: H.264 MP4 with the
`video` extra, else VP8 WebM through OpenCV; it composes the camera view (upscaled),
the top-down view (`env.unwrapped.topdown()`) and a steering gauge.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from steering_agent.common.extras import require, skipped_notice
from steering_agent.evaluation.html_report import DEFAULT_SUITE, write_html
from steering_agent.evaluation.metrics import SUMMARY_KEYS
from steering_agent.evaluation.video import EpisodeVideo  # noqa: F401  (re-exported)

_COLUMNS = (
    ("autonomy_pct", "autonomy %", "{:.1f}"),
    ("interventions", "interventions", "{:d}"),
    ("mean_abs_lateral_m", "mean abs lateral m", "{:.3f}"),
    ("p95_abs_lateral_m", "p95 abs lateral m", "{:.3f}"),
    ("route_completion_pct", "route %", "{:.1f}"),
    ("distance_km", "km", "{:.2f}"),
    ("steer_smoothness", "steer smoothness /s", "{:.3f}"),
)
assert tuple(c[0] for c in _COLUMNS) == SUMMARY_KEYS  # one table, one metric definition


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo; platform fallback)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict:
    """Python, library and ROS versions plus the machine: what a number was measured on."""
    import gymnasium
    import torch

    out = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "torch": torch.__version__,
        "gymnasium": gymnasium.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "ros_distro": os.environ.get("ROS_DISTRO"),
        "rclpy": _dist_version("rclpy"),
        "onnxruntime": _dist_version("onnxruntime"),  # the CPU per-frame backend, when present
    }
    return out


def _dist_version(name: str) -> str | None:
    """An installed distribution's version without importing it (rclpy 9.x = Kilted)."""
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def markdown_table(doc: dict) -> str:
    """One row per policy of an evaluation JSON, with the settings underneath."""
    head = "| policy | " + " | ".join(c[1] for c in _COLUMNS) + " |"
    rule = "|" + " --- |" * (len(_COLUMNS) + 1)
    rows = [head, rule]
    for name, row in doc["policies"].items():
        cells = [fmt.format(row[key]) for key, _, fmt in _COLUMNS]
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    s = doc["settings"]
    seeds = s["seeds"]
    seed_text = f"{seeds[0]}..{seeds[-1]}" if len(seeds) > 1 else str(seeds[0])
    rows.append("")
    rows.append(
        f"{len(seeds)} held-out seeds ({seed_text}), {s['route_length_m']:g} m routes, "
        f"{s['width']}x{s['height']} camera; frame drop {s['frame_drop']:g}, "
        f"image noise {s['image_noise']:g}, brightness {s['brightness']:+g}, "
        f"control delay {s['control_delay']} steps."
    )
    return "\n".join(rows)


def plots_notice() -> str | None:
    """The line to print where the plots will be skipped (matplotlib missing), else None."""
    return skipped_notice("plots", "plots (steering.png, lateral_error.png, lateral_hist.png)")


def write_report(
    out_dir: Path, doc: dict, runs: Sequence, video=None, html: bool = True
) -> list[Path]:
    """Writes results.json, results.md, the plots (skipped without matplotlib: see
    `plots_notice`) and, with `html`, index.html (`html_report.write_html`: the table,
    the runs' traces and the video); returns every file written, index.html last."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(doc, indent=2))
    (out_dir / "results.md").write_text(markdown_table(doc) + "\n")
    written = [out_dir / "results.json", out_dir / "results.md"]
    if plots_notice() is None:
        written += plot_runs(out_dir, runs)
    if video is not None and video.path.is_file():
        written.append(video.path)
    if html:
        suite = str(doc.get("suite") or DEFAULT_SUITE)
        traces = {suite: {r.name: r.traces for r in runs}} if runs else None
        videos = {suite: video} if video is not None and video.path.is_file() else None
        files = [p for p in written if p != getattr(video, "path", None)]
        written.append(write_html(out_dir, doc, traces=traces, videos=videos, files=files))
    return written


def plot_runs(out_dir: Path, runs: Sequence) -> list[Path]:
    """Steering against the expert, lateral error over distance, lateral error histogram.

    Raises:
        MissingExtra: matplotlib (the `plots` extra) is not installed.
    """
    require("plots", "plotting")
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    paths = [out_dir / "steering.png", out_dir / "lateral_error.png", out_dir / "lateral_hist.png"]
    n = len(runs)
    fig, axes = plt.subplots(n, 1, figsize=(10, 2.6 * n), sharex=True, squeeze=False)
    for ax, r in zip(axes[:, 0], runs, strict=True):
        t = r.traces[0]
        time_s = np.arange(t.steps) * t.dt_s
        ax.plot(time_s, t.expert_steer, color="0.55", lw=1.0, label="expert (same states)")
        ax.plot(time_s, t.steer, color="C0", lw=1.0, label=f"{r.name} (executed)")
        for step in t.intervention_steps:
            ax.axvline(step * t.dt_s, color="C3", lw=0.8, alpha=0.6)
        ax.set_ylabel("steer")
        ax.set_title(f"{r.name}: seed {t.seed} (red lines: interventions)", fontsize=9)
        ax.legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(paths[0], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(10, 3.5))
    for i, r in enumerate(runs):
        t = r.traces[0]
        ax.plot(t.progress_m, t.lateral_error_m, lw=1.0, color=f"C{i}", label=r.name)
    ax.axhspan(-1.0, 1.0, color="0.9", zorder=0, label="within 1 m (no intervention)")
    ax.set_xlabel("distance along route (m)")
    ax.set_ylabel("lateral error (m, + left)")
    ax.set_title(f"lateral error over distance, seed {runs[0].traces[0].seed}", fontsize=9)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(paths[1], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    pooled = [np.concatenate([t.lateral_error_m for t in r.traces]) for r in runs]
    hi = max(1.2, float(max(np.abs(p).max() for p in pooled)))
    bins = np.linspace(-hi, hi, 61)
    for i, (r, p) in enumerate(zip(runs, pooled, strict=True)):
        ax.hist(p, bins=bins, histtype="step", lw=1.5, color=f"C{i}", density=True, label=r.name)
    ax.set_xlabel("lateral error (m, + left)")
    ax.set_ylabel("density")
    ax.set_title(f"lateral error, all {len(runs[0].traces)} episodes", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(paths[2], dpi=100)
    plt.close(fig)
    return paths
