"""What a customer's browser does with an invitation token, without an API key: read the
survey, answer it once, opt out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.invitations import rules, tokens
from app.invitations.models import Invitation, InvitationStatus, OptOut
from app.invitations.schemas import (
    PublicAnswered,
    PublicInvitation,
    PublicOptedOut,
    PublicOrg,
    PublicSurvey,
)
from app.keys.service import Principal
from app.orgs.models import Org
from app.platform import clock
from app.platform.config import Settings
from app.platform.errors import Conflict, Gone, NotFound
from app.responses import ingest
from app.responses.schemas import CustomerIn, ItemStatus, ResponseIn
from app.responses.service import prepare_one
from app.surveys.models import Survey, SurveyVersion
from app.surveys.schemas import QuestionOut


class InvitationUnknown(NotFound):
    title = "Invitation not found"

    def __init__(self) -> None:
        # The same words for a forged, altered, cancelled or erased token: nothing to learn.
        super().__init__("No invitation has this token.")


class InvitationAnswered(Conflict):
    slug = "invitation-answered"
    title = "This invitation was answered already"


class InvitationExpired(Gone):
    slug = "invitation-expired"
    title = "This invitation has expired"


@dataclass(frozen=True, slots=True)
class Found:
    row: Invitation
    survey: Survey
    version: SurveyVersion
    org: Org
    status: InvitationStatus


async def find(session: AsyncSession, *, token: str, settings: Settings) -> Found:
    """The invitation a token names; 404 for anything that is not a live token."""
    number = tokens.claimed_id(settings.token_key, token)
    if number is None:
        raise InvitationUnknown
    found = (
        await session.execute(
            select(Invitation, Survey, SurveyVersion, Org)
            .join(SurveyVersion, SurveyVersion.id == Invitation.survey_version_id)
            .join(Survey, Survey.id == SurveyVersion.survey_id)
            .join(Org, Org.id == Invitation.org_id)
            .where(Invitation.id == number)
        )
    ).first()
    if found is None:
        raise InvitationUnknown
    row, survey, version, org = found
    if not tokens.verify(settings.token_key, token, invitation_id=row.id, salt=row.salt):
        raise InvitationUnknown
    status = rules.status_of(
        reason=row.reason,
        cancelled_at=row.cancelled_at,
        answered_at=row.answered_at,
        expires_at=row.expires_at,
        now=clock.now(),
    )
    if status in (InvitationStatus.suppressed, InvitationStatus.cancelled):
        raise InvitationUnknown
    return Found(row, survey, version, org, status)


async def show(session: AsyncSession, *, token: str, settings: Settings) -> PublicInvitation:
    """The survey to render: its version's questions and the org's name, nothing else."""
    found = await find(session, token=token, settings=settings)
    return PublicInvitation(
        status=found.status,
        expires_at=found.row.expires_at,
        survey=PublicSurvey(
            code=found.survey.code,
            version=found.version.version,
            title=found.version.title,
            stage=found.survey.stage,
            questions=[QuestionOut.model_validate(q) for q in found.version.questions],
        ),
        org=PublicOrg(name=found.org.name),
    )


def _refuse(status: InvitationStatus) -> None:
    if status is InvitationStatus.answered:
        raise InvitationAnswered("This invitation has an answer; it takes one.")
    if status is InvitationStatus.expired:
        raise InvitationExpired("This invitation has expired; it takes no answer.")


async def submit(
    session: AsyncSession, *, token: str, answers: dict[str, Any], settings: Settings
) -> PublicAnswered:
    """Store the answer as the invitation's response, through the one write path.

    Two submits at once insert the same (source, external_id): the responses' unique key lets
    one in, the other finds it there (409).
    """
    found = await find(session, token=token, settings=settings)
    _refuse(found.status)
    row = found.row
    body = ResponseIn(
        survey=found.survey.code,
        survey_version=found.version.version,
        org=found.org.code,
        occurred_at=row.occurred_at,
        source=row.source,
        external_id=row.external_id,
        channel=row.channel,
        customer=CustomerIn(type=row.customer_type),
        answers=answers,
        segments=row.segments,
    )
    # Who answers: the invitation itself, with its own source and no org bound.
    principal = Principal(
        key_id="invitation", name="invitation", scopes=frozenset(), source=row.source
    )
    item, catalog = await prepare_one(
        session,
        body=body,
        principal=principal,
        settings=settings,
        pseudonym=row.customer_pseudonym,
    )
    (stored,) = await ingest.store(session, [item], gone=catalog.gone)
    if stored.status is not ItemStatus.created:
        raise InvitationAnswered("This invitation has an answer; it takes one.")
    if stored.invitation_id != row.id:
        # Cancelled or erased between our read and our insert: the response must not stay.
        raise InvitationUnknown
    return PublicAnswered(status=InvitationStatus.answered)


async def opt_out(session: AsyncSession, *, token: str, settings: Settings) -> PublicOptedOut:
    """The invitation's customer is asked no more (their pending invitations stay answerable)."""
    found = await find(session, token=token, settings=settings)
    await session.execute(
        insert(OptOut)
        .values(customer_pseudonym=found.row.customer_pseudonym)
        .on_conflict_do_nothing(index_elements=[OptOut.customer_pseudonym])
    )
    return PublicOptedOut(status=found.status, opted_out=True)
