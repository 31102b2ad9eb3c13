"""The rules that decide whether an invitation is sent (pure): sampling and contact windows."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction

from app.invitations.models import InvitationStatus, SuppressionReason
from app.stages import Stage

DAY = timedelta(hours=24)


def sampled_in(*, source: str, external_id: str, rate: float) -> bool:
    """Whether an invitation is in the sample: the first 8 bytes of sha256(source ‖ 0 ‖
    external_id) as a fraction of 2^64, compared exactly with the rate."""
    digest = hashlib.sha256(source.encode() + b"\x00" + external_id.encode()).digest()
    return Fraction(int.from_bytes(digest[:8], "big"), 2**64) < Fraction(rate)


@dataclass(frozen=True, slots=True)
class Contact:
    """An earlier invitation of the customer that was sent (not suppressed)."""

    stage: Stage
    created_at: datetime


def contact_blocked(
    contacts: Sequence[Contact],
    *,
    stage: Stage,
    now: datetime,
    min_days: int,
    per_stage: Mapping[Stage, int],
) -> bool:
    """Whether a customer with these earlier sent invitations may not be asked about `stage` now."""
    for contact in contacts:
        age = now - contact.created_at
        if age < min_days * DAY:
            return True
        if contact.stage is stage and age < per_stage.get(stage, 0) * DAY:
            return True
    return False


def decide(
    *,
    opted_out: bool,
    contact_blocked: bool,
    sampled_in: bool,
) -> SuppressionReason | None:
    """The reason to suppress, the rules taken in the contract's order; None: send it."""
    if opted_out:
        return SuppressionReason.opted_out
    if contact_blocked:
        return SuppressionReason.contact_rule
    if not sampled_in:
        return SuppressionReason.sampled_out
    return None


def status_of(
    *,
    reason: str | None,
    cancelled_at: datetime | None,
    answered_at: datetime | None,
    expires_at: datetime,
    now: datetime,
) -> InvitationStatus:
    """An invitation's status at `now`: nothing sweeps, expiry is a function of time."""
    if reason is not None:
        return InvitationStatus.suppressed
    if cancelled_at is not None:
        return InvitationStatus.cancelled
    if answered_at is not None:
        return InvitationStatus.answered
    if now >= expires_at:
        return InvitationStatus.expired
    return InvitationStatus.pending
