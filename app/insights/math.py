"""Pure insight math: pain-point shares and lifts, Pearson r and Johnson's relative weights."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

MAX_CONDITION = 1e12


@dataclass(frozen=True, slots=True)
class OptionCount:
    low_n: int
    all_n: int


@dataclass(frozen=True, slots=True)
class PainPoint:
    survey: str
    question: str
    option: str
    low_n: int
    low_share: float
    all_n: int
    all_share: float
    lift: float | None


def pain_points(
    counts: Mapping[tuple[str, str], Mapping[str, OptionCount]], *, min_n: int
) -> list[PainPoint]:
    """Every option of every (survey, question), with its share among the low responses that
    answered the question against its share among all that did; a question answered by fewer
    than `min_n` low responses is left out. Ordered by low_n desc, survey, question, option."""
    items = []
    for (survey, question), options in counts.items():
        low_total = sum(c.low_n for c in options.values())
        all_total = sum(c.all_n for c in options.values())
        if low_total < min_n:
            continue
        for option, count in options.items():
            low_share = 100 * count.low_n / low_total
            all_share = 100 * count.all_n / all_total if all_total else 0.0
            items.append(
                PainPoint(
                    survey=survey,
                    question=question,
                    option=option,
                    low_n=count.low_n,
                    low_share=low_share,
                    all_n=count.all_n,
                    all_share=all_share,
                    lift=low_share / all_share if all_share else None,
                )
            )
    items.sort(key=lambda p: (-p.low_n, p.survey, p.question, p.option))
    return items


@dataclass(frozen=True, slots=True)
class Drivers:
    n: int
    r2: float | None
    r: list[float | None]
    importance: list[float | None]
    suppressed: bool


def drivers(y: Sequence[float], x: Sequence[Sequence[float]], *, min_n: int) -> Drivers:
    """Pearson r of each predictor (columns of `x`) with `y`, and Johnson's relative weights,
    which sum to the R² of the regression of y on all predictors.

    Johnson (2000): with R the predictors' correlation matrix and Λ = R^½ (from R's
    eigendecomposition), β = Λ⁻¹ r_xy regresses y on the orthogonal counterparts of the
    predictors, and predictor j's weight is Σ_k Λ_jk² β_k².
    """
    ys = np.asarray(y, dtype=float)
    xs = np.asarray(x, dtype=float).reshape(len(ys), -1)
    n, p = xs.shape
    nothing = Drivers(n, None, [None] * p, [None] * p, True)
    if p == 0:
        return Drivers(n, None, [], [], n < min_n)
    if n < min_n or n < 2:
        return nothing
    if np.ptp(ys) == 0 or np.any(np.ptp(xs, axis=0) == 0):
        return nothing
    data = np.column_stack([xs, ys])
    corr = np.corrcoef(data, rowvar=False)
    rxx = corr[:p, :p]
    rxy = corr[:p, p]
    values, vectors = np.linalg.eigh(rxx)
    if values.min() <= 0 or values.max() / values.min() > MAX_CONDITION:
        return nothing
    root = vectors @ np.diag(np.sqrt(values)) @ vectors.T
    beta = np.linalg.solve(root, rxy)
    weights = (root**2) @ (beta**2)
    return Drivers(
        n=n,
        r2=float(weights.sum()),
        r=[float(v) for v in rxy],
        importance=[float(w) for w in weights],
        suppressed=False,
    )
