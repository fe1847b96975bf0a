"""Charts for the operators' dashboard, drawn on the server as SVG: pure functions from numbers to
a string of markup, no script and no inline style (the page's CSP forbids both).

- ``line_chart``: one line per series over time (``area=True`` fills under a single series);
  ``None`` is a gap (a rate with nothing to divide).
- ``stacked_bars``: one bar per time bucket, stacked by series.
- ``hbars``: one horizontal bar per item (shops, drivers, reasons, channels).
- ``share_bar``: one bar split by each part's share of the whole, with a legend.

Every chart is an ``<svg role="img">`` named by its ``<title>`` and summed up in its ``<desc>``
(screen readers read both); each bar, point and segment carries its own ``<title>`` with its
label and value, so every number drawn is also text. A chart with nothing to draw says so
(``empty``) instead of drawing an empty frame. Colours are ``fill``/``stroke`` attributes from
one palette; text takes the ``chart-*`` classes of hub/static/dashboard.css.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from xml.sax.saxutils import escape

__all__ = ["NOTHING_YET", "PALETTE", "empty", "hbars", "line_chart", "nice_max", "number", "share_bar", "stacked_bars"]

PALETTE = ("#2f6fb0", "#e07b39", "#3a9a5b", "#c44e52", "#8172b2", "#937860", "#d4679f", "#6f7780")
NOTHING_YET = "Nothing yet"
WIDTH = 640
PLOT_HEIGHT = 180
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 26
LEGEND_ROW = 20


def number(value: float, unit: str = "") -> str:
    """A value as the charts write it: whole numbers without decimals, others with one."""
    text = str(int(value)) if float(value).is_integer() else f"{value:.1f}"
    return f"{text}{unit}"


def nice_max(value: float) -> float:
    """The top of an axis: the next 1, 2, 2.5 or 5 times a power of ten at or above ``value``."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return float(step * power)
    return float(10 * power)  # pragma: no cover - the loop ends at 10 * power


def _id(chart_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in chart_id) or "chart"


def _frame(chart_id: str, title: str, desc: str, height: int, body: str) -> str:
    cid = _id(chart_id)
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{cid}" viewBox="0 0 {WIDTH} {height}" '
        f'role="img" aria-labelledby="{cid}-title {cid}-desc">'
        f'<title id="{cid}-title">{escape(title)}</title><desc id="{cid}-desc">{escape(desc)}</desc>{body}</svg>'
    )


def empty(chart_id: str, title: str, message: str = NOTHING_YET) -> str:
    """The chart's place when there is nothing to draw: its title and a friendly line."""
    body = f'<text class="chart-empty" x="{WIDTH / 2}" y="34" text-anchor="middle">{escape(message)}</text>'
    return _frame(chart_id, title, message, 56, body)


def _grid(top_value: float, unit: str) -> str:
    """Four horizontal grid lines with their values on the left axis."""
    parts = []
    for i in range(5):
        value = top_value * i / 4
        y = TOP + PLOT_HEIGHT - PLOT_HEIGHT * i / 4
        parts.append(
            f'<line class="chart-grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#d8dce0"/>'
        )
        tick = escape(number(value, unit))
        parts.append(f'<text class="chart-axis" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{tick}</text>')
    return "".join(parts)


def _x_labels(labels: Sequence[str], x_of: list[float]) -> str:
    """The time labels under the plot, thinned to about eight so they never overlap."""
    step = max(1, math.ceil(len(labels) / 8))
    y = TOP + PLOT_HEIGHT + 18
    return "".join(
        f'<text class="chart-axis" x="{x_of[i]:.1f}" y="{y}" text-anchor="middle">{escape(labels[i])}</text>'
        for i in range(0, len(labels), step)
    )


def _legend(names: Sequence[str], y: float) -> str:
    parts, x = [], float(LEFT)
    for i, name in enumerate(names):
        colour = PALETTE[i % len(PALETTE)]
        parts.append(f'<rect x="{x:.1f}" y="{y - 9:.1f}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text class="chart-legend" x="{x + 14:.1f}" y="{y:.1f}">{escape(name)}</text>')
        x += 24 + 7 * len(name)
    return "".join(parts)


def _y(value: float, top_value: float) -> float:
    return TOP + PLOT_HEIGHT - PLOT_HEIGHT * value / top_value


def line_chart(
    chart_id: str,
    title: str,
    labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    unit: str = "",
    max_value: float | None = None,
    area: bool = False,
) -> str:
    """One line per series across ``labels`` (time buckets); a point per known value, with its title."""
    known = [v for values in series.values() for v in values if v is not None]
    if not labels or not known:
        return empty(chart_id, title)
    top_value = max_value or nice_max(max(known))
    span = (WIDTH - LEFT - RIGHT) / max(1, len(labels) - 1)
    x_of = [LEFT + span * i if len(labels) > 1 else (LEFT + WIDTH - RIGHT) / 2 for i in range(len(labels))]
    body = [_grid(top_value, unit), _x_labels(labels, x_of)]
    for n, (name, values) in enumerate(series.items()):
        colour = PALETTE[n % len(PALETTE)]
        points = [(x_of[i], _y(v, top_value), labels[i], v) for i, v in enumerate(values) if v is not None]
        if not points:
            continue
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in points)
        if area and len(series) == 1:
            base = TOP + PLOT_HEIGHT
            outline = f"{points[0][0]:.1f},{base} {path} {points[-1][0]:.1f},{base}"
            body.append(f'<polygon points="{outline}" fill="{colour}" fill-opacity="0.18"/>')
        body.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for x, y, label, v in points:
            tip = escape(f"{label} {name}: {number(v, unit)}")
            body.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"><title>{tip}</title></circle>')
    body.append(_legend(list(series), TOP + PLOT_HEIGHT + 40))
    desc = "; ".join(_summary(name, values, unit) for name, values in series.items())
    return _frame(chart_id, title, desc, TOP + PLOT_HEIGHT + 48, "".join(body))


