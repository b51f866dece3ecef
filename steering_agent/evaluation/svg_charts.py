"""Small inline-SVG charts for the HTML report (no matplotlib): bars with error bars, lines.

Each function returns one ``<svg>`` element as text, sized in CSS pixels, every label
escaped. Long series are thinned to at most `max_points` per line, keeping each
bucket's minimum and maximum so that spikes (an intervention) stay visible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

import numpy as np

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")  # fmt: skip
_FONT = 'font-family="system-ui,sans-serif" font-size="11"'


@dataclass(frozen=True)
class Series:
    """One line: its legend name, x and y values, colour and optional dash pattern."""

    name: str
    x: np.ndarray
    y: np.ndarray
    color: str
    dash: str | None = None
    width: float = 1.4


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About `n` round tick values covering [lo, hi] (steps of 1, 2, 2.5 or 5 x 10^k)."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else [0.0]
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step - 1e-9) * step
    ticks, t = [], first
    while t <= hi + 1e-9 * step:
        ticks.append(round(t, 12))
        t += step
    return ticks


def _fmt_tick(v: float) -> str:
    return f"{v:.6g}" if abs(v) >= 1e-9 else "0"


def decimate(x: np.ndarray, y: np.ndarray, max_points: int = 600) -> tuple[np.ndarray, ...]:
    """x, y thinned to at most about `max_points`: per bucket the points of its min and max."""
    n = len(x)
    if n <= max_points:
        return x, y
    buckets = max(1, max_points // 2)
    size = math.ceil(n / buckets)
    pad = buckets * size - n
    yp = np.concatenate([y, np.full(pad, y[-1])]).reshape(buckets, size)
    base = np.arange(buckets) * size
    lo = np.minimum(base + np.argmin(yp, axis=1), n - 1)
    hi = np.minimum(base + np.argmax(yp, axis=1), n - 1)
    idx = np.unique(np.concatenate([lo, hi, [0, n - 1]]))
    return x[idx], y[idx]


class _Frame:
    """The plot area of a chart and its data-to-pixel mapping."""

    def __init__(self, width, height, xlim, ylim, left=58, right=26, top=30, bottom=40):
        self.w, self.h = width, height
        self.x0, self.x1 = left, width - right
        self.y0, self.y1 = top, height - bottom
        self.xlim, self.ylim = xlim, ylim

    def px(self, x):
        a, b = self.xlim
        return self.x0 + (np.asarray(x, float) - a) / ((b - a) or 1.0) * (self.x1 - self.x0)

    def py(self, y):
        a, b = self.ylim
        return self.y1 - (np.asarray(y, float) - a) / ((b - a) or 1.0) * (self.y1 - self.y0)


def _open(f: _Frame, title: str, label: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{f.w}" height="{f.h}" '
        f'viewBox="0 0 {f.w} {f.h}" role="img" aria-label="{escape(label or title)}" {_FONT}>',
        f'<text x="{f.x0}" y="15" font-size="12" font-weight="600">{escape(title)}</text>',
    ]


def _y_axis(f: _Frame, ticks: Sequence[float], ylabel: str) -> list[str]:
    out = []
    for t in ticks:
        y = float(f.py(t))
        out.append(f'<line x1="{f.x0}" x2="{f.x1}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e4e4e4"/>')
        out.append(f'<text x="{f.x0 - 5}" y="{y + 4:.1f}" text-anchor="end">{_fmt_tick(t)}</text>')
    cy = (f.y0 + f.y1) / 2
    out.append(
        f'<text x="12" y="{cy:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 12 {cy:.1f})">{escape(ylabel)}</text>'
    )
    out.append(f'<line x1="{f.x0}" x2="{f.x0}" y1="{f.y0}" y2="{f.y1}" stroke="#888"/>')
    return out


def bar_chart(
    labels: Sequence[str],
    values: Sequence[float],
    errors: Sequence[tuple[float, float] | None] | None = None,
    title: str = "",
    ylabel: str = "",
    ymax: float | None = None,
    width: int = 560,
    height: int = 280,
) -> str:
    """Vertical bars, one per label, with (low, high) error bars; NaN bars read "n/a"."""
    vals = np.asarray(values, float)
    errs = list(errors) if errors is not None else [None] * len(vals)
    finite = [v for v in vals if math.isfinite(v)]
    finite += [e[1] for e in errs if e is not None and math.isfinite(e[1])]
    top = max(finite) * 1.1 if finite else 1.0
    top = top if ymax is None else max(ymax, top / 1.1 * 1.04)  # an interval may pass ymax
    bottom = min(0.0, *finite) if finite else 0.0
    top = top if top > bottom else bottom + 1.0
    f = _Frame(width, height, (0, max(1, len(vals))), (bottom, top))
    out = _open(f, title, f"{title}: " + ", ".join(f"{lab} {v:.3g}" for lab, v in
                                                    zip(labels, vals, strict=True)))  # fmt: skip
    out += _y_axis(f, nice_ticks(bottom, top), ylabel)
    slot = (f.x1 - f.x0) / max(1, len(vals))
    zero = float(f.py(0.0))
    for i, (lab, v) in enumerate(zip(labels, vals, strict=True)):
        cx = f.x0 + slot * (i + 0.5)
        bw = min(60.0, slot * 0.6)
        e = errs[i]
        has_err = e is not None and all(math.isfinite(b) for b in e)
        if math.isfinite(v):
            y = float(f.py(v))
            label_y = min(y, zero, float(f.py(max(e))) if has_err else y) - 4
            out.append(
                f'<rect x="{cx - bw / 2:.1f}" y="{min(y, zero):.1f}" width="{bw:.1f}" '
                f'height="{abs(zero - y):.1f}" fill="{color(i)}"><title>{escape(lab)}: '
                f"{v:.4g}</title></rect>"
            )
            out.append(f'<text x="{cx:.1f}" y="{label_y:.1f}" text-anchor="middle">{v:.3g}</text>')
        else:
            out.append(f'<text x="{cx:.1f}" y="{zero - 4:.1f}" text-anchor="middle">n/a</text>')
        if has_err:
            ylo, yhi = float(f.py(e[0])), float(f.py(e[1]))
            out.append(
                f'<path d="M{cx:.1f},{ylo:.1f}V{yhi:.1f}M{cx - 6:.1f},{ylo:.1f}h12'
                f'M{cx - 6:.1f},{yhi:.1f}h12" stroke="#222" stroke-width="1.3" fill="none"/>'
            )
        out.append(
            f'<text x="{cx:.1f}" y="{f.y1 + 15}" text-anchor="middle">{escape(lab[:28])}</text>'
        )
    out.append(f'<line x1="{f.x0}" x2="{f.x1}" y1="{zero:.1f}" y2="{zero:.1f}" stroke="#888"/>')
    out.append("</svg>")
    return "\n".join(out)


def line_chart(
    series: Sequence[Series],
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    hlines: Sequence[float] = (),
    vlines: Sequence[float] = (),
    width: int = 760,
    height: int = 260,
    max_points: int = 600,
) -> str:
    """Lines over a shared x axis, a legend on top, dashed horizontal guides at `hlines`
    and thin vertical marks at `vlines` (x values: interventions, say)."""
    thinned = []
    for s in series:
        x, y = np.asarray(s.x, float), np.asarray(s.y, float)
        ok = np.isfinite(x) & np.isfinite(y)
        if ok.any():
            thinned.append((s, *decimate(x[ok], y[ok], max_points)))
    if not thinned:
        return ""
    xs = np.concatenate([t[1] for t in thinned])
    ys = np.concatenate([t[2] for t in thinned] + [np.asarray(hlines, float)])
    xlo, xhi = float(xs.min()), float(xs.max())
    ylo, yhi = float(ys.min()), float(ys.max())
    pad = 0.08 * (yhi - ylo or 1.0)
    xlim = (xlo, xhi if xhi > xlo else xlo + 1.0)
    f = _Frame(width, height, xlim, (ylo - pad, yhi + pad), top=44)  # legend under the title
    out = _open(f, title, title)
    out += _y_axis(f, nice_ticks(ylo - pad, yhi + pad), ylabel)
    for t in nice_ticks(*f.xlim, n=8):
        x = float(f.px(t))
        out.append(f'<text x="{x:.1f}" y="{f.y1 + 14}" text-anchor="middle">{_fmt_tick(t)}</text>')
    out.append(
        f'<text x="{(f.x0 + f.x1) / 2:.1f}" y="{f.h - 6}" text-anchor="middle">'
        f"{escape(xlabel)}</text>"
    )
    out.append(f'<line x1="{f.x0}" x2="{f.x1}" y1="{f.y1}" y2="{f.y1}" stroke="#888"/>')
    for h in hlines:
        y = float(f.py(h))
        out.append(
            f'<line x1="{f.x0}" x2="{f.x1}" y1="{y:.1f}" y2="{y:.1f}" stroke="#d62728" '
            'stroke-dasharray="4 3" stroke-width="0.8"/>'
        )
    for v in vlines:
        if f.xlim[0] <= v <= f.xlim[1]:
            x = float(f.px(v))
            out.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{f.y0}" y2="{f.y1}" stroke="#d62728" '
                'stroke-opacity="0.5" stroke-width="0.8"/>'
            )
    lx = f.x0
    for s, x, y in thinned:
        pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(f.px(x), f.py(y), strict=True))
        dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
        out.append(
            f'<polyline points="{pts}" fill="none" stroke="{s.color}" '
            f'stroke-width="{s.width}"{dash}><title>{escape(s.name)}</title></polyline>'
        )
        out.append(
            f'<line x1="{lx}" x2="{lx + 18}" y1="28" y2="28" stroke="{s.color}" '
            f'stroke-width="2"{dash}/><text x="{lx + 22}" y="32">{escape(s.name)}</text>'
        )
        lx += 30 + 6.5 * len(s.name)
    out.append("</svg>")
    return "\n".join(out)
