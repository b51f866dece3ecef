"""The evaluation report a person looks at: one self-contained ``index.html``.

`write_html(out_dir, doc, traces, videos)` writes, per suite, the table of policies x
scores (each with its 95 % confidence interval where the JSON has a ``_ci95``
companion), a bar chart of the driving score with error bars, the lateral error over
distance and the steering against the expert of one representative episode per policy
(the episode of median mean |lateral|), and the suite's video. CSS and charts (SVG,
`svg_charts`) are inline: no matplotlib, no network; the page refers only to files in
`out_dir`, by relative links (a video elsewhere is copied in).

`doc` is the evaluation JSON, in either layout:

- suites: ``doc["suites"][suite]["policies"][policy]`` -> scores, plus ``doc["penalties"]``;
- one run (`evaluate.results_json`, `drive`): ``doc["policies"][policy]`` -> scores,
  the suite being ``doc.get("suite", "lane")``; where each policy holds cells
  (today's ``eval --suite cameras``), each row is "policy / cell".
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path

from steering_agent.evaluation import svg_charts
from steering_agent.evaluation.html_traces import trace_arrays, trace_charts
from steering_agent.evaluation.video_probe import probe_video

DEFAULT_SUITE = "lane"
# (key, column heading, decimals): the table's columns, in order, where any row has them
SCORE_COLUMNS = (
    ("driving_score", "driving score", 1),
    ("route_completion_pct", "route completion %", 1),
    ("lane_departures_per_km", "lane departures /km", 2),
    ("collisions", "collisions", 2),
    ("autonomy_pct", "autonomy %", 1),
    ("interventions", "interventions", 0),
    ("mean_abs_lateral_m", "mean |lateral| m", 3),
    ("p95_abs_lateral_m", "p95 |lateral| m", 3),
    ("lat_accel_exceed_per_km", "lat. accel > 3 m/s\u00b2 /km", 2),
    ("lat_jerk_exceed_per_km", "lat. jerk > 5 m/s\u00b3 /km", 2),
    ("distance_km", "km", 2),
    ("steer_smoothness", "steer smoothness /s", 3),
)
_SCORE_KEYS = {c[0] for c in SCORE_COLUMNS}
_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5rem auto;max-width:1100px;padding:0 1rem;
color:#222;line-height:1.4}
h1{font-size:1.5rem}h2{font-size:1.25rem;border-bottom:1px solid #ddd;padding-bottom:.2rem;
margin-top:2.2rem}h3{font-size:1rem;margin:1.2rem 0 .4rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.85rem}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:right}td{white-space:nowrap}
.wide{overflow-x:auto}
th:first-child,td:first-child{text-align:left}thead th{background:#f3f3f3}
caption{text-align:left;font-size:.8rem;color:#555;caption-side:bottom;padding-top:.2rem}
.notice{background:#fff3cd;border:1px solid #e0c36a;padding:.5rem .8rem}
.meta,.note{color:#555;font-size:.85rem}figure{margin:.8rem 0}
figcaption{font-size:.8rem;color:#555}video{max-width:100%;background:#000}
nav a{margin-right:.8rem}pre{font-size:.75rem;background:#f7f7f7;padding:.5rem;overflow:auto}
"""


