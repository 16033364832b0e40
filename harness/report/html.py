"""The strategy comparison as a self-contained HTML page: one chart per scenario, then the tables.

The geometry of a chart panel (scales, ticks, dodged points, label placement) is
computed here into plain frozen dataclasses, so that it can be read and tested
as numbers; the markup lives in the package's jinja2 templates (``templates/``),
autoescaped, because scenario and strategy names, descriptions and sources come
from users' files.

Cells and policies are duck-typed (``harness.compare.Cell``, ``harness.policies.Policy``):
the report layer does not import the layers that produce them.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jinja2

from harness.report.comparison import COMPARE_HEADER, compare_rows, pct

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22")

# Chart geometry, in SVG pixels. Text widths are estimated (bold 11 px sans: about 7 px a character).
PANEL_W, PANEL_H = 540, 390
PLOT_LEFT, PLOT_RIGHT_PAD, PLOT_BOTTOM_PAD = 60, 18, 50
POINT_R, LABEL_LINE, LABEL_CHAR = 6.0, 13.0, 7.0
TITLE_CHARS = 62


def strategy_colours(names: list[str]) -> dict[str, str]:
    """One colour per strategy, the same in every panel: the palette in the order strategies first appear."""
    out: dict[str, str] = {}
    for name in names:
        if name not in out:
            out[name] = PALETTE[len(out) % len(PALETTE)]
    return out


# What the templates draw. Coordinates are numbers, formatted by the templates as the page always had them: some
# exactly as Python prints them (integers stay integers), the others to one decimal.


@dataclass(frozen=True, slots=True)
class Line:
    """A straight line: a grid line, a tick mark, an axis or a leader from a point to its moved label."""

    x1: float
    y1: float
    x2: float
    y2: float


@dataclass(frozen=True, slots=True)
class Text:
    """A piece of text and where it is anchored."""

    x: float
    y: float
    text: str


@dataclass(frozen=True, slots=True)
class Tick:
    """An axis tick: its mark (a grid line across the plot for y, a notch below the axis for x) and its label."""

    mark: Line
    label: Text


@dataclass(frozen=True, slots=True)
class Interval:
    """The whisker of a point's 95% interval: a bar at ``x`` from ``lo`` to ``hi``, capped from ``x0`` to ``x1``."""

    x: float
    x0: float
    x1: float
    lo: float
    hi: float
    colour: str


@dataclass(frozen=True, slots=True)
class Point:
    """One strategy's point where it is drawn (dodged off its coincident neighbours), with its hover text."""

    strategy: str
    x: float
    y: float
    r: float
    colour: str
    tooltip: str


@dataclass(frozen=True, slots=True)
class LabelLine:
    """One strategy's name in a group's label, in the strategy's colour."""

    y: float
    text: str
    colour: str


@dataclass(frozen=True, slots=True)
class Label:
    """The label of a group of coincident points: a name a line, right-aligned when it sits left of the group."""

    x: float
    end: bool
    lines: tuple[LabelLine, ...]
    leader: Line | None


@dataclass(frozen=True, slots=True)
class Panel:
    """Everything one scenario's chart draws, in the order it is drawn (later elements on top)."""

    scenario: str
    width: int
    height: int
    title: tuple[Text, ...]
    subtitle: Text
    y_ticks: tuple[Tick, ...]
    x_ticks: tuple[Tick, ...]
    x_axis: Line
    y_axis: Line
    x_label: Text
    y_label: Text
    intervals: tuple[Interval, ...]
    points: tuple[Point, ...]
    labels: tuple[Label, ...]


@dataclass(frozen=True, slots=True)
class Strategy:
    """A strategy as the page lists it, in the legend and in the strategies table."""

    name: str
    colour: str
    options: str
    description: str
    source: str


# Layout.


@dataclass(frozen=True, slots=True)
class _Box:
    """A rectangle a label may take, or that it should not cover: labels, points, interval bars."""

    x0: float
    y0: float
    x1: float
    y1: float

    def overlap(self, other: _Box) -> float:
        w = min(self.x1, other.x1) - max(self.x0, other.x0)
        h = min(self.y1, other.y1) - max(self.y0, other.y0)
        return w * h if w > 0 and h > 0 else 0.0

    def within(self, other: _Box) -> bool:
        return self.x0 >= other.x0 and self.x1 <= other.x1 and self.y0 >= other.y0 and self.y1 <= other.y1


