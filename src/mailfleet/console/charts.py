"""Charts drawn on the server: horizontal bar charts as SVG geometry for the templates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Final

BAR_HEIGHT: Final = 22
BAR_GAP: Final = 8
LABEL_WIDTH: Final = 100
BAR_AREA: Final = 200


@dataclass(frozen=True)
class Bar:
    label: str
    value: int
    y: int
    width: float
    tone: str


@dataclass(frozen=True)
class BarChart:
    title: str
    bars: list[Bar]
    height: int
    label_width: int = LABEL_WIDTH
    bar_area: int = BAR_AREA

    @property
    def total(self) -> int:
        return sum(bar.value for bar in self.bars)

    @property
    def description(self) -> str:
        """The chart's numbers as a sentence, for screen readers."""
        return f"{self.title}: " + ", ".join(f"{bar.label} {bar.value}" for bar in self.bars)


def bar_chart(
    title: str, items: list[tuple[str, int]], tones: dict[str, str] | None = None
) -> BarChart:
    """Bars scaled to the largest value; a value above zero always shows a sliver."""
    peak = max((value for _, value in items), default=0)
    bars = []
    for index, (label, value) in enumerate(items):
        width = 0.0 if peak == 0 else max(BAR_AREA * value / peak, 2.0 if value else 0.0)
        bars.append(
            Bar(
                label=label,
                value=value,
                y=index * (BAR_HEIGHT + BAR_GAP),
                width=round(width, 1),
                tone=(tones or {}).get(label, "neutral"),
            )
        )
    height = max(len(bars) * (BAR_HEIGHT + BAR_GAP) - BAR_GAP, BAR_HEIGHT)
    return BarChart(title=title, bars=bars, height=height)


COLUMN_AREA: Final = 120
COLUMN_WIDTH: Final = 18
COLUMN_GAP: Final = 6


@dataclass(frozen=True)
class Segment:
    tone: str
    y: float
    height: float


@dataclass(frozen=True)
class Column:
    label: str
    x: int
    segments: list[Segment]
    summary: str


@dataclass(frozen=True)
class ColumnChart:
    title: str
    columns: list[Column]
    legend: list[tuple[str, str]]
    width: int
    height: int = COLUMN_AREA
    column_width: int = COLUMN_WIDTH

    @property
    def description(self) -> str:
        return f"{self.title}: " + "; ".join(column.summary for column in self.columns)


def column_chart(
    title: str, days: list[tuple[str, list[int]]], series: list[tuple[str, str]]
) -> ColumnChart:
    """One column per day, its segments stacked bottom up in the order of `series`
    ((name, tone) each), scaled to the tallest column."""
    peak = max((sum(values) for _, values in days), default=0)
    columns = []
    for index, (label, values) in enumerate(days):
        bottom = float(COLUMN_AREA)
        segments = []
        for (_, tone), value in zip(series, values, strict=True):
            height = 0.0 if peak == 0 else COLUMN_AREA * value / peak
            bottom -= height
            segments.append(Segment(tone=tone, y=round(bottom, 1), height=round(height, 1)))
        summary = f"{label} " + ", ".join(
            f"{name} {value}" for (name, _), value in zip(series, values, strict=True)
        )
        columns.append(
            Column(
                label=label,
                x=index * (COLUMN_WIDTH + COLUMN_GAP),
                segments=segments,
                summary=summary,
            )
        )
    width = max(len(columns) * (COLUMN_WIDTH + COLUMN_GAP) - COLUMN_GAP, COLUMN_WIDTH)
    return ColumnChart(title=title, columns=columns, legend=series, width=width)


WARMUP_SERIES: Final = [
    ("inbox", "good"),
    ("spam", "bad"),
    ("elsewhere or not found yet", "neutral"),
]


def warmup_chart(title: str, days: list[tuple[date, int, int, int]]) -> ColumnChart:
    """Warmup messages per day as (day, sent, inbox, spam), stacked by where they landed."""
    return column_chart(
        title,
        [
            (f"{day:%d}", [inbox, spam, max(sent - inbox - spam, 0)])
            for day, sent, inbox, spam in days
        ],
        WARMUP_SERIES,
    )
