"""The trace charts of the HTML report: one representative episode per policy.

An episode is a `metrics.EpisodeTrace` or any object or mapping with arrays
``lateral_m`` (or ``lateral_error_m``), ``steer``, ``expert_steer`` and ``progress_m``
(optionally ``seed`` and ``intervention_steps``). The representative episode of a
policy is its episode of median mean |lateral|.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from steering_agent.evaluation import svg_charts


def trace_arrays(trace) -> dict | None:
    """lateral_m, steer, expert_steer, progress_m (arrays), seed and intervention
    distances of one episode: an `metrics.EpisodeTrace`, or any object or mapping with
    those arrays (``lateral_m`` or ``lateral_error_m``); None without lateral/progress."""

    def get(k):
        return trace.get(k) if isinstance(trace, Mapping) else getattr(trace, k, None)

    lat = get("lateral_m")
    lat = get("lateral_error_m") if lat is None else lat
    prog = get("progress_m")
    if lat is None or prog is None or len(lat) == 0:
        return None
    out = {"lateral_m": np.asarray(lat, float), "progress_m": np.asarray(prog, float)}
    for k in ("steer", "expert_steer"):
        v = get(k)
        out[k] = None if v is None else np.asarray(v, float)
    out["seed"] = get("seed")
    steps = get("intervention_steps")
    steps = [] if steps is None else [int(s) for s in steps]
    n = len(out["progress_m"])
    out["interventions_m"] = [float(out["progress_m"][s]) for s in steps if 0 <= s < n]
    return out


def representative(traces: Sequence) -> dict | None:
    """The episode of median mean |lateral| (lower median) among `traces`, as arrays."""
    arrays = [a for a in (trace_arrays(t) for t in traces) if a is not None]
    if not arrays:
        return None
    order = sorted(range(len(arrays)), key=lambda i: float(np.abs(arrays[i]["lateral_m"]).mean()))
    pick = arrays[order[(len(order) - 1) // 2]]
    return {**pick, "of": len(arrays)}


def trace_charts(suite: str, per_policy: Mapping[str, Sequence], threshold_m: float) -> str:
    """Lateral error over distance (all policies) and steering vs the expert (each)."""
    picks = {p: representative(ts) for p, ts in per_policy.items()}
    picks = {p: a for p, a in picks.items() if a is not None}
    if not picks:
        return ""
    lat = [
        svg_charts.Series(f"{p} (seed {a['seed']})", a["progress_m"], a["lateral_m"],
                          svg_charts.color(i))
        for i, (p, a) in enumerate(picks.items())
    ]  # fmt: skip
    parts = [
        "<h3>Lateral error over distance</h3><figure>",
        svg_charts.line_chart(
            lat, title=f"{suite}: lateral error (m, + left) of one episode per policy",
            xlabel="distance along route (m)", ylabel="lateral error (m)",
            hlines=(-threshold_m, threshold_m),
        ),
        f"<figcaption>Each policy's episode of median mean |lateral| over its episodes; "
        f"dashed: the {threshold_m:g} m intervention threshold.</figcaption></figure>",
        "<h3>Steering against the expert</h3>",
    ]  # fmt: skip
    for i, (p, a) in enumerate(picks.items()):
        if a["steer"] is None:
            continue
        series = [svg_charts.Series(f"{p} (executed)", a["progress_m"], a["steer"],
                                    svg_charts.color(i))]  # fmt: skip
        if a["expert_steer"] is not None:
            expert = svg_charts.Series(
                "expert (same states)", a["progress_m"], a["expert_steer"], "#999", dash="5 3"
            )
            series.insert(0, expert)
        chart = svg_charts.line_chart(
            series, title=f"{p}: steering, seed {a['seed']} ({a['of']} episodes)",
            xlabel="distance along route (m)", ylabel="steer (-1..1)",
            vlines=a["interventions_m"], height=200,
        )  # fmt: skip
        parts.append(f"<figure>{chart}<figcaption>red marks: interventions</figcaption></figure>")
    return "\n".join(parts)