def _is_num(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is_row(v) -> bool:
    return isinstance(v, Mapping) and any(k in v for k in _SCORE_KEYS)


def suite_tables(doc: Mapping) -> dict[str, dict[str, dict]]:
    """{suite: {row label: scores}} of an evaluation JSON in either layout (module doc)."""
    out: dict[str, dict[str, dict]] = {}
    if isinstance(doc.get("suites"), Mapping):
        for suite, body in doc["suites"].items():
            pols = body.get("policies", body) if isinstance(body, Mapping) else {}
            out[str(suite)] = _rows(pols)
        return out
    if isinstance(doc.get("policies"), Mapping):
        out[str(doc.get("suite") or DEFAULT_SUITE)] = _rows(doc["policies"])
    return out


def _rows(policies: Mapping) -> dict[str, dict]:
    rows: dict[str, dict] = {}
    for name, row in policies.items():
        if _is_row(row):
            rows[str(name)] = dict(row)
        elif isinstance(row, Mapping):  # cells of a suite: {cell: scores}
            for cell, crow in row.items():
                if _is_row(crow):
                    rows[f"{name} / {cell}"] = dict(crow)
    return rows


def _ci(row: Mapping, key: str, value: float) -> tuple[float, float] | None:
    """(low, high) of `key`'s 95 % interval: a half-width or a [low, high] pair."""
    ci = row.get(f"{key}_ci95")
    if _is_num(ci) and math.isfinite(ci):
        return value - ci, value + ci
    if isinstance(ci, Sequence) and len(ci) == 2 and all(_is_num(c) for c in ci):
        return float(ci[0]), float(ci[1])
    return None


def _cell(row: Mapping, key: str, decimals: int) -> str:
    v = row.get(key)
    if not _is_num(v):
        return "&ndash;" if v is None else escape(str(v))
    if not math.isfinite(v):
        return "n/a"
    text = f"{v:.{decimals}f}"
    ci = row.get(f"{key}_ci95")
    if _is_num(ci) and math.isfinite(ci):
        text += f" &plusmn; {ci:.{decimals}f}"
    elif (lohi := _ci(row, key, v)) is not None:
        text += f" [{lohi[0]:.{decimals}f}, {lohi[1]:.{decimals}f}]"
    return text


def scores_table(suite: str, rows: Mapping[str, Mapping]) -> str:
    """The suite's table: one row per policy, one column per score any row has."""
    cols = [c for c in SCORE_COLUMNS if any(c[0] in r for r in rows.values())]
    head = "".join(f"<th>{escape(label)}</th>" for _, label, _ in cols)
    body = []
    for name, row in rows.items():
        cells = "".join(f"<td>{_cell(row, k, d)}</td>" for k, _, d in cols)
        body.append(f'<tr><th scope="row">{escape(name)}</th>{cells}</tr>')
    cap = "&plusmn; 95 % confidence interval over episodes where given"
    return (
        f'<table class="scores" data-suite="{escape(suite)}"><caption>{cap}</caption>'
        f'<thead><tr><th scope="col">policy</th>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def score_chart(suite: str, rows: Mapping[str, Mapping]) -> str:
    """Bars of the driving score (autonomy where the JSON has no driving score)."""
    key = "driving_score" if any("driving_score" in r for r in rows.values()) else "autonomy_pct"
    labels, values, errors = [], [], []
    for name, row in rows.items():
        v = row.get(key)
        v = float(v) if _is_num(v) else float("nan")
        labels.append(name)
        values.append(v)
        errors.append(_ci(row, key, v) if math.isfinite(v) else None)
    label = "driving score" if key == "driving_score" else "autonomy %"
    top = 108.0 if all(not math.isfinite(v) or v <= 100 for v in values) else None
    return svg_charts.bar_chart(
        labels, values, errors, title=f"{suite}: {label} (95 % CI)", ylabel=label, ymax=top,
        width=max(420, 90 * len(labels) + 80),
    )  # fmt: skip


def _suite_traces(traces, suites: Sequence[str]) -> dict[str, dict[str, list]]:
    """{suite: {policy: [trace]}} of `traces` given as that, or as {policy: [trace]}
    (then for the first suite)."""
    if not traces:
        return {}
    first = next(iter(traces.values()))
    if not isinstance(first, Mapping) or trace_arrays(first) is not None:  # {policy: traces}
        traces = {suites[0] if suites else DEFAULT_SUITE: traces}
    out = {}
    for suite, pols in traces.items():
        out[str(suite)] = {
            str(p): list(ts) if isinstance(ts, Sequence) else [ts] for p, ts in pols.items()
        }
    return out


def _video_paths(videos, out_dir: Path, suites: Sequence[str]) -> dict[str, list[tuple]]:
    """{suite: [(relative link, label, probe or None)]} of the videos that exist; one
    outside `out_dir` is copied into out_dir/videos first."""
    if not videos:
        return {}
    if not isinstance(videos, Mapping):
        videos = {suites[0] if suites else DEFAULT_SUITE: videos}
    out: dict[str, list[tuple]] = {}
    root = out_dir.resolve()
    for suite, items in videos.items():
        items = items if isinstance(items, list | tuple) else [items]
        for item in items:
            path = Path(getattr(item, "path", item))
            if not path.is_file():
                continue
            if root not in path.resolve().parents:
                dest = out_dir / "videos" / path.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, dest)
                path = dest
            rel = Path(os.path.relpath(path.resolve(), root)).as_posix()
            try:
                probe = probe_video(path)
            except (ValueError, OSError, IndexError):
                probe = None
            label = getattr(item, "label", None) or path.stem
            out.setdefault(str(suite), []).append((rel, label, probe))
    return out


def video_block(entries: Sequence[tuple]) -> str:
    parts = ["<h3>Video</h3>"]
    for rel, label, probe in entries:
        mime = "video/webm" if rel.endswith(".webm") else "video/mp4"
        what = f"{probe['codec']} in {probe['container']}" if probe else "unknown codec"
        parts.append(
            f'<figure><video controls preload="metadata" width="800">'
            f'<source src="{escape(rel)}" type="{mime}"></video>'
            f"<figcaption>{escape(str(label))}: camera view (upscaled), top-down view, "
            f"steering gauge (blue: executed, white: expert); {escape(what)}; "
            f'<a href="{escape(rel)}">{escape(rel)}</a></figcaption></figure>'
        )
    return "\n".join(parts)


def _slug(name: str) -> str:
    return "suite-" + (re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "x")


def penalties_block(penalties) -> str:
    """The driving score's penalty table as the JSON gives it: a mapping (a nested
    mapping, e.g. the coefficients per infraction, becomes a group of rows) or a list
    of mappings (one row each)."""
    if isinstance(penalties, Mapping):
        rows = []
        for k, v in penalties.items():
            if isinstance(v, Mapping):
                rows.append(f'<tr><th colspan="2">{escape(str(k))}</th></tr>')
                rows += [_pair(k2, v2) for k2, v2 in v.items()]
            else:
                rows.append(_pair(k, v))
        return f"<table><tbody>{''.join(rows)}</tbody></table>"
    if isinstance(penalties, Sequence) and all(isinstance(p, Mapping) for p in penalties):
        keys = list(dict.fromkeys(k for p in penalties for k in p))
        head = "".join(f"<th>{escape(str(k))}</th>" for k in keys)
        body = "".join(
            "<tr>" + "".join(f"<td>{escape(_plain(p.get(k, '')))}</td>" for k in keys) + "</tr>"
            for p in penalties
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    return f"<pre>{escape(json.dumps(penalties, indent=1, default=str))}</pre>"


def _pair(key, value) -> str:
    return f"<tr><td>{escape(str(key))}</td><td>{escape(_plain(value))}</td></tr>"


def _plain(v) -> str:
    return v if isinstance(v, str) else json.dumps(v, default=str)


def render_html(
    doc: Mapping, traces=None, videos=None, out_dir: Path | None = None,
    files: Sequence[Path] = (), title: str = "Steering agent: evaluation report",
) -> str:  # fmt: skip
    """The page's text (see `write_html`; videos resolved against `out_dir`)."""
    tables = suite_tables(doc)
    names = list(tables)
    settings = doc.get("settings") if isinstance(doc.get("settings"), Mapping) else {}
    threshold = float(settings.get("intervention_threshold_m", 1.0))
    per_trace = _suite_traces(traces, names)
    vids = _video_paths(videos, Path(out_dir or "."), names)
    for extra in list(per_trace) + list(vids):  # traces or videos of a suite with no table
        if extra not in tables:
            tables[extra] = {}
    parts = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
    ]
    if doc.get("notice"):
        parts.append(f'<p class="notice">{escape(str(doc["notice"]))}</p>')
    meta = []
    if doc.get("command"):
        meta.append(f"command: <code>{escape(str(doc['command']))}</code>")
    if settings.get("seeds"):
        n = len(settings["seeds"])
        meta.append(f"{n} held-out seed{'s' if n != 1 else ''}")
    if settings.get("route_length_m"):
        meta.append(f"{settings['route_length_m']:g} m routes")
    if meta:
        parts.append(f'<p class="meta">{"; ".join(meta)}</p>')
    if len(tables) > 1:
        links = "".join(f'<a href="#{_slug(s)}">{escape(s)}</a>' for s in tables)
        parts.append(f"<nav>suites: {links}</nav>")
    for suite, rows in tables.items():
        parts.append(f'<section id="{_slug(suite)}"><h2>Suite {escape(suite)}</h2>')
        if rows:
            parts.append(f'<div class="wide">{scores_table(suite, rows)}</div>')
            parts.append(f"<figure>{score_chart(suite, rows)}</figure>")
        parts.append(trace_charts(suite, per_trace.get(suite, {}), threshold))
        if suite in vids:
            parts.append(video_block(vids[suite]))
        parts.append("</section>")
    if doc.get("penalties") is not None:
        parts.append('<section id="penalties"><h2>Driving score penalties</h2>')
        parts.append(penalties_block(doc["penalties"]) + "</section>")
    parts.append(_files_block(files, out_dir))
    rest = {k: doc[k] for k in ("settings", "throughput", "versions") if k in doc}
    if rest:
        parts.append(
            "<details><summary>settings, throughput and versions</summary><pre>"
            f"{escape(json.dumps(rest, indent=1, default=str))}</pre></details>"
        )
    parts.append("</body></html>\n")
    return "\n".join(p for p in parts if p)


def _files_block(files: Sequence[Path], out_dir: Path | None) -> str:
    if out_dir is None:
        return ""
    root = Path(out_dir).resolve()
    links = []
    for f in files:
        p = Path(f).resolve()
        if p.is_file() and root in p.parents and p.name != "index.html":
            rel = Path(os.path.relpath(p, root)).as_posix()
            links.append(f'<li><a href="{escape(rel)}">{escape(rel)}</a></li>')
    return f"<h2>Files</h2><ul>{''.join(links)}</ul>" if links else ""


def write_html(
    out_dir: Path, doc: Mapping, traces=None, videos=None, files: Sequence[Path] = (),
    title: str = "Steering agent: evaluation report",
) -> Path:  # fmt: skip
    """Writes out_dir/index.html and returns its path.

    Args:
        doc: the evaluation JSON (either layout of the module doc).
        traces: {suite: {policy: [episode]}} or, for one suite, {policy: [episode]};
            an episode is a `metrics.EpisodeTrace` or anything with arrays lateral_m
            (or lateral_error_m), steer, expert_steer and progress_m.
        videos: {suite: path, `EpisodeVideo` or a list of them}, or one of those for
            the first suite; files that do not exist are left out, files outside
            `out_dir` are copied into out_dir/videos.
        files: other files in `out_dir` to link (results.json, PNG plots).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    page = render_html(doc, traces, videos, out_dir=out_dir, files=files, title=title)
    path = out_dir / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
