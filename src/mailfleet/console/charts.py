"""Charts drawn on the server: horizontal bar charts as SVG geometry for the templates."""

from __future__ import annotations

from dataclasses import dataclass
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
