"""The case state machine and the overdue rule (pure)."""

from __future__ import annotations

from datetime import datetime

from app.cases.models import CaseStatus

S = CaseStatus
# Forward along open → acknowledged → resolved → closed (skips allowed), and a reopen.
ALLOWED: frozenset[tuple[CaseStatus, CaseStatus]] = frozenset(
    {
        (S.open, S.acknowledged),
        (S.open, S.resolved),
        (S.open, S.closed),
        (S.acknowledged, S.resolved),
        (S.acknowledged, S.closed),
        (S.resolved, S.closed),
        (S.resolved, S.open),
    }
)
NEEDS_ROOT_CAUSE = frozenset({S.resolved, S.closed})


def allowed(current: CaseStatus, target: CaseStatus) -> bool:
    """Whether a case may go from `current` to `target` (staying is no transition)."""
    return current is target or (current, target) in ALLOWED


def overdue(*, status: CaseStatus, due_at: datetime, now: datetime) -> bool:
    """Not resolved or closed, and past its due time."""
    return status in (S.open, S.acknowledged) and now > due_at
