"""The satisfaction index as pure math over integer sufficient statistics (no I/O).

A response's score is x = 100 * (v - min) / (max - min). Responses of one stage may come from
scales of different spans, so statistics are kept per scale as integer sums of d = v - min; every
mean and variance is then computed exactly with fractions and turned into a float only at the end.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from app.stages import Stage


@dataclass(frozen=True, slots=True)
class ScaleStats:
    """Sums over the responses of one stage answered on one scale (min, max)."""

    scale_min: int
    scale_max: int
    n: int = 0
    sum_d: int = 0  # Σ (v - min)
    sum_d2: int = 0  # Σ (v - min)²
    top2: int = 0  # responses with v ≥ max - 1
    nps_n: int = 0  # responses whose primary question is nps
    promoters: int = 0  # nps answers 9-10
    detractors: int = 0  # nps answers 0-6

    def __add__(self, other: ScaleStats) -> ScaleStats:
        assert (self.scale_min, self.scale_max) == (other.scale_min, other.scale_max)
        return ScaleStats(
            self.scale_min,
            self.scale_max,
            self.n + other.n,
            self.sum_d + other.sum_d,
            self.sum_d2 + other.sum_d2,
            self.top2 + other.top2,
            self.nps_n + other.nps_n,
            self.promoters + other.promoters,
            self.detractors + other.detractors,
        )


@dataclass(frozen=True, slots=True)
class StageMoments:
    """Exact moments of one stage's normalized scores x = 100·d/span, as integers over a common
    denominator: Σx = 100·a/L and Σx² = 10⁴·b/L², with L the lcm of the stage's spans.

    Every quantity below is a ratio of two exact integers, divided once: Python's int / int is
    correctly rounded, so each is the float nearest its exact value (no Fraction arithmetic).
    """

    n: int = 0
    a: int = 0
    b: int = 0
    lcm: int = 1
    top2: int = 0
    nps_n: int = 0
    promoters: int = 0
    detractors: int = 0

    @classmethod
    def of(cls, scales: Iterable[ScaleStats]) -> StageMoments:
        scales = list(scales)
        lcm = math.lcm(*(s.scale_max - s.scale_min for s in scales)) if scales else 1
        n = a = b = top2 = nps_n = promoters = detractors = 0
        for s in scales:
            k = lcm // (s.scale_max - s.scale_min)
            n += s.n
            a += k * s.sum_d
            b += k * k * s.sum_d2
            top2 += s.top2
            nps_n += s.nps_n
            promoters += s.promoters
            detractors += s.detractors
        return cls(n, a, b, lcm, top2, nps_n, promoters, detractors)

    @property
    def mean(self) -> float:
        return 100 * self.a / (self.lcm * self.n)

    @property
    def variance(self) -> float | None:
        """Sample variance (denominator n - 1); None below two responses.

        (Σx² - (Σx)²/n) / (n - 1) = 10⁴ (b·n - a²) / (L² n (n - 1)), b·n - a² ≥ 0 exactly.
        """
        if self.n < 2:
            return None
        return (
            10_000
            * (self.b * self.n - self.a * self.a)
            / (self.lcm * self.lcm * self.n * (self.n - 1))
        )


@dataclass(frozen=True, slots=True)
class StageResult:
    stage: Stage
    n: int
    weight: float
    suppressed: bool
    score: float | None = None
    ci95: tuple[float, float] | None = None
    top2box: float | None = None
    nps: float | None = None


@dataclass(frozen=True, slots=True)
class IndexResult:
    n: int
    csi: float | None
    ci95: tuple[float, float] | None
    se: float | None
    suppressed: bool
    stages: list[StageResult] = field(default_factory=list)


def _clip(low: float, high: float) -> tuple[float, float]:
    return (min(max(low, 0.0), 100.0), min(max(high, 0.0), 100.0))


def _interval(center: float, variance_of_mean: float) -> tuple[float, float]:
    half = 1.96 * math.sqrt(variance_of_mean)
    return _clip(center - half, center + half)


def compute_index(
    stats: Mapping[Stage, Sequence[ScaleStats]],
    *,
    weights: Mapping[Stage, float],
    min_n: int,
    included: frozenset[Stage] | None = None,
) -> IndexResult:
    """The index of one scope from its per-stage statistics, as PRODUCT.md defines it.

    `included` are the stages asked for (None: all); the others are listed suppressed, with n 0.
    """
    results: list[StageResult] = []
    used: list[tuple[float, StageMoments]] = []
    total_n = 0
    for stage in Stage:
        weight = float(weights.get(stage, 1.0))
        asked = included is None or stage in included
        moments = StageMoments.of(stats.get(stage, ())) if asked else StageMoments()
        total_n += moments.n
        if moments.n == 0 or moments.n < min_n:
            results.append(StageResult(stage, moments.n, weight, suppressed=True))
            continue
        mean = moments.mean
        variance = moments.variance
        results.append(
            StageResult(
                stage,
                moments.n,
                weight,
                suppressed=False,
                score=mean,
                ci95=_interval(mean, variance / moments.n) if variance is not None else None,
                top2box=100 * moments.top2 / moments.n,
                nps=(
                    100 * (moments.promoters - moments.detractors) / moments.nps_n
                    if moments.nps_n
                    else None
                ),
            )
        )
        if weight > 0:
            used.append((weight, moments))

    if not used:
        return IndexResult(n=total_n, csi=None, ci95=None, se=None, suppressed=True, stages=results)
    total_weight = math.fsum(w for w, _ in used)
    csi = math.fsum(w * m.mean for w, m in used) / total_weight
    if any(m.variance is None for _, m in used):
        return IndexResult(n=total_n, csi=csi, ci95=None, se=None, suppressed=False, stages=results)
    se2 = math.fsum(
        (w / total_weight) ** 2 * m.variance / m.n for w, m in used if m.variance is not None
    )
    return IndexResult(
        n=total_n,
        csi=csi,
        ci95=_interval(csi, se2),
        se=math.sqrt(se2),
        suppressed=False,
        stages=results,
    )


@dataclass(frozen=True, slots=True)
class Comparison:
    delta: float | None
    significant: bool | None


def compare(current: IndexResult, previous: IndexResult) -> Comparison:
    """delta = csi - previous csi; significant = |delta| > 1.96 * sqrt(se² + se_prev²)."""
    if current.csi is None or previous.csi is None:
        return Comparison(None, None)
    delta = current.csi - previous.csi
    if current.se is None or previous.se is None:
        return Comparison(delta, None)
    return Comparison(delta, abs(delta) > 1.96 * math.sqrt(current.se**2 + previous.se**2))