@dataclass(frozen=True, slots=True)
class _Scale:
    """Data to pixels: calls per run (0 to ``xmax``) across, success rate (0 to 1) up, ``pad`` inside the frame."""

    plot: _Box
    step: float
    xmax: float
    pad: float

    def x(self, calls: float) -> float:
        return self.plot.x0 + self.pad + (self.plot.x1 - self.plot.x0 - 2 * self.pad) * calls / self.xmax

    def y(self, rate: float) -> float:
        return self.plot.y0 + self.pad + (self.plot.y1 - self.plot.y0 - 2 * self.pad) * (1 - rate)


@dataclass(frozen=True, slots=True)
class _Group:
    """Cells whose points coincide: set side by side at ``xs`` on their common ``y``, and labelled together."""

    cells: tuple[Any, ...]
    xs: tuple[float, ...]
    y: float

    @property
    def left(self) -> float:
        return self.xs[0] - POINT_R

    @property
    def right(self) -> float:
        return self.xs[-1] + POINT_R


def _wrap(text: str, width: int, lines: int) -> list[str]:
    """``text`` in at most ``lines`` lines of ``width`` characters, the last cut with an ellipsis."""
    out: list[str] = []
    current = ""
    for word in text.split():
        if current and len(current) + 1 + len(word) > width:
            out.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        out.append(current)
    if len(out) > lines:
        out = out[:lines]
        out[-1] = out[-1][: width - 1].rstrip() + "…"
    return [line if len(line) <= width else line[: width - 1] + "…" for line in out] or [""]


def _nice_step(span: float) -> float:
    """About a fifth of ``span``, rounded to 1, 2, 2.5 or 5 times a power of ten, so the ticks read as round."""
    raw = span / 5
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if raw <= m * magnitude:
            return max(m * magnitude, 0.5)
    return 10.0 * magnitude


def _runs_text(cells: Sequence[Any]) -> str:
    """The subtitle: how many runs each point stands for, since a scripted single run has no interval to speak of."""
    low, high = min(c.runs for c in cells), max(c.runs for c in cells)
    if high == 1:
        return "scripted: 1 run per strategy"
    runs = str(low) if low == high else f"{low}-{high}"
    return f"{runs} runs per strategy (seeds); bars: 95% interval"


def _scale(cells: Sequence[Any], top: int) -> _Scale:
    """The plot area below a title ending at ``top``, its x axis rounded up to a whole step past the most calls."""
    plot = _Box(PLOT_LEFT, top, PANEL_W - PLOT_RIGHT_PAD, PANEL_H - PLOT_BOTTOM_PAD)
    raw_max: float = max(max(float(c.calls_mean) for c in cells) * 1.08, 1.0)
    step = _nice_step(raw_max)
    xmax: float = math.ceil(raw_max / step - 1e-9) * step
    return _Scale(plot, step, xmax, POINT_R + 4)  # padded: 0% and 100% sit inside the frame, not on it


def _y_ticks(scale: _Scale) -> tuple[Tick, ...]:
    """Quarters of the success rate, each with a grid line across the plot to read the points against."""
    plot = scale.plot
    return tuple(
        Tick(Line(plot.x0, scale.y(t), plot.x1, scale.y(t)), Text(plot.x0 - 6, scale.y(t) + 4, pct(t)))
        for t in (0, 0.25, 0.5, 0.75, 1)
    )


def _x_ticks(scale: _Scale) -> tuple[Tick, ...]:
    """A notch and a number every ``step`` calls, from 0 to ``xmax``."""
    plot = scale.plot
    at = [k * scale.step for k in range(round(scale.xmax / scale.step) + 1)]
    return tuple(
        Tick(Line(scale.x(x), plot.y1, scale.x(x), plot.y1 + 4), Text(scale.x(x), plot.y1 + 17, f"{x:g}")) for x in at
    )


def _groups(cells: Sequence[Any], scale: _Scale) -> list[list[Any]]:
    """Cells whose points would overlap (less than a diameter apart both ways), in the order they first appear."""
    groups: list[list[Any]] = []
    for c in cells:
        for g in groups:
            if (
                abs(scale.x(g[0].calls_mean) - scale.x(c.calls_mean)) < 2 * POINT_R
                and abs(scale.y(g[0].success_rate) - scale.y(c.success_rate)) < 2 * POINT_R
            ):
                g.append(c)
                break
        else:
            groups.append([c])
    return groups