def _summary(name: str, values: Sequence[float | None], unit: str) -> str:
    known = [v for v in values if v is not None]
    if not known:
        return f"{name}: no data"
    if unit == "%":
        latest, low, high = (number(v, unit) for v in (known[-1], min(known), max(known)))
        return f"{name}: latest {latest}, lowest {low}, highest {high}"
    return f"{name}: total {number(sum(known), unit)}, highest {number(max(known), unit)}"


def stacked_bars(
    chart_id: str, title: str, labels: Sequence[str], series: Mapping[str, Sequence[float]], *, unit: str = ""
) -> str:
    """One bar per label (time bucket), its series stacked bottom-up in legend order."""
    totals = [sum(values[i] for values in series.values()) for i in range(len(labels))]
    if not labels or not any(totals):
        return empty(chart_id, title)
    top_value = nice_max(max(totals))
    slot = (WIDTH - LEFT - RIGHT) / len(labels)
    bar = max(1.0, slot * 0.7)
    x_of = [LEFT + slot * i + slot / 2 for i in range(len(labels))]
    body = [_grid(top_value, unit), _x_labels(labels, x_of)]
    for i, label in enumerate(labels):
        base = 0.0
        for n, (name, values) in enumerate(series.items()):
            value = values[i]
            if not value:
                continue
            y_top, y_bottom = _y(base + value, top_value), _y(base, top_value)
            tip = escape(f"{label} {name}: {number(value, unit)}")
            body.append(
                f'<rect x="{x_of[i] - bar / 2:.1f}" y="{y_top:.1f}" width="{bar:.1f}" height="{y_bottom - y_top:.1f}" '
                f'fill="{PALETTE[n % len(PALETTE)]}"><title>{tip}</title></rect>'
            )
            base += value
    body.append(_legend(list(series), TOP + PLOT_HEIGHT + 40))
    desc = "; ".join(f"{name}: total {number(sum(values), unit)}" for name, values in series.items())
    return _frame(chart_id, title, desc, TOP + PLOT_HEIGHT + 48, "".join(body))


def hbars(
    chart_id: str,
    title: str,
    items: Sequence[tuple[str, float]],
    *,
    unit: str = "",
    max_value: float | None = None,
    notes: Sequence[str] | None = None,
) -> str:
    """One horizontal bar per ``(label, value)``, the value written after it (and ``notes[i]``,
    e.g. the count behind a rate, after that)."""
    if not items:
        return empty(chart_id, title)
    top_value = max_value or nice_max(max(v for _, v in items))
    label_width, row = 170, 24
    room = WIDTH - label_width - 150
    body = []
    for i, (label, value) in enumerate(items):
        y = 8 + i * row
        width = room * min(value, top_value) / top_value
        note = f" ({notes[i]})" if notes and notes[i] else ""
        text = f"{number(value, unit)}{note}"
        shown = label if len(label) <= 24 else label[:23] + "…"
        body.append(
            f'<text class="chart-label" x="{label_width - 8}" y="{y + 13}" text-anchor="end">{escape(shown)}</text>'
        )
        body.append(
            f'<rect x="{label_width}" y="{y + 2}" width="{width:.1f}" height="{row - 8}" fill="{PALETTE[0]}">'
            f"<title>{escape(f'{label}: {text}')}</title></rect>"
        )
        body.append(f'<text class="chart-value" x="{label_width + width + 6:.1f}" y="{y + 13}">{escape(text)}</text>')
    desc = "; ".join(f"{label}: {number(value, unit)}" for label, value in items)
    return _frame(chart_id, title, desc, 16 + len(items) * row, "".join(body))


def share_bar(chart_id: str, title: str, parts: Sequence[tuple[str, float]]) -> str:
    """One bar split into each part's share of the total; the legend gives count and share."""
    total = sum(v for _, v in parts)
    if total <= 0:
        return empty(chart_id, title)
    room, x, body, described = WIDTH - LEFT - RIGHT, float(LEFT), [], []
    for n, (name, value) in enumerate(parts):
        share = 100 * value / total
        text = f"{name}: {number(value)} ({number(round(share, 1), '%')})"
        described.append(text)
        width = room * value / total
        if width > 0:
            body.append(
                f'<rect x="{x:.1f}" y="8" width="{width:.1f}" height="28" fill="{PALETTE[n % len(PALETTE)]}">'
                f"<title>{escape(text)}</title></rect>"
            )
        x += width
    for n, text in enumerate(described):
        y = 56 + n * LEGEND_ROW
        colour = PALETTE[n % len(PALETTE)]
        body.append(f'<rect x="{LEFT}" y="{y - 9}" width="10" height="10" fill="{colour}"/>')
        body.append(f'<text class="chart-legend" x="{LEFT + 16}" y="{y}">{escape(text)}</text>')
    return _frame(chart_id, title, "; ".join(described), 56 + len(parts) * LEGEND_ROW, "".join(body))
