"""Johnson's relative weights and Pearson r against a straightforward numpy implementation
written here (Johnson's original construction, through the SVD of the standardized data)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.insights import math


def reference(y: np.ndarray, x: np.ndarray) -> tuple[float, list[float], list[float]]:
    """R², r and relative weights as Johnson (2000) builds them: the orthogonal matrix Z
    closest to the standardized predictors (Z = P Qᵀ from X = P Δ Qᵀ), y regressed on Z, and
    the weights of X's columns on Z (Λ = Q Δ Qᵀ) squared against those coefficients."""
    n = len(y)
    xs = (x - x.mean(axis=0)) / x.std(axis=0, ddof=1) / np.sqrt(n - 1)
    ys = (y - y.mean()) / y.std(ddof=1) / np.sqrt(n - 1)
    p_, delta, qt = np.linalg.svd(xs, full_matrices=False)
    z = p_ @ qt
    beta, *_ = np.linalg.lstsq(z, ys, rcond=None)
    lam = qt.T @ np.diag(delta) @ qt
    weights = (lam**2) @ (beta**2)
    coef, *_ = np.linalg.lstsq(np.column_stack([np.ones(n), x]), y, rcond=None)
    fitted = np.column_stack([np.ones(n), x]) @ coef
    r2 = 1 - ((y - fitted) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    r = [
        float(((x[:, j] - x[:, j].mean()) * (y - y.mean())).sum()
              / np.sqrt(((x[:, j] - x[:, j].mean()) ** 2).sum() * ((y - y.mean()) ** 2).sum()))
        for j in range(x.shape[1])
    ]  # fmt: skip
    return float(r2), r, [float(w) for w in weights]


@st.composite
def data_sets(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.integers(min_value=8, max_value=60))
    p = draw(st.integers(min_value=1, max_value=5))
    seed = draw(st.integers(min_value=0, max_value=2**32 - 1))
    rng = np.random.default_rng(seed)
    # Answers on 0-100 like normalized scores, correlated through a shared factor.
    factor = rng.normal(size=n)
    x = np.column_stack(
        [np.round(50 + 20 * (rng.uniform(0.2, 1) * factor + rng.normal(size=n))) for _ in range(p)]
    )
    y = np.round(50 + 15 * factor + 10 * rng.normal(size=n))
    return y, x


def agrees(got: math.Drivers, y: np.ndarray, x: np.ndarray) -> None:
    """`got` is suppressed where the data call for it, and equals the reference otherwise."""
    if np.ptp(y) == 0 or np.any(np.ptp(x, axis=0) == 0):
        assert got.suppressed
        return
    condition = np.linalg.cond(np.corrcoef(x, rowvar=False).reshape(x.shape[1], x.shape[1]))
    if condition > 1e12:
        assert got.suppressed
        return
    r2, r, weights = reference(y, x)
    assert not got.suppressed
    assert got.n == len(y)
    assert got.r2 == pytest.approx(r2, abs=1e-9)
    assert got.r == pytest.approx(r, abs=1e-9)
    assert got.importance == pytest.approx(weights, abs=1e-9)
    assert sum(w for w in got.importance if w is not None) == pytest.approx(r2, abs=1e-9)


@given(data_sets())
@settings(max_examples=150, deadline=None)
def test_weights_sum_to_r2_and_match_the_reference(data: tuple[np.ndarray, np.ndarray]) -> None:
    y, x = data
    agrees(math.drivers(y, x, min_n=3), y, x)


@given(data_sets())
@settings(max_examples=100, deadline=None)
def test_moments_give_what_the_observations_give(data: tuple[np.ndarray, np.ndarray]) -> None:
    """From exact sums (as the moment rollup keeps them) the same as from the data."""
    y, x = data
    values = [[Fraction(int(v)) for v in row] for row in np.column_stack([x, y])]
    k = x.shape[1] + 1
    moments = math.Moments(
        n=len(values),
        sums=[sum((row[i] for row in values), Fraction(0)) for i in range(k)],
        cross=[
            [sum((row[i] * row[j] for row in values), Fraction(0)) for j in range(k)]
            for i in range(k)
        ],
    )
    agrees(math.drivers_from_moments(moments, min_n=3), y, x)


def test_suppression() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(20, 2))
    y = rng.normal(size=20)
    assert math.drivers(y, x, min_n=21).suppressed  # n < min_n
    flat = x.copy()
    flat[:, 1] = 3.0
    assert math.drivers(y, flat, min_n=5).suppressed  # a predictor without variance
    assert math.drivers(np.full(20, 7.0), x, min_n=5).suppressed  # the primary without
    twins = np.column_stack([x[:, 0], x[:, 0] * 2 + 1])  # perfectly collinear
    result = math.drivers(y, twins, min_n=5)
    assert result.suppressed
    assert result.r2 is None
    assert result.importance == [None, None]
    none = math.drivers(y, np.empty((20, 0)), min_n=5)
    assert (none.suppressed, none.r2, none.importance) == (False, None, [])


def test_pain_point_shares_lifts_and_order() -> None:
    counts = {
        ("s", "q"): {
            "a": math.OptionCount(3, 4),
            "b": math.OptionCount(1, 6),
            "c": math.OptionCount(0, 0),
        },
        ("s", "few"): {"x": math.OptionCount(1, 9)},
    }
    items = math.pain_points(counts, min_n=2)
    assert [(i.question, i.option) for i in items] == [("q", "a"), ("q", "b"), ("q", "c")]
    a, b, c = items
    assert (a.low_share, a.all_share) == (75.0, 40.0)
    assert a.lift == pytest.approx(75 / 40)
    assert (b.low_share, b.all_share) == (25.0, 60.0)
    assert (c.low_share, c.all_share, c.lift) == (0.0, 0.0, None)