def _dodge(cells: list[Any], scale: _Scale) -> _Group:
    """A group's points side by side around their mean x (so each stays visible), moved back inside the axes."""
    dodge = 2 * POINT_R + 2
    centre = sum(scale.x(c.calls_mean) for c in cells) / len(cells)
    xs = [centre + (j - (len(cells) - 1) / 2) * dodge for j in range(len(cells))]
    plot = scale.plot
    shift = max(plot.x0 + POINT_R + 2 - xs[0], 0.0) or min(plot.x1 - POINT_R - 2 - xs[-1], 0.0)
    return _Group(tuple(cells), tuple(x + shift for x in xs), scale.y(cells[0].success_rate))


def _tooltip(cell: Any) -> str:
    """What hovering a point shows: the exact numbers the chart only places."""
    lo, hi = cell.success_ci
    return (
        f"{cell.strategy}: {pct(cell.success_rate)} success ({pct(lo)}-{pct(hi)}), "
        f"{cell.calls_mean:.2f} calls/run, {cell.runs} run(s)"
    )


def _intervals(groups: list[_Group], colours: dict[str, str], scale: _Scale) -> tuple[Interval, ...]:
    """Each point's interval, drawn first so that the points and labels stay on top of the faint bars."""
    out: list[Interval] = []
    for g in groups:
        for c, x in zip(g.cells, g.xs, strict=True):
            lo, hi = scale.y(c.success_ci[0]), scale.y(c.success_ci[1])
            out.append(Interval(x, x - 4, x + 4, lo, hi, colours.get(c.strategy, PALETTE[0])))
    return tuple(out)


def _points(groups: list[_Group], colours: dict[str, str]) -> tuple[Point, ...]:
    """Every strategy's point at its dodged x, in the cells' order."""
    return tuple(
        Point(c.strategy, x, g.y, POINT_R, colours.get(c.strategy, PALETTE[0]), _tooltip(c))
        for g in groups
        for c, x in zip(g.cells, g.xs, strict=True)
    )


def _candidates(group: _Group) -> list[_Box]:
    """Where a group's label may go, best first: beside, above, below, then ever further up or down beside."""
    y, gx0, gx1 = group.y, group.left, group.right
    lw = max(len(c.strategy) for c in group.cells) * LABEL_CHAR + 2
    lh = LABEL_LINE * len(group.cells)
    out = [
        _Box(gx1 + 6, y - lh / 2, gx1 + 6 + lw, y + lh / 2),
        _Box(gx0 - 6 - lw, y - lh / 2, gx0 - 6, y + lh / 2),
        _Box((gx0 + gx1 - lw) / 2, y - POINT_R - 5 - lh, (gx0 + gx1 + lw) / 2, y - POINT_R - 5),
        _Box((gx0 + gx1 - lw) / 2, y + POINT_R + 5, (gx0 + gx1 + lw) / 2, y + POINT_R + 5 + lh),
    ]
    for k in range(1, 16):
        for sign in (-1, 1):
            dy = sign * k * LABEL_LINE
            out.append(_Box(gx1 + 10, y - lh / 2 + dy, gx1 + 10 + lw, y + lh / 2 + dy))
            out.append(_Box(gx0 - 10 - lw, y - lh / 2 + dy, gx0 - 10, y + lh / 2 + dy))
    return out


def _best_box(
    candidates: list[_Box], area: _Box, labels: list[_Box], obstacles: list[_Box], whiskers: list[_Box]
) -> _Box:
    """The candidate inside ``area`` that hides least: the earliest of those that hide nothing, if any do."""
    inside = [b for b in candidates if b.within(area)] or candidates

    def cost(rank: int, b: _Box) -> float:
        # Covering a label or a point is never worth it; crossing a faint interval bar is, a little.
        hidden = sum(b.overlap(o) for o in labels) + sum(b.overlap(o) for o in obstacles)
        return hidden * 1000 + sum(b.overlap(o) for o in whiskers) * 0.05 + rank

    return min(enumerate(inside), key=lambda rb: cost(*rb))[1]


def _leader(group: _Group, box: _Box) -> Line | None:
    """A line from the group to its label when the label moved off the points' line, so it reads as theirs."""
    y, gx0, gx1 = group.y, group.left, group.right
    if not (box.y1 < y - POINT_R or box.y0 > y + POINT_R):
        return None
    lx = box.x0 if box.x0 > gx1 else box.x1 if box.x1 < gx0 else (box.x0 + box.x1) / 2
    ly = box.y1 if box.y1 < y else box.y0
    ax = gx1 if lx > gx1 else gx0 if lx < gx0 else (gx0 + gx1) / 2
    return Line(ax, y, lx, ly)


