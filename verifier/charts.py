"""Inline SVG charts for the audit report, drawn in plain Python.

No JavaScript, no fonts, no network (inline SVG in HTML needs no xmlns either): each
function returns one ``<svg>`` element as a string that the HTML template inlines
as-is. Every piece of text that reaches the SVG goes through `markupsafe.escape`
here, because the template marks the whole chart safe; labels come from the
evidence (license ids, profile names) and may be hostile.

Each function takes plain lists of numbers and labels (the report model's chart
data) and returns "" when there is nothing to draw, so the template can say so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from markupsafe import escape

# One palette for the whole report (kept in step with report.html.j2's CSS).
INK, MUTED, GRID = "#1f2328", "#59636e", "#d8dee4"
ADMITTED, REFUSED, ACCENT = "#2da44e", "#cf222e", "#0969da"
FONT = "font-family=\"system-ui,-apple-system,'Segoe UI',Roboto,sans-serif\""

WIDTH = 720  # px; the report's content column, the SVG scales down with viewBox
LABEL_W = 190  # px reserved for row labels of bar charts
ROW_H = 26  # px per bar row
MAX_POINTS = 1000  # line chart points kept; longer series are thinned evenly
MAX_LABEL = 28  # characters of a row label shown (the full text is in <title>)


def _num(v: object) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _fmt(v: float) -> str:
    if v == int(v) and abs(v) < 1e15:
        return f"{int(v):,}"
    return f"{v:.3g}" if abs(v) < 1e-2 or abs(v) >= 1e4 else f"{v:.3f}".rstrip("0").rstrip(".")


def _label(s: object) -> str:
    text = str(s)
    return text if len(text) <= MAX_LABEL else text[: MAX_LABEL - 1] + "…"


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi] (Heckbert's nice numbers)."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(n - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first = math.floor(lo / step) * step
    ticks, t = [], first
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    if ticks[-1] < hi:
        ticks.append(round(t, 12))
    return ticks


def _svg(height: int, title: str, body: list[str]) -> str:
    t = escape(title)
    return (
        f'<svg viewBox="0 0 {WIDTH} {height}" '
        f'width="100%" role="img" aria-label="{t}" class="chart" {FONT} font-size="12">'
        f"<title>{t}</title>" + "".join(body) + "</svg>"
    )


def line_chart(points: Sequence[Sequence[object]], title: str, x_label: str, y_label: str) -> str:
    """A line chart of (x, y) points, e.g. mean loss over steps. Bad points are dropped."""
    pts = [
        (x, y)
        for p in points
        if isinstance(p, list | tuple) and len(p) >= 2
        for x, y in [(_num(p[0]), _num(p[1]))]
        if x is not None and y is not None
    ]
    if not pts:
        return ""
    pts.sort()
    if len(pts) > MAX_POINTS:
        stride = len(pts) / MAX_POINTS
        pts = [pts[int(i * stride)] for i in range(MAX_POINTS)] + [pts[-1]]
    h, left, right, top, bottom = 280, 64, 20, 16, 44
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    xt, yt = nice_ticks(min(xs), max(xs), 6), nice_ticks(min(ys), max(ys), 5)
    x0, x1, y0, y1 = xt[0], xt[-1], yt[0], yt[-1]
    pw, ph = WIDTH - left - right, h - top - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / ((x1 - x0) or 1) * pw

    def sy(y: float) -> float:
        return top + ph - (y - y0) / ((y1 - y0) or 1) * ph

    body = []
    for y in yt:
        body.append(
            f'<line x1="{left}" x2="{left + pw}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" '
            f'stroke="{GRID}"/>'
        )
        body.append(
            f'<text x="{left - 8}" y="{sy(y) + 4:.1f}" text-anchor="end" '
            f'fill="{MUTED}">{_fmt(y)}</text>'
        )
    for x in xt:
        body.append(
            f'<line x1="{sx(x):.1f}" x2="{sx(x):.1f}" y1="{top + ph}" y2="{top + ph + 4}" '
            f'stroke="{MUTED}"/>'
        )
        body.append(
            f'<text x="{sx(x):.1f}" y="{top + ph + 18}" text-anchor="middle" '
            f'fill="{MUTED}">{_fmt(x)}</text>'
        )
    body.append(
        f'<line x1="{left}" x2="{left + pw}" y1="{top + ph}" y2="{top + ph}" stroke="{MUTED}"/>'
    )
    path = " ".join(
        f"{'M' if i == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for i, (x, y) in enumerate(pts)
    )
    body.append(
        f'<path d="{path}" fill="none" stroke="{ACCENT}" stroke-width="2" stroke-linejoin="round"/>'
    )
    if len(pts) == 1:
        body.append(f'<circle cx="{sx(xs[0]):.1f}" cy="{sy(ys[0]):.1f}" r="3" fill="{ACCENT}"/>')
    body.append(
        f'<text x="{left + pw / 2:.1f}" y="{h - 6}" text-anchor="middle" '
        f'fill="{INK}">{escape(x_label)}</text>'
    )
    body.append(
        f'<text transform="translate(14 {top + ph / 2:.1f}) rotate(-90)" text-anchor="middle" '
        f'fill="{INK}">{escape(y_label)}</text>'
    )
    return _svg(h, title, body)


def _legend(series: Sequence[tuple[str, str]], y: int) -> list[str]:
    out, x = [], LABEL_W
    for name, color in series:
        out.append(f'<rect x="{x}" y="{y - 10}" width="12" height="12" rx="2" fill="{color}"/>')
        out.append(f'<text x="{x + 18}" y="{y}" fill="{INK}">{escape(name)}</text>')
        x += 30 + 8 * len(name)
    return out


def stacked_bars(
    rows: Sequence[tuple[object, Sequence[object]]],
    series: Sequence[tuple[str, str]],
    title: str,
) -> str:
    """Horizontal stacked bars: one row per label, one segment per (name, color) series."""
    clean = [(str(lbl), [max(_num(v) or 0.0, 0.0) for v in vals]) for lbl, vals in rows]
    clean = [(lbl, vals) for lbl, vals in clean if sum(vals) > 0]
    if not clean:
        return ""
    top = 30
    h = top + ROW_H * len(clean) + 10
    vmax = max(sum(v) for _, v in clean)
    pw = WIDTH - LABEL_W - 90
    body = _legend(series, 16)
    for i, (lbl, vals) in enumerate(clean):
        y = top + i * ROW_H
        body.append(
            f'<text x="{LABEL_W - 10}" y="{y + 16}" text-anchor="end" fill="{INK}">'
            f"<title>{escape(lbl)}</title>{escape(_label(lbl))}</text>"
        )
        x = float(LABEL_W)
        for (name, color), v in zip(series, vals, strict=False):
            w = v / vmax * pw
            if w > 0:
                body.append(
                    f'<rect x="{x:.1f}" y="{y + 4}" width="{max(w, 1.5):.1f}" height="{ROW_H - 8}" '
                    f'fill="{color}"><title>{escape(lbl)}: {_fmt(v)} {escape(name)}</title></rect>'
                )
            x += w
        parts = " / ".join(_fmt(v) for v in vals)
        body.append(f'<text x="{x + 8:.1f}" y="{y + 16}" fill="{MUTED}">{parts}</text>')
    return _svg(h, title, body)


def bars(rows: Sequence[tuple[object, object]], title: str, color: str = ACCENT) -> str:
    """Horizontal bars of one value per label (e.g. tensor changes per profile)."""
    clean = [(str(lbl), max(_num(v) or 0.0, 0.0)) for lbl, v in rows]
    if not clean or not any(v for _, v in clean):
        return ""
    top = 8
    h = top + ROW_H * len(clean) + 8
    vmax = max(v for _, v in clean)
    pw = WIDTH - LABEL_W - 90
    body = []
    for i, (lbl, v) in enumerate(clean):
        y = top + i * ROW_H
        w = v / vmax * pw
        body.append(
            f'<text x="{LABEL_W - 10}" y="{y + 16}" text-anchor="end" fill="{INK}">'
            f"<title>{escape(lbl)}</title>{escape(_label(lbl))}</text>"
        )
        if w > 0:
            body.append(
                f'<rect x="{LABEL_W}" y="{y + 4}" width="{max(w, 1.5):.1f}" height="{ROW_H - 8}" '
                f'fill="{color}"><title>{escape(lbl)}: {_fmt(v)}</title></rect>'
            )
        body.append(f'<text x="{LABEL_W + w + 8:.1f}" y="{y + 16}" fill="{MUTED}">{_fmt(v)}</text>')
    return _svg(h, title, body)
