"""Calendar periods and date windows of the index (pure; no I/O).

A window is a half-open range of dates [start, end) in the reporting time zone. A window that is
exactly a calendar year, quarter or month is that period, and its previous is the period before;
any other window's previous is the same number of days ending at its start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum

from app.platform.schemas import DATE_PATTERN

__all__ = ["DATE_PATTERN", "PERIOD_PATTERN", "Granularity", "Window"]

MIN_YEAR, MAX_YEAR = 1900, 9998
MAX_SERIES = 120
# ASCII digits only: \d would also match other scripts' digits, which int() reads, and a target
# stored under "٢٠٢٦" would be a second target for 2026 under a label nobody can ask for.
# The patterns are also what the OpenAPI declares (JSON Schema patterns are ECMA regexes).
_SHAPE = "(?:-Q([1-4])|-(0[1-9]|1[0-2]))?$"
_YEARS = "19[0-9]{2}|[2-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8]"  # MIN_YEAR to MAX_YEAR
PERIOD_PATTERN = f"^({_YEARS}){_SHAPE}"  # exactly what parse_period takes (a test holds it)
_PERIOD = re.compile(f"^([0-9]{{4}}){_SHAPE}")  # any year, so that _check_year can say why


class Granularity(StrEnum):
    month = "month"
    quarter = "quarter"
    year = "year"


def add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


@dataclass(frozen=True, slots=True)
class Window:
    start: date
    end: date
    period: str | None = None  # the calendar label when the window is a calendar period

    @property
    def days(self) -> int:
        return (self.end - self.start).days

    def previous(self) -> Window:
        """The calendar period before, or the same number of days ending at the start.

        Not held to MIN_YEAR: the year before 1900 is a period without responses, not an error.
        """
        if self.period is not None:
            length = (self.end.year - self.start.year) * 12 + self.end.month - self.start.month
            start = add_months(self.start, -length)
            return Window(start, self.start, calendar_label(start, self.start))
        return Window(self.start - timedelta(days=self.days), self.start)

    def months(self) -> tuple[list[date], list[tuple[date, date]]]:
        """The whole months inside the window, and the partial ranges at its edges."""
        first = self.start if self.start.day == 1 else add_months(self.start, 1)
        last = date(self.end.year, self.end.month, 1)
        if first >= last:
            return [], [(self.start, self.end)]
        months = []
        month = first
        while month < last:
            months.append(month)
            month = add_months(month, 1)
        edges = []
        if self.start < first:
            edges.append((self.start, first))
        if last < self.end:
            edges.append((last, self.end))
        return months, edges


def _check_year(year: int) -> None:
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise ValueError(f"years must lie between {MIN_YEAR} and {MAX_YEAR}")


def parse_period(text: str) -> Window:
    """`2026`, `2026-Q3` or `2026-09` as a window."""
    match = _PERIOD.fullmatch(text)
    if match is None:
        raise ValueError("a period is YYYY, YYYY-Qn or YYYY-MM")
    year = int(match.group(1))
    _check_year(year)
    if match.group(2):
        start = date(year, 3 * int(match.group(2)) - 2, 1)
        return Window(start, add_months(start, 3), text)
    if match.group(3):
        start = date(year, int(match.group(3)), 1)
        return Window(start, add_months(start, 1), text)
    return Window(date(year, 1, 1), date(year + 1, 1, 1), text)


def calendar_label(start: date, end: date) -> str | None:
    """The label of the calendar period [start, end) exactly is, if any."""
    if start.day != 1:
        return None
    if start.month == 1 and end == date(start.year + 1, 1, 1):
        return str(start.year)
    if start.month % 3 == 1 and end == add_months(start, 3):
        return f"{start.year}-Q{(start.month - 1) // 3 + 1}"
    if end == add_months(start, 1):
        return f"{start.year}-{start.month:02d}"
    return None


def window_of(start: date, end: date) -> Window:
    """A from/to range as a window (a calendar period when it is exactly one)."""
    if start >= end:
        raise ValueError("'from' must be before 'to'")
    _check_year(start.year)
    _check_year(end.year if end.month > 1 or end.day > 1 else end.year - 1)
    if start.toordinal() - (end - start).days < 1:
        raise ValueError("the range is too long: the period before it would begin before year 1")
    label = calendar_label(start, end)
    return Window(start, end, label) if label else Window(start, end)


def series(granularity: Granularity, start: date, end: date) -> list[Window]:
    """Consecutive calendar periods covering [start, end); both ends on period boundaries."""
    step = {Granularity.month: 1, Granularity.quarter: 3, Granularity.year: 12}[granularity]
    if start >= end:
        raise ValueError("'from' must be before 'to'")
    _check_year(start.year)
    _check_year(add_months(end, -step).year)  # the last period's
    for day in (start, end):
        if day.day != 1 or (day.month - 1) % step:
            raise ValueError(f"'from' and 'to' must fall on {granularity.value} boundaries")
    windows: list[Window] = []
    current = start
    while current < end:
        if len(windows) == MAX_SERIES:
            raise ValueError(f"a series has at most {MAX_SERIES} periods")
        nxt = add_months(current, step)
        windows.append(Window(current, nxt, calendar_label(current, nxt)))
        current = nxt
    return windows