def _label(group: _Group, box: _Box, colours: dict[str, str]) -> Label:
    """The names in ``box``, aligned towards the group: right-aligned when the box is left of the points."""
    end = box.x1 <= group.left
    lines = tuple(
        LabelLine(box.y0 + LABEL_LINE * (j + 1) - 3, c.strategy, colours.get(c.strategy, PALETTE[0]))
        for j, c in enumerate(group.cells)
    )
    return Label(box.x1 if end else box.x0, end, lines, _leader(group, box))


def _labels(
    groups: list[_Group], intervals: tuple[Interval, ...], colours: dict[str, str], area: _Box
) -> tuple[Label, ...]:
    """The groups' labels, placed top to bottom, each where it overlaps neither another label nor a point."""
    obstacles = [
        _Box(x - POINT_R - 2, g.y - POINT_R - 2, x + POINT_R + 2, g.y + POINT_R + 2) for g in groups for x in g.xs
    ]
    whiskers = [_Box(i.x0, i.hi - 1, i.x1, i.lo + 1) for i in intervals]
    boxes: list[_Box] = []
    out: list[Label] = []
    for g in sorted(groups, key=lambda g: (g.y, g.xs[0])):
        box = _best_box(_candidates(g), area, boxes, obstacles, whiskers)
        boxes.append(box)
        out.append(_label(g, box, colours))
    return tuple(out)


def layout_panel(scenario: str, cells: Sequence[Any], colours: dict[str, str] | None = None) -> Panel:
    """One panel's geometry: success rate (y) against mean calls per run (x), a labelled point per strategy.

    Strategies at the same spot are set side by side (dodged) so that each stays
    visible, and labelled together; labels are placed where they overlap
    neither another label nor a point, inside the axes.
    """
    colours = colours or strategy_colours([c.strategy for c in cells])
    title = _wrap(scenario, TITLE_CHARS, 2)
    scale = _scale(cells, top=22 + 17 * len(title) + 20)
    plot = scale.plot
    label_area = _Box(plot.x0 + 2, plot.y0 - 14, PANEL_W - 4, plot.y1 - 2)  # labels may use the margins, not the axes
    groups = [_dodge(g, scale) for g in _groups(cells, scale)]
    intervals = _intervals(groups, colours, scale)
    return Panel(
        scenario=scenario,
        width=PANEL_W,
        height=PANEL_H,
        title=tuple(Text(PANEL_W / 2, 22 + 17 * i, line) for i, line in enumerate(title)),
        subtitle=Text(PANEL_W / 2, 22 + 17 * len(title), _runs_text(cells)),
        y_ticks=_y_ticks(scale),
        x_ticks=_x_ticks(scale),
        x_axis=Line(plot.x0, plot.y1, plot.x1, plot.y1),
        y_axis=Line(plot.x0, plot.y0, plot.x0, plot.y1),
        x_label=Text((plot.x0 + plot.x1) / 2, PANEL_H - 12, "mean calls per run"),
        y_label=Text(16, (plot.y0 + plot.y1) / 2, "success rate"),
        intervals=intervals,
        points=_points(groups, colours),
        labels=_labels(groups, intervals, colours, label_area),
    )


# Rendering.


@functools.cache
def _environment() -> jinja2.Environment:
    """The templates, loaded once; autoescaped, since every name on the page may come from a user's file."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("harness.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,  # a line holding only a {% tag %} leaves no blank line in the page
    )
    env.filters["fmt"] = format  # {{ x|fmt(".1f") }} is f"{x:.1f}"
    return env


def panel_svg(scenario: str, cells: Sequence[Any], colours: dict[str, str] | None = None) -> str:
    """One scenario's chart as an SVG element (the ``panel_svg`` macro of ``templates/panel.svg.j2``)."""
    macros = _environment().get_template("panel.svg.j2").module
    return str(macros.panel_svg(layout_panel(scenario, cells, colours)))  # type: ignore[attr-defined]


def compare_html(cells: list[Any], policies: list[Any], seeds: int) -> str:
    """A self-contained page: one chart panel per scenario, then the table and the strategies."""
    colours = strategy_colours([p.name for p in policies] + [c.strategy for c in cells])
    by_scenario: dict[str, list[Any]] = {}
    for c in cells:
        by_scenario.setdefault(c.scenario, []).append(c)
    return (
        _environment()
        .get_template("compare.html.j2")
        .render(
            seeds=seeds,
            panels=[layout_panel(name, group, colours) for name, group in by_scenario.items()],
            header=COMPARE_HEADER,
            rows=compare_rows(cells),
            strategies=[Strategy(p.name, colours[p.name], p.task_options(), p.description, p.source) for p in policies],
        )
    )
