"""Pure insight math: pain-point shares and lifts, Pearson r and Johnson's relative weights."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

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


@dataclass(frozen=True, slots=True)
class Moments:
    """Exact sums over n observations of variables v_0 … v_k (the predictors, then the
    outcome): `sums[i]` = Σ v_i and `cross[i][j]` = Σ v_i·v_j."""

    n: int
    sums: Sequence[Fraction]
    cross: Sequence[Sequence[Fraction]]


def drivers(y: Sequence[float], x: Sequence[Sequence[float]], *, min_n: int) -> Drivers:
    """Pearson r of each predictor (columns of `x`) with `y`, and Johnson's relative weights
    (see `johnson`), from the observations themselves."""
    ys = np.asarray(y, dtype=float)
    xs = np.asarray(x, dtype=float).reshape(len(ys), -1)
    n, p = xs.shape
    if p == 0 or n < min_n or n < 2:
        return johnson(n, None, p, min_n=min_n)
    if np.ptp(ys) == 0 or np.any(np.ptp(xs, axis=0) == 0):
        return johnson(n, None, p, min_n=min_n)
    return johnson(n, np.corrcoef(np.column_stack([xs, ys]), rowvar=False), p, min_n=min_n)


def drivers_from_moments(moments: Moments, *, min_n: int) -> Drivers:
    """The same from exact sums: the covariances are computed exactly (a zero variance is
    exactly zero), then the correlations as floats."""
    n, p = moments.n, len(moments.sums) - 1
    if p == 0 or n < min_n or n < 2:
        return johnson(n, None, p, min_n=min_n)
    s, c = moments.sums, moments.cross
    cov = [[(c[i][j] - s[i] * s[j] / n) / (n - 1) for j in range(p + 1)] for i in range(p + 1)]
    if any(cov[i][i] == 0 for i in range(p + 1)):
        return johnson(n, None, p, min_n=min_n)
    corr = np.array(
        [
            [
                float(cov[i][j]) / math.sqrt(float(cov[i][i]) * float(cov[j][j]))
                for j in range(p + 1)
            ]
            for i in range(p + 1)
        ]
    )
    return johnson(n, corr, p, min_n=min_n)


def johnson(n: int, corr: np.ndarray | None, p: int, *, min_n: int) -> Drivers:
    """Pearson r of each of `p` predictors with the outcome, and Johnson's relative weights,
    which sum to the R² of the regression of the outcome on all predictors, from the
    correlation matrix `corr` of (predictors…, outcome); None: nothing to weigh (suppressed).

    Johnson (2000): with R the predictors' correlation matrix and Λ = R^½ (from R's
    eigendecomposition), β = Λ⁻¹ r_xy regresses y on the orthogonal counterparts of the
    predictors, and predictor j's weight is Σ_k Λ_jk² β_k².
    """
    if p == 0:
        return Drivers(n, None, [], [], n < min_n)
    nothing = Drivers(n, None, [None] * p, [None] * p, True)
    if corr is None:
        return nothing
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
