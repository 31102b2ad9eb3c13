"""The service's one clock, so that tests can move time (a move dated tomorrow, midnight)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo


def now() -> datetime:
    """The current instant (UTC)."""
    return datetime.now(UTC)


def today(zone: ZoneInfo) -> date:
    """Today's date in the reporting time zone."""
    return now().astimezone(zone).date()
