"""`steering-agent eval --suite NAME [--suite NAME ...]`: every policy over every cell of
every named suite (`suites.SUITES`; "all" for every one); one JSON, one table per suite.

The JSON: ``{"penalties", "suites": {suite: {"about", "seeds", "route_length_m",
"cells": {cell: settings}, "policies": {policy: {"spec", "wall_s", <the scores of the
suite's episodes pooled over its cells>, "cells": {cell: <scores + settings>}}}}},
"throughput", "versions", "command"}``; the scores are `metrics.aggregate`'s.
"""

from __future__ import annotations

import argparse
import json
import time

from steering_agent.common import cli_args
from steering_agent.common.cli_args import UsageError
from steering_agent.evaluation import metrics, suites

TABLE = (
    ("driving_score", "DS", "{:.1f}"),
    ("route_completion_pct", "RC %", "{:.1f}"),
    ("lane_departures_per_km", "lane dep/km", "{:.2f}"),
    ("collisions", "coll", "{:d}"),
    ("autonomy_pct", "autonomy %", "{:.1f}"),
    ("interventions", "interv", "{:d}"),
    ("mean_abs_lateral_m", "mean |lat| m", "{:.3f}"),
    ("p95_abs_lateral_m", "p95 |lat| m", "{:.3f}"),
    ("lat_accel_exceed_per_km", "a_y>3 /km", "{:.2f}"),
    ("lat_jerk_exceed_per_km", "jerk>5 /km", "{:.2f}"),
)


def _cell(row: dict, key: str, fmt: str) -> str:
    text = fmt.format(row[key])
    ci = row.get(key + "_ci95")
    return text if ci is None else f"{text} ± {ci:.2g}"


def markdown_tables(doc: dict) -> str:
    """Per suite: one row per policy (its cells pooled, value ± CI95), then the driving
    score of each cell per policy."""
    out = []
    for name, suite in doc["suites"].items():
        seeds = suite["seeds"]
        out.append(f"### {name}: {suite['about']} ({len(seeds)} seeds x "
                   f"{len(suite['cells'])} cells, {suite['route_length_m']:g} m)")  # fmt: skip
        out.append("| policy | " + " | ".join(c[1] for c in TABLE) + " |")
        out.append("|" + " --- |" * (len(TABLE) + 1))
        for pname, row in suite["policies"].items():
            out.append(f"| {pname} | " + " | ".join(_cell(row, k, f) for k, _, f in TABLE) + " |")
        if len(suite["cells"]) > 1:
            policies = list(suite["policies"])
            out.append("")
            out.append("| cell | " + " | ".join(f"DS {p}" for p in policies) + " |")
            out.append("|" + " --- |" * (len(policies) + 1))
            for cell in suite["cells"]:
                vals = [_cell(suite["policies"][p]["cells"][cell], "driving_score", "{:.1f}")
                        for p in policies]  # fmt: skip
                out.append(f"| {cell} | " + " | ".join(vals) + " |")
        out.append("")
    return "\n".join(out)


def run_suites(args: argparse.Namespace, names: list[str], specs: list[str]) -> int:
    from sim.seeds import eval_seeds
    from steering_agent.evaluation.evaluate import file_label
    from steering_agent.evaluation.report import versions

    try:
        chosen = suites.resolve_suites(args.suite)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if args.report:  # before any work
        cli_args.writable_dir(args.report, "--report")
    doc = {"penalties": metrics.penalty_table(), "suites": {}}
    km, wall = 0.0, 0.0
    all_traces: dict[str, dict] = {}
    videos: dict[str, object] = {}
    for suite in chosen:
        episodes = args.episodes or suite.episodes
        seeds = [int(s) for s in args.seeds] if args.seeds else eval_seeds(
            episodes, start=suite.seed_offset + args.seed)  # fmt: skip
        route = args.route_length_m or suite.route_length_m
        cells = suite.cells()
        entry = {"about": suite.about, "seeds": seeds, "route_length_m": route,
                 "cells": {c.name: c.describe() for c in cells}, "policies": {}}  # fmt: skip
        for name, spec in zip(names, specs, strict=True):

            def show(cell: str, row: dict, name=name, suite=suite.name) -> None:
                if not args.quiet:
                    print(f"{suite}/{cell} {name}: DS {row['driving_score']:.1f}  "
                          f"interventions {row['interventions']}  mean |lateral| "
                          f"{row['mean_abs_lateral_m']:.3f} m", flush=True)  # fmt: skip

            video = None
            if args.report and not args.no_video and name == names[0]:
                from steering_agent.evaluation.video import EpisodeVideo

                video = EpisodeVideo(args.report / f"{suite.name}_{file_label(name)}.mp4",
                                     f"{suite.name} / {cells[0].name}: {name}")  # fmt: skip
            t0 = time.perf_counter()
            try:
                rows, traces = suites.run_cells_traces(
                    spec, cells, seeds, route, args.num_envs, args.device, show,
                    frame_hook=video.add if video else None,
                )  # fmt: skip
            finally:
                if video is not None:
                    video.close()
                    videos[suite.name] = video.path
            spent = time.perf_counter() - t0
            all_traces.setdefault(suite.name, {})[name] = traces
            pooled = metrics.aggregate(traces)
            entry["policies"][name] = {"spec": spec, **pooled, "wall_s": spent, "cells": rows}
            km += pooled["distance_km"]
            wall += spent
        doc["suites"][suite.name] = entry
    doc["throughput"] = {"wall_s": wall, "distance_km": km,
                         "sim_km_per_hour": km / wall * 3600.0 if wall > 0 else None}  # fmt: skip
    doc["versions"] = versions()
    doc["command"] = getattr(args, "_command_line", "steering-agent eval")
    print(markdown_tables(doc))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=1))
        print(f"wrote {args.json}")
    if args.report:
        args.report.mkdir(parents=True, exist_ok=True)
        (args.report / "suites.json").write_text(json.dumps(doc, indent=1))
        (args.report / "suites.md").write_text(markdown_tables(doc) + "\n")
        from steering_agent.evaluation.html_report import write_html

        files = [args.report / "suites.json", args.report / "suites.md"]
        page = write_html(args.report, doc, traces=all_traces, videos=videos, files=files)
        print(f"wrote {args.report / 'suites.json'} and {page}")
    return 0
