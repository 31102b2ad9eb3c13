"""SVG charts drawn on the server from the API's answers (pure; no I/O).

Each chart is an image with a text label; the page shows the same numbers in a table beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

STAGE_WIDTH, STAGE_ROW, STAGE_LABEL = 560, 30, 130
TREND_WIDTH, TREND_HEIGHT, TREND_LEFT, TREND_BOTTOM, TREND_TOP = 720, 240, 44, 28, 12


def _f(value: float) -> str:
    return f"{value:.1f}"


def stage_bars(stages: Sequence[dict[str, Any]], *, label: str) -> Markup:
    """One bar per stage (score 0-100) with its 95% interval as a whisker."""
    span = STAGE_WIDTH - STAGE_LABEL - 70
    height = STAGE_ROW * len(stages) + 20
    parts = [
        f'<svg class="chart" viewBox="0 0 {STAGE_WIDTH} {height}" role="img"'
        f' aria-label="{escape(label)}"><title>{escape(label)}</title>'
    ]
    for i, stage in enumerate(stages):
        y = 10 + i * STAGE_ROW
        parts.append(
            f'<text x="0" y="{y + 19}" class="axis">{escape(stage["stage"])}</text>'
            f'<rect x="{STAGE_LABEL}" y="{y + 6}" width="{span}" height="16" class="track"/>'
        )
        score = stage.get("score")
        if score is None:
            parts.append(
                f'<text x="{STAGE_LABEL + 6}" y="{y + 19}" class="muted">suppressed</text>'
            )
            continue
        x = STAGE_LABEL + span * score / 100
        parts.append(
            f'<rect x="{STAGE_LABEL}" y="{y + 6}" width="{_f(x - STAGE_LABEL)}" height="16"'
            ' class="bar"/>'
        )
        low, high = stage.get("ci95") or (score, score)
        x1, x2 = STAGE_LABEL + span * low / 100, STAGE_LABEL + span * high / 100
        parts.append(
            f'<path d="M{_f(x1)} {y + 14}H{_f(x2)}M{_f(x1)} {y + 9}V{y + 19}M{_f(x2)} {y + 9}'
            f'V{y + 19}" class="whisker"/>'
            f'<text x="{STAGE_WIDTH - 64}" y="{y + 19}" class="value">{score:.1f}</text>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


@dataclass(frozen=True)
class Point:
    label: str
    csi: float | None  # None: suppressed (a gap)
    target: float | None


def _scale(points: Sequence[Point]) -> tuple[float, float]:
    values = [v for p in points for v in (p.csi, p.target) if v is not None]
    if not values:
        return 0.0, 100.0
    low, high = min(values), max(values)
    pad = max(2.0, (high - low) * 0.15)
    return max(0.0, low - pad), min(100.0, high + pad)


def trend(points: Sequence[Point], *, label: str) -> Markup:
    """The CSI by month as a line with gaps at suppressed months; the target as a dashed step
    line."""
    if not points:
        return Markup("")
    low, high = _scale(points)
    if high <= low:
        low, high = max(0.0, low - 1), min(100.0, high + 1)
    plot_w = TREND_WIDTH - TREND_LEFT - 10
    plot_h = TREND_HEIGHT - TREND_BOTTOM - TREND_TOP
    step = plot_w / len(points)

    def x(i: int) -> float:
        return TREND_LEFT + step * (i + 0.5)

    def y(v: float) -> float:
        return TREND_TOP + plot_h * (1 - (v - low) / (high - low))

    parts = [
        f'<svg class="chart" viewBox="0 0 {TREND_WIDTH} {TREND_HEIGHT}" role="img"'
        f' aria-label="{escape(label)}"><title>{escape(label)}</title>'
    ]
    for k in range(5):
        v = low + (high - low) * k / 4
        parts.append(
            f'<path d="M{TREND_LEFT} {_f(y(v))}H{TREND_WIDTH - 10}" class="rule"/>'
            f'<text x="{TREND_LEFT - 6}" y="{_f(y(v) + 4)}" class="axis" text-anchor="end">'
            f"{v:.0f}</text>"
        )
    for i, p in enumerate(points):
        if i % 3 == 0 or i == len(points) - 1:
            parts.append(
                f'<text x="{_f(x(i))}" y="{TREND_HEIGHT - 8}" class="axis" text-anchor="middle">'
                f"{escape(p.label)}</text>"
            )
    target_path = []
    for i, p in enumerate(points):
        if p.target is None:
            continue
        left, right = TREND_LEFT + step * i, TREND_LEFT + step * (i + 1)
        previous = points[i - 1].target if i else None
        move = "L" if previous is not None else "M"
        target_path.append(f"{move}{_f(left)} {_f(y(p.target))}H{_f(right)}")
    if target_path:
        parts.append(f'<path d="{"".join(target_path)}" class="target"/>')
    runs: list[list[str]] = [[]]
    for i, p in enumerate(points):
        if p.csi is None:
            runs.append([])
            continue
        runs[-1].append(f"{_f(x(i))} {_f(y(p.csi))}")
        parts.append(f'<circle cx="{_f(x(i))}" cy="{_f(y(p.csi))}" r="3" class="dot"/>')
    for run in runs:
        if len(run) > 1:
            parts.append(f'<path d="M{"L".join(run)}" class="line"/>')
    parts.append("</svg>")
    return Markup("".join(parts))
