"""The strategy comparison as a self-contained HTML page: one chart per scenario, then the tables."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

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


@dataclass(frozen=True, slots=True)
class _Box:
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
    raw = span / 5
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        if raw <= m * magnitude:
            return max(m * magnitude, 0.5)
    return 10.0 * magnitude


def _runs_text(cells: list[Any]) -> str:
    low, high = min(c.runs for c in cells), max(c.runs for c in cells)
    if high == 1:
        return "scripted: 1 run per strategy"
    runs = str(low) if low == high else f"{low}-{high}"
    return f"{runs} runs per strategy (seeds); bars: 95% interval"


def _panel(scenario: str, cells: list[Any], colours: dict[str, str] | None = None) -> str:
    """One SVG panel: success rate (y) against mean calls per run (x), a labelled point per strategy.

    Strategies at the same spot are set side by side (dodged) so that each stays
    visible, and labelled together; labels are placed where they overlap
    neither another label nor a point, inside the axes.
    """
    import html

    colours = colours or strategy_colours([c.strategy for c in cells])
    title = _wrap(scenario, TITLE_CHARS, 2)
    w, h = PANEL_W, PANEL_H
    top = 22 + 17 * len(title) + 20
    plot = _Box(PLOT_LEFT, top, w - PLOT_RIGHT_PAD, h - PLOT_BOTTOM_PAD)
    label_area = _Box(plot.x0 + 2, plot.y0 - 14, w - 4, plot.y1 - 2)  # labels may use the margins, not the axes
    pad = POINT_R + 4  # 0% and 100% sit inside the frame, not on it
    raw_max: float = max(max(float(c.calls_mean) for c in cells) * 1.08, 1.0)
    step = _nice_step(raw_max)
    xmax: float = math.ceil(raw_max / step - 1e-9) * step

    def px(x: float) -> float:
        return plot.x0 + pad + (plot.x1 - plot.x0 - 2 * pad) * x / xmax

    def py(y: float) -> float:
        return plot.y0 + pad + (plot.y1 - plot.y0 - 2 * pad) * (1 - y)

    e = html.escape
    parts = [
        f'<svg class="panel" role="img" aria-label="{e(scenario)}" viewBox="0 0 {w} {h}" '
        f'width="{w}" height="{h}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{e(scenario)}</title>",
    ]
    for i, line in enumerate(title):
        parts.append(f'<text x="{w / 2}" y="{22 + 17 * i}" text-anchor="middle" class="title">{e(line)}</text>')
    parts.append(
        f'<text x="{w / 2}" y="{22 + 17 * len(title)}" text-anchor="middle" class="subtitle">'
        f"{e(_runs_text(cells))}</text>"
    )
    for tick in (0, 0.25, 0.5, 0.75, 1):
        parts.append(f'<line x1="{plot.x0}" y1="{py(tick):.1f}" x2="{plot.x1}" y2="{py(tick):.1f}" class="grid"/>')
        parts.append(
            f'<text x="{plot.x0 - 6}" y="{py(tick) + 4:.1f}" text-anchor="end" class="tick">{pct(tick)}</text>'
        )
    n_ticks = round(xmax / step)
    for k in range(n_ticks + 1):
        x = k * step
        parts.append(f'<line x1="{px(x):.1f}" y1="{plot.y1}" x2="{px(x):.1f}" y2="{plot.y1 + 4}" class="axis"/>')
        parts.append(f'<text x="{px(x):.1f}" y="{plot.y1 + 17}" text-anchor="middle" class="tick">{x:g}</text>')
    parts.append(f'<line x1="{plot.x0}" y1="{plot.y1}" x2="{plot.x1}" y2="{plot.y1}" class="axis"/>')
    parts.append(f'<line x1="{plot.x0}" y1="{plot.y0}" x2="{plot.x0}" y2="{plot.y1}" class="axis"/>')
    parts.append(
        f'<text x="{(plot.x0 + plot.x1) / 2}" y="{h - 12}" text-anchor="middle" class="label">mean calls per run</text>'
    )
    mid = (plot.y0 + plot.y1) / 2
    parts.append(
        f'<text x="16" y="{mid}" text-anchor="middle" class="label" '
        f'transform="rotate(-90 16 {mid})">success rate</text>'
    )

    # Points at the same spot form a group, dodged side by side and labelled together.
    groups: list[list[Any]] = []
    for c in cells:
        for g in groups:
            if (
                abs(px(g[0].calls_mean) - px(c.calls_mean)) < 2 * POINT_R
                and abs(py(g[0].success_rate) - py(c.success_rate)) < 2 * POINT_R
            ):
                g.append(c)
                break
        else:
            groups.append([c])
    dodge = 2 * POINT_R + 2
    placed: list[tuple[list[Any], list[float], float]] = []  # (cells, their x, y)
    for g in groups:
        centre = sum(px(c.calls_mean) for c in g) / len(g)
        xs = [centre + (j - (len(g) - 1) / 2) * dodge for j in range(len(g))]
        shift = max(plot.x0 + POINT_R + 2 - xs[0], 0.0) or min(plot.x1 - POINT_R - 2 - xs[-1], 0.0)
        placed.append((g, [x + shift for x in xs], py(g[0].success_rate)))
    obstacles = [
        _Box(x - POINT_R - 2, y - POINT_R - 2, x + POINT_R + 2, y + POINT_R + 2) for _, xs, y in placed for x in xs
    ]
    whiskers: list[_Box] = []
    for g, xs, _ in placed:
        for c, x in zip(g, xs, strict=True):
            colour = colours.get(c.strategy, PALETTE[0])
            lo, hi = py(c.success_ci[0]), py(c.success_ci[1])
            whiskers.append(_Box(x - 4, hi - 1, x + 4, lo + 1))
            parts.append(
                f'<g class="interval" stroke="{colour}" stroke-width="2" opacity="0.45">'
                f'<line x1="{x:.1f}" y1="{lo:.1f}" x2="{x:.1f}" y2="{hi:.1f}"/>'
                f'<line x1="{x - 4:.1f}" y1="{lo:.1f}" x2="{x + 4:.1f}" y2="{lo:.1f}"/>'
                f'<line x1="{x - 4:.1f}" y1="{hi:.1f}" x2="{x + 4:.1f}" y2="{hi:.1f}"/></g>'
            )
    for g, xs, y in placed:
        for c, x in zip(g, xs, strict=True):
            colour = colours.get(c.strategy, PALETTE[0])
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{POINT_R:g}" fill="{colour}" class="point" '
                f'data-strategy="{e(c.strategy)}"><title>{e(c.strategy)}: {pct(c.success_rate)} success '
                f"({pct(c.success_ci[0])}-{pct(c.success_ci[1])}), {c.calls_mean:.2f} calls/run, "
                f"{c.runs} run(s)</title></circle>"
            )
    labels: list[_Box] = []
    for g, xs, y in sorted(placed, key=lambda p: (p[2], p[1][0])):
        lw = max(len(c.strategy) for c in g) * LABEL_CHAR + 2
        lh = LABEL_LINE * len(g)
        gx0, gx1 = xs[0] - POINT_R, xs[-1] + POINT_R
        candidates = [
            _Box(gx1 + 6, y - lh / 2, gx1 + 6 + lw, y + lh / 2),
            _Box(gx0 - 6 - lw, y - lh / 2, gx0 - 6, y + lh / 2),
            _Box((gx0 + gx1 - lw) / 2, y - POINT_R - 5 - lh, (gx0 + gx1 + lw) / 2, y - POINT_R - 5),
            _Box((gx0 + gx1 - lw) / 2, y + POINT_R + 5, (gx0 + gx1 + lw) / 2, y + POINT_R + 5 + lh),
        ]
        for k in range(1, 16):
            for sign in (-1, 1):
                dy = sign * k * LABEL_LINE
                candidates.append(_Box(gx1 + 10, y - lh / 2 + dy, gx1 + 10 + lw, y + lh / 2 + dy))
                candidates.append(_Box(gx0 - 10 - lw, y - lh / 2 + dy, gx0 - 10, y + lh / 2 + dy))
        inside = [b for b in candidates if b.within(label_area)] or candidates

        def cost(rank: int, b: _Box) -> float:
            # Covering a label or a point is never worth it; crossing a faint interval bar is, a little.
            hidden = sum(b.overlap(o) for o in labels) + sum(b.overlap(o) for o in obstacles)
            return hidden * 1000 + sum(b.overlap(o) for o in whiskers) * 0.05 + rank

        best = min(enumerate(inside), key=lambda rb: cost(*rb))[1]
        labels.append(best)
        if best.y1 < y - POINT_R or best.y0 > y + POINT_R:  # moved off the point's line: draw a leader
            lx = best.x0 if best.x0 > gx1 else best.x1 if best.x1 < gx0 else (best.x0 + best.x1) / 2
            ly = best.y1 if best.y1 < y else best.y0
            ax = gx1 if lx > gx1 else gx0 if lx < gx0 else (gx0 + gx1) / 2
            parts.append(f'<line x1="{ax:.1f}" y1="{y:.1f}" x2="{lx:.1f}" y2="{ly:.1f}" class="leader"/>')
        anchor = ' text-anchor="end"' if best.x1 <= gx0 else ""
        tx = best.x1 if anchor else best.x0
        for j, c in enumerate(g):
            parts.append(
                f'<text x="{tx:.1f}" y="{best.y0 + LABEL_LINE * (j + 1) - 3:.1f}" class="point-label"{anchor} '
                f'fill="{colours.get(c.strategy, PALETTE[0])}">{e(c.strategy)}</text>'
            )
    parts.append("</svg>")
    return "\n".join(parts)


def compare_html(cells: list[Any], policies: list[Any], seeds: int) -> str:
    """A self-contained page: one chart panel per scenario, then the table and the strategies."""
    import html

    e = html.escape
    colours = strategy_colours([p.name for p in policies] + [c.strategy for c in cells])
    by_scenario: dict[str, list[Any]] = {}
    for c in cells:
        by_scenario.setdefault(c.scenario, []).append(c)
    panels = "\n".join(_panel(name, group, colours) for name, group in by_scenario.items())
    legend = " ".join(
        f'<span class="key"><span class="swatch" style="background:{colours[p.name]}"></span>{e(p.name)}</span>'
        for p in policies
    )
    head = "".join(f"<th>{e(h)}</th>" for h in COMPARE_HEADER)
    body = "\n".join("<tr>" + "".join(f"<td>{e(v)}</td>" for v in r) + "</tr>" for r in compare_rows(cells))
    strategies = "\n".join(
        f'<tr><td class="name"><span class="swatch" style="background:{colours[p.name]}"></span>{e(p.name)}</td>'
        f"<td><code>{e(p.task_options())}</code></td>"
        f"<td>{e(p.description)}{' (source: ' + e(p.source) + ')' if p.source else ''}</td></tr>"
        for p in policies
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Fault-tolerance strategies compared</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }}
.panels {{ display: flex; flex-wrap: wrap; gap: 16px; }}
.panel {{ border: 1px solid #ddd; background: #fff; }}
.title {{ font-weight: 600; font-size: 13px; fill: #222; }}
.subtitle {{ font-size: 11px; fill: #666; }}
.axis {{ stroke: #333; stroke-width: 1.2; }}
.grid {{ stroke: #eee; }}
.leader {{ stroke: #999; stroke-width: 0.8; }}
.point {{ stroke: #fff; stroke-width: 1.5; }}
.tick {{ font-size: 11px; fill: #555; }}
.label {{ font-size: 12px; fill: #222; }}
.point-label {{ font-size: 11px; font-weight: 600; }}
.legend {{ margin: 8px 0 16px; }}
.key {{ margin-right: 18px; white-space: nowrap; }}
.swatch {{ display: inline-block; width: 11px; height: 11px; border-radius: 50%; margin-right: 5px;
  vertical-align: -1px; }}
table {{ border-collapse: collapse; margin-top: 24px; }}
td, th {{ border: 1px solid #ddd; padding: 4px 8px; text-align: left; }}
td.name {{ white-space: nowrap; }}
</style></head><body>
<h1>Fault-tolerance strategies compared</h1>
<p>Each panel is one scenario: success rate (bars: its 95% Wilson interval) against mean calls per run,
one point per strategy. Up and to the left is better. Random scenarios ran seeds 0..{seeds - 1}.</p>
<div class="legend">{legend}</div>
<div class="panels">
{panels}
</div>
<table id="cells"><thead><tr>{head}</tr></thead><tbody>
{body}
</tbody></table>
<table id="strategies"><thead><tr><th>strategy</th><th>Prefect options</th><th>what it is</th></tr></thead><tbody>
{strategies}
</tbody></table>
</body></html>
"""
