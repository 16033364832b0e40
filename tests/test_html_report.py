"""The HTML comparison report: one readable chart per scenario, checked in headless Chromium.

Chromium comes from Debian's packages (``/usr/bin/chromium``; ``.ci/run`` installs
it); nothing here downloads a browser. Without it the browser test is skipped
locally, and fails in CI (``CI`` set), where it must run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from harness import Session, load_file
from harness.compare import Cell, compare, wilson
from harness.policies import PRESETS
from harness.report.html import LABEL_CHAR, PALETTE, compare_html, panel_svg
from tests.test_compare import CHAOS, GONE

SVG = "{http://www.w3.org/2000/svg}"
STRATEGIES = ["as_written", "no_retries", "transient"]


def chromium() -> str:
    """The Chromium executable, or skip (locally) / fail (in CI) saying why."""
    found = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("chromium is missing; .ci/run installs Debian's chromium package before the tests")
    pytest.skip("chromium is not installed (Debian: apt-get install chromium); CI installs it and runs this test")


def headless(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Headless Chromium that reaches nothing outside the machine: no updates, no sync, no first-run."""
    cmd = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def comparison(harness_session: Session, tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Cell], str]:
    """A small real comparison (a scripted 404 and 40% chaos, three strategies, six seeds) and its page."""
    folder = tmp_path_factory.mktemp("comparison")
    (folder / "gone.yaml").write_text(GONE)
    (folder / "chaos.yaml").write_text(CHAOS)
    scenarios = [s for f in ("gone.yaml", "chaos.yaml") for s in load_file(folder / f)]
    policies = [PRESETS[name] for name in STRATEGIES]
    cells = compare(harness_session, scenarios, policies, 6)  # type: ignore[arg-type]
    return cells, compare_html(cells, policies, 6)


def panels(page: str) -> list[ET.Element]:
    return [ET.fromstring(svg) for svg in re.findall(r'<svg class="panel".*?</svg>', page, flags=re.S)]


def label_boxes(svg: ET.Element) -> list[tuple[float, float, float, float]]:
    boxes = []
    for text in svg.iter(f"{SVG}text"):
        if text.get("class") == "point-label":
            x, y, width = float(text.get("x", 0)), float(text.get("y", 0)), len(text.text or "") * LABEL_CHAR
            x0 = x - width if text.get("text-anchor") == "end" else x
            boxes.append((x0, y - 10, x0 + width, y + 2))
    return boxes


def test_each_panel_has_every_strategy_inside_its_axes(comparison: tuple[list[Cell], str]) -> None:
    """One SVG panel per scenario; one point per strategy, within the axes; labels inside and apart."""
    cells, page = comparison
    svgs = panels(page)
    assert len(svgs) == 2
    for svg in svgs:
        width, height = float(svg.get("width", 0)), float(svg.get("height", 0))
        axes = [line for line in svg.iter(f"{SVG}line") if line.get("class") == "axis"]
        x_axis = next(
            a for a in axes if a.get("y1") == a.get("y2") and float(a.get("x2", 0)) - float(a.get("x1", 0)) > 100
        )
        y_axis = next(
            a for a in axes if a.get("x1") == a.get("x2") and float(a.get("y2", 0)) - float(a.get("y1", 0)) > 100
        )
        left, right = float(x_axis.get("x1", 0)), float(x_axis.get("x2", 0))
        top, bottom = float(y_axis.get("y1", 0)), float(y_axis.get("y2", 0))
        points = [c for c in svg.iter(f"{SVG}circle") if c.get("class") == "point"]
        assert sorted(p.get("data-strategy") for p in points) == sorted(STRATEGIES)
        for p in points:
            cx, cy, r = float(p.get("cx", 0)), float(p.get("cy", 0)), float(p.get("r", 0))
            assert left + r <= cx <= right - r and top + r <= cy <= bottom - r, (p.get("data-strategy"), cx, cy)
        texts = "".join(t.text or "" for t in svg.iter(f"{SVG}text"))
        assert "mean calls per run" in texts and "success rate" in texts
        boxes = label_boxes(svg)
        assert sorted(
            re.findall(
                "|".join(STRATEGIES),
                "".join(t.text or "" for t in svg.iter(f"{SVG}text") if t.get("class") == "point-label"),
            )
        ) == sorted(STRATEGIES)
        for i, a in enumerate(boxes):
            assert a[0] >= 0 and a[2] <= width and a[1] >= 0 and a[3] <= height, a
            for b in boxes[i + 1 :]:
                assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], ("labels overlap", a, b)


