"""Calendar periods, previous periods, month splitting and series windows."""

from __future__ import annotations

import itertools
import re
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.indices.periods import PERIOD_PATTERN, Granularity, parse_period, series, window_of


@pytest.mark.parametrize(
    ("label", "start", "end", "previous"),
    [
        ("2026", date(2026, 1, 1), date(2027, 1, 1), "2025"),
        ("2026-Q1", date(2026, 1, 1), date(2026, 4, 1), "2025-Q4"),
        ("2026-Q3", date(2026, 7, 1), date(2026, 10, 1), "2026-Q2"),
        ("2026-01", date(2026, 1, 1), date(2026, 2, 1), "2025-12"),
        ("2026-12", date(2026, 12, 1), date(2027, 1, 1), "2026-11"),
        # The first periods there are: their previous lies before 1900, and is no error (500).
        ("1900", date(1900, 1, 1), date(1901, 1, 1), "1899"),
        ("1900-Q1", date(1900, 1, 1), date(1900, 4, 1), "1899-Q4"),
        ("1900-01", date(1900, 1, 1), date(1900, 2, 1), "1899-12"),
        ("9998-12", date(9998, 12, 1), date(9999, 1, 1), "9998-11"),
    ],
)
def test_periods(label: str, start: date, end: date, previous: str) -> None:
    window = parse_period(label)
    assert (window.start, window.end, window.period) == (start, end, label)
    assert window.previous().period == previous
    assert window.previous().end == window.start


@pytest.mark.parametrize(
    "label",
    # ARABIC-INDIC and FULLWIDTH digits, which int() would read as 2026.
    [
        "26",
        "2026-Q5",
        "2026-13",
        "2026-00",
        "2026-9",
        "1800",
        "x",
        "\u0662\u0660\u0662\u0666",
        "\uff12\uff10\uff12\uff16-09",
        "2026\n",  # re's $ matches before a final newline: a second target for 2026
    ],
)
def test_bad_periods(label: str) -> None:
    with pytest.raises(ValueError, match=r"\w"):
        parse_period(label)


def test_range_equal_to_a_calendar_period_is_that_period() -> None:
    assert window_of(date(2026, 7, 1), date(2026, 10, 1)).period == "2026-Q3"
    assert window_of(date(2026, 1, 1), date(2027, 1, 1)).period == "2026"
    assert window_of(date(2026, 2, 1), date(2026, 3, 1)).period == "2026-02"
    odd = window_of(date(2026, 2, 1), date(2026, 4, 1))
    assert odd.period is None
    assert odd.previous() == window_of(date(2025, 12, 4), date(2026, 2, 1))  # 59 days


def test_a_range_whose_previous_would_begin_before_year_1_is_refused() -> None:
    start = date(1900, 1, 1)
    longest = date.fromordinal(2 * start.toordinal() - 1)  # its previous begins on 0001-01-01
    assert window_of(start, longest).previous().start == date(1, 1, 1)
    with pytest.raises(ValueError, match="too long"):
        window_of(start, longest + timedelta(days=1))


def test_from_must_precede_to() -> None:
    with pytest.raises(ValueError, match="before"):
        window_of(date(2026, 2, 1), date(2026, 2, 1))


@settings(deadline=None)  # a stalled CI machine is not a slow example
@given(
    start=st.dates(date(1990, 1, 1), date(2100, 1, 1)),
    days=st.integers(1, 800),
)
def test_months_and_edges_cover_the_window_exactly(start: date, days: int) -> None:
    window = window_of(start, start + timedelta(days=days))
    months, edges = window.months()
    covered: list[tuple[date, date]] = list(edges)
    for month in months:
        nxt = date(month.year + month.month // 12, month.month % 12 + 1, 1)
        covered.append((month, nxt))
    covered.sort()
    assert covered[0][0] == window.start
    assert covered[-1][1] == window.end
    for (_, a_end), (b_start, _) in itertools.pairwise(covered):
        assert a_end == b_start
    assert all(m.day == 1 for m in months)


def test_series() -> None:
    quarters = series(Granularity.quarter, date(2025, 7, 1), date(2026, 7, 1))
    assert [w.period for w in quarters] == ["2025-Q3", "2025-Q4", "2026-Q1", "2026-Q2"]
    months = series(Granularity.month, date(2025, 1, 1), date(2027, 1, 1))
    assert len(months) == 24
    assert months[0].period == "2025-01"
    assert series(Granularity.year, date(2024, 1, 1), date(2026, 1, 1))[1].period == "2025"
    with pytest.raises(ValueError, match="boundaries"):
        series(Granularity.quarter, date(2025, 2, 1), date(2026, 1, 1))
    # The last period must lie in MAX_YEAR too (its label would be year 10000's neighbour).
    assert series(Granularity.year, date(9997, 1, 1), date(9999, 1, 1))[-1].period == "9998"
    with pytest.raises(ValueError, match="years must lie between"):
        series(Granularity.month, date(9998, 12, 1), date(9999, 2, 1))
    with pytest.raises(ValueError, match="at most 120"):
        series(Granularity.month, date(2000, 1, 1), date(2011, 1, 2).replace(day=1))


def _parses(label: str) -> bool:
    try:
        parse_period(label)
    except ValueError:
        return False
    return True


@settings(deadline=None, max_examples=500)
@given(
    label=st.one_of(
        st.builds(
            "{:04d}{}".format,
            st.integers(0, 9999),
            st.sampled_from(["", "-Q0", "-Q1", "-Q4", "-Q5", "-00", "-01", "-09", "-12", "-13"]),
        ),
        st.text(alphabet="0123456789-Q\u0662\n ", max_size=9),
        st.builds("{}\n".format, st.sampled_from(["2026", "2026-Q3", "2026-09"])),
    )
)
def test_the_declared_pattern_is_exactly_what_parses(label: str) -> None:
    # The OpenAPI declares PERIOD_PATTERN: a fuzzer takes what matches as valid, the rest as not.
    assert (re.fullmatch(PERIOD_PATTERN, label) is not None) == _parses(label), label
