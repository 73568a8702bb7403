"""Horizontal bar charts for the HTML report, as data: the geometry is computed here, the SVG is drawn by the
``bar_chart`` macro of ``insights/templates/_charts.html``.

A :class:`Chart` counts insights by one key (country, year, category...) with each bar stacked by kind;
every bar and segment links to the report's insight list filtered on it. Only the first
:data:`CHART_ROWS` bars are drawn; the table under the chart lists them all.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from .schema import KINDS

NONE = "(none)"  # the label and filter value of a missing country, year, type or SDG
# Geometry, in SVG user units.
CHART_WIDTH, LABEL_WIDTH, BAR_WIDTH, ROW_HEIGHT, CHART_ROWS = 720, 230, 430, 22, 20


@dataclass
class Segment:
    """One kind's share of a bar."""

    kind: str
    count: int
    x: float
    width: float
    href: str


@dataclass
class Bar:
    """One row of a chart and of the table under it."""

    label: str  # the value filtered on
    href: str
    counts: dict[str, int]
    total: int
    y: int = 0
    segments: list[Segment] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The label as shown (identifiers such as ``failed_experiment`` with spaces)."""
        return self.label.replace("_", " ") if re.fullmatch(r"[a-z_]+", self.label) else self.label

    @property
    def short(self) -> str:
        return self.text if len(self.text) <= 34 else self.text[:33] + "…"


@dataclass
class Chart:
    """A horizontal bar chart, bars stacked by kind; ``bars`` holds every row, the chart draws the first
    :data:`CHART_ROWS`."""

    id: str
    title: str
    kinds: list[str]
    bars: list[Bar]
    note: str = ""
    stacked: bool = True  # False: one kind a bar (the table shows totals only)

    @property
    def drawn(self) -> list[Bar]:
        return self.bars[:CHART_ROWS]

    @property
    def height(self) -> int:
        return len(self.drawn) * ROW_HEIGHT + 4


def insights_href(**params: str) -> str:
    """The report's link to the insight list filtered on ``params`` (``#insights?kind=barrier``)."""
    return "#insights?" + urlencode(params)


def make_chart(
    chart_id: str,
    title: str,
    key: str,
    values: Iterable[tuple[str, Sequence[str]]],
    *,
    kinds: Sequence[str] = KINDS,
    order: str | Sequence[str] = "count",
    note: str = "",
    stacked: bool = True,
) -> Chart:
    """Count ``(kind, [values of key])`` pairs into a chart whose bars link to ``#insights?key=value``.

    ``order``: ``count`` (largest first), ``label`` (alphabetical, numbers numerically), or the labels in
    the order wanted.
    """
    counts: dict[str, Counter[str]] = {}
    for kind, labels in values:
        if kind in kinds:
            for label in labels or [NONE]:
                counts.setdefault(label, Counter())[kind] += 1
    bars = [Bar(label, insights_href(**{key: label}), dict(c), sum(c.values())) for label, c in counts.items()]
    if order == "count":
        bars.sort(key=lambda b: (-b.total, b.label))
    elif order == "label":
        bars.sort(key=lambda b: (b.label == NONE, natural_key(b.label)))
    else:
        bars.sort(key=lambda b: list(order).index(b.label) if b.label in order else len(order))
    top = max((b.total for b in bars), default=0) or 1
    for row, bar in enumerate(bars):
        bar.y, x = row * ROW_HEIGHT, float(LABEL_WIDTH)
        for kind in kinds:
            if bar.counts.get(kind):
                width = BAR_WIDTH * bar.counts[kind] / top
                bar.segments.append(Segment(kind, bar.counts[kind], round(x, 2), round(width, 2),
                                            insights_href(**{"kind": kind, key: bar.label})))  # fmt: skip
                x += width
    present = [k for k in kinds if any(b.counts.get(k) for b in bars)]
    return Chart(chart_id, title, present, bars, note, stacked)


def natural_key(label: str) -> list[Any]:
    """Sort key putting "2. Zero hunger" before "10. Reduced inequalities"."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t.lower()) for t in re.findall(r"\d+|\D+", label)]
