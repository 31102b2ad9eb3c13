"""The scorecard arithmetic as pure functions (no I/O): components, total, competition ranks.

Definitions: PRODUCT.md, "Scorecard". Values are unrounded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from app.stages import Stage

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Scheme:
    index_weight: float = 0.5
    task_weight: float = 0.5
    cap: float = 100.0
    stage_weights: Mapping[Stage, float] | None = None


DEFAULT_SCHEME = Scheme()


def index_component(csi: float | None, target: float | None, cap: float) -> float | None:
    """`min(cap, 100·csi/target)` (cap when the target is 0); csi without a target."""
    if csi is None:
        return None
    if target is None:
        return csi
    if target == 0:
        return cap
    return min(cap, 100 * csi / target)


def attained(csi: float | None, target: float | None) -> bool | None:
    if csi is None or target is None:
        return None
    return csi >= target


@dataclass(frozen=True, slots=True)
class TaskTally:
    count: int
    achieved: int
    weight: float
    weight_achieved: float
    component: float | None


def tally(tasks: Sequence[tuple[float, bool | None]]) -> TaskTally:
    """Of (weight, achieved) pairs: the counts, the weights of the decided ones and
    `100·weight_achieved/weight` (null when no weight is decided)."""
    decided = sum(w for w, a in tasks if a is not None)
    achieved = sum(w for w, a in tasks if a is True)
    return TaskTally(
        count=len(tasks),
        achieved=sum(1 for _, a in tasks if a is True),
        weight=decided,
        weight_achieved=achieved,
        component=100 * achieved / decided if decided else None,
    )


def total(scheme: Scheme, index: float | None, tasks: float | None) -> float | None:
    """The weighted mean of the components that are not null (null when none is, or when
    their weights sum to 0)."""
    parts = [(w, c) for w, c in ((scheme.index_weight, index), (scheme.task_weight, tasks))]
    present = [(w, c) for w, c in parts if c is not None]
    weight = sum(w for w, _ in present)
    if not present or weight == 0:
        return None
    return sum(w * c for w, c in present) / weight


def ranked(entries: Sequence[tuple[str, float | None, T]]) -> list[tuple[int | None, T]]:
    """(code, total, value) ordered by total descending then code, nulls last, with the
    competition rank (1, 2, 2, 4; null for a null total)."""
    scored = sorted((e for e in entries if e[1] is not None), key=lambda e: (-(e[1] or 0), e[0]))
    out: list[tuple[int | None, T]] = []
    rank, previous = 0, None
    for position, (_, value_total, value) in enumerate(scored, start=1):
        if value_total != previous:
            rank, previous = position, value_total
        out.append((rank, value))
    out.extend((None, e[2]) for e in sorted(entries, key=lambda e: e[0]) if e[1] is None)
    return out
