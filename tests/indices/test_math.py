"""The pure index math against a brute-force computation from raw scores (hypothesis)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from app.indices.math import IndexResult, ScaleStats, compare, compute_index
from app.stages import Stage
from tests.indices.brute import STAGES, Raw, assert_close, brute_index

FIXED = [(1, 5, False), (0, 10, True), (1, 7, False)]


@st.composite
def raw_response(draw: st.DrawFn, stage: str | None = None) -> Raw:
    stage = stage or draw(st.sampled_from(STAGES))
    kind = draw(st.sampled_from([*FIXED, None]))
    if kind is None:
        low = draw(st.integers(-5, 5))
        high = low + draw(st.integers(1, 10))
        is_nps = False
    else:
        low, high, is_nps = kind
    return Raw(stage, draw(st.integers(low, high)), low, high, is_nps)


weights_strategy = st.dictionaries(
    st.sampled_from(STAGES), st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.7, 10.0]), max_size=5
)


def to_stats(responses: Sequence[Raw]) -> dict[Stage, list[ScaleStats]]:
    groups: dict[tuple[str, int, int], list[Raw]] = defaultdict(list)
    for r in responses:
        groups[(r.stage, r.scale_min, r.scale_max)].append(r)
    out: dict[Stage, list[ScaleStats]] = defaultdict(list)
    for (stage, low, high), rows in groups.items():
        out[Stage(stage)].append(
            ScaleStats(
                low,
                high,
                n=len(rows),
                sum_d=sum(r.v - low for r in rows),
                sum_d2=sum((r.v - low) ** 2 for r in rows),
                top2=sum(1 for r in rows if r.v >= high - 1),
                nps_n=sum(1 for r in rows if r.is_nps),
                promoters=sum(1 for r in rows if r.is_nps and r.v >= 9),
                detractors=sum(1 for r in rows if r.is_nps and r.v <= 6),
            )
        )
    return out


def as_dict(result: IndexResult) -> dict[str, object]:
    return {
        "n": result.n,
        "csi": result.csi,
        "ci95": list(result.ci95) if result.ci95 else None,
        "se": result.se,
        "suppressed": result.suppressed,
        "stages": [
            {
                "stage": s.stage.value,
                "n": s.n,
                "score": s.score,
                "ci95": list(s.ci95) if s.ci95 else None,
                "weight": s.weight,
                "top2box": s.top2box,
                "nps": s.nps,
                "suppressed": s.suppressed,
            }
            for s in result.stages
        ],
    }


def check(responses: Sequence[Raw], weights: dict[str, float], min_n: int, stages=None) -> None:
    result = compute_index(
        to_stats(responses),
        weights={Stage(k): v for k, v in weights.items()},
        min_n=min_n,
        included=frozenset(Stage(s) for s in stages) if stages is not None else None,
    )
    assert_close(
        as_dict(result), brute_index(responses, weights=weights, min_n=min_n, stages=stages)
    )


@settings(max_examples=300, deadline=None)
@given(
    responses=st.lists(raw_response(), max_size=60),
    weights=weights_strategy,
    min_n=st.integers(1, 6),
    stages=st.none() | st.sets(st.sampled_from(STAGES)).map(sorted),
)
def test_matches_brute_force(responses, weights, min_n, stages) -> None:
    check(responses, weights, min_n, stages)


@settings(max_examples=100, deadline=None)
@given(n=st.integers(0, 3), weights=weights_strategy)
def test_tiny_samples(n: int, weights: dict[str, float]) -> None:
    """n = 0, 1, 2 per stage: means without variance, intervals null where n < 2."""
    responses = [Raw(stage, 1 + (i % 5), 1, 5) for stage in STAGES for i in range(n)]
    check(responses, weights, min_n=1)


@settings(max_examples=100, deadline=None)
@given(value=st.integers(1, 5), n=st.integers(2, 40))
def test_all_scores_equal(value: int, n: int) -> None:
    """Zero variance: the interval collapses onto the mean exactly."""
    responses = [Raw("delivery", value, 1, 5) for _ in range(n)]
    result = compute_index(to_stats(responses), weights={}, min_n=1)
    expected = 100 * (value - 1) / 4
    assert result.csi == expected
    assert result.ci95 == (expected, expected)
    assert result.se == 0.0


@settings(max_examples=100, deadline=None)
@given(responses=st.lists(raw_response(stage="rental"), min_size=2, max_size=40))
def test_mixed_scales_in_one_stage(responses: list[Raw]) -> None:
    check(responses, {}, min_n=1)


def test_zero_weights_leave_stage_out_of_csi() -> None:
    responses = [Raw("purchase", 5, 1, 5)] * 3 + [Raw("delivery", 1, 1, 5)] * 3
    result = compute_index(to_stats(responses), weights={Stage.delivery: 0.0}, min_n=1)
    assert result.csi == 100.0
    delivery = next(s for s in result.stages if s.stage is Stage.delivery)
    assert delivery.score == 0.0
    assert not delivery.suppressed
    assert delivery.weight == 0.0


def test_everything_suppressed() -> None:
    responses = [Raw(stage, 3, 1, 5) for stage in STAGES]
    result = compute_index(to_stats(responses), weights={}, min_n=30)
    assert result.suppressed
    assert result.csi is None
    assert result.ci95 is None
    assert result.n == 5
    assert all(s.suppressed and s.score is None and s.n == 1 for s in result.stages)


def test_all_weights_zero_is_suppressed() -> None:
    responses = [Raw("purchase", 3, 1, 5)] * 5
    result = compute_index(to_stats(responses), weights=dict.fromkeys(Stage, 0.0), min_n=1)
    assert result.suppressed
    assert result.csi is None


def test_compare_significance() -> None:
    high = compute_index(
        to_stats([Raw("purchase", 5, 1, 5), Raw("purchase", 4, 1, 5)] * 50), weights={}, min_n=1
    )
    low = compute_index(
        to_stats([Raw("purchase", 1, 1, 5), Raw("purchase", 2, 1, 5)] * 50), weights={}, min_n=1
    )
    result = compare(high, low)
    assert result.delta == high.csi - low.csi
    assert result.significant is True
    same = compare(high, high)
    assert same.delta == 0.0
    assert same.significant is False
    empty = compute_index({}, weights={}, min_n=1)
    assert compare(high, empty).delta is None
    assert compare(high, empty).significant is None