def test_crowded_panel_keeps_every_point_visible_and_labelled() -> None:
    """Eight strategies at the very same spot (a long scenario name too): dodged, each labelled once, no overlap."""
    names = [f"strategy_{i}" for i in range(8)]
    cells = [
        Cell(
            scenario="a scenario name long enough to need two lines of title, " * 3,
            strategy=name,
            runs=1,
            successes=1,
            success_rate=1.0,
            success_ci=wilson(1, 1),
            attempts_mean=4,
            attempts_p95=4,
            calls={},
            calls_mean=4.0,
            wasted_calls=0,
            virtual_s_mean=0,
            virtual_s_p95=0,
            rows_missing=None,
            rows_duplicated=None,
            wall_s=0,
        )
        for name in names
    ]
    svg = ET.fromstring(panel_svg(cells[0].scenario, cells))
    xs = sorted(float(c.get("cx", 0)) for c in svg.iter(f"{SVG}circle"))
    assert len(xs) == 8 and all(b - a >= 12 for a, b in zip(xs, xs[1:], strict=False)), xs
    titles = [t.text or "" for t in svg.iter(f"{SVG}text") if t.get("class") == "title"]
    assert len(titles) == 2 and titles[-1].endswith("…") and all(len(t) <= 62 for t in titles)
    boxes = label_boxes(svg)
    assert len(boxes) == 8
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], ("labels overlap", a, b)


def _mask(image: Any, rgb: list[int], tolerance: int) -> Any:
    """A black-and-white image: white where ``image`` has the colour ``rgb``."""
    from PIL import ImageChops

    bands = [
        band.point(lambda v, c=c: 255 if abs(v - c) <= tolerance else 0)
        for band, c in zip(image.split(), rgb, strict=True)
    ]
    return ImageChops.multiply(ImageChops.multiply(bands[0], bands[1]), bands[2])


def panel_boxes(image: Any) -> list[tuple[int, int, int, int]]:
    """The panels on the screenshot, found by their light grey borders: long vertical lines, paired left/right."""
    mask = _mask(image, [0xDD, 0xDD, 0xDD], 3)
    width, height, data = mask.width, mask.height, mask.tobytes()
    edges: list[tuple[int, int, int]] = []  # (x, top, bottom) of each border
    for x in range(width):
        run, longest, end = 0, 0, 0
        for y in range(height):
            run = run + 1 if data[y * width + x] else 0
            if run > longest:
                longest, end = run, y
        if longest >= 300 and not (edges and edges[-1][0] == x - 1):
            edges.append((x, end - longest + 1, end))
    return [(a[0], a[1], b[0], b[2]) for a, b in zip(edges[::2], edges[1::2], strict=False)]


def colour_blobs(image: Any, hex_colour: str) -> int:
    """How many solid discs of ``hex_colour`` (at least 5 x 5 pixels of it) ``image`` shows."""
    from PIL import ImageFilter

    rgb = [int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)]
    mask = _mask(image, rgb, 10).filter(ImageFilter.MinFilter(5))
    width = mask.width
    pixels = {(i % width, i // width) for i, v in enumerate(mask.tobytes()) if v}
    blobs = 0
    while pixels:
        blobs += 1
        stack = [pixels.pop()]
        while stack:
            x, y = stack.pop()
            for n in ((x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)):
                if n in pixels:
                    pixels.remove(n)
                    stack.append(n)
    return blobs


def pillow() -> Any:
    """Pillow's Image module (the dev extra), or skip (locally) / fail (in CI) saying why."""
    try:
        from PIL import Image
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("Pillow is missing; it is in the dev extra: pip install -e '.[dev]'")
        pytest.skip("Pillow is not installed: pip install -e '.[dev]'")
    return Image


def test_chart_renders_in_headless_chromium(comparison: tuple[list[Cell], str], tmp_path: Path) -> None:
    """Chromium draws both panels side by side, each strategy's colour as one point in each; the DOM holds the
    svg panels, their points and axis labels."""
    browser = chromium()
    pil = pillow()
    _, page = comparison
    html = tmp_path / "compare.html"
    html.write_text(page)
    png = tmp_path / "compare.png"
    shot = headless(browser, tmp_path / "profile", "--window-size=1200,900", f"--screenshot={png}", html.as_uri())
    assert png.exists(), shot.stderr[-2000:]
    image = pil.open(png).convert("RGB")
    assert image.size == (1200, 900)
    boxes = panel_boxes(image)
    assert len(boxes) == 2, f"expected two chart panels side by side, found {boxes}"
    for box in boxes:
        panel = image.crop(box)
        for i, name in enumerate(STRATEGIES):
            assert colour_blobs(panel, PALETTE[i]) == 1, f"{name} ({PALETTE[i]}) is not one point in panel {box}"
    dom = headless(browser, tmp_path / "profile", "--dump-dom", html.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count('<svg class="panel"') == 2
    assert dom.stdout.count('class="point"') == 2 * len(STRATEGIES)
    assert dom.stdout.count(">mean calls per run<") == 2 and dom.stdout.count(">success rate<") == 2
    for name in STRATEGIES:
        assert f'data-strategy="{name}"' in dom.stdout
