"""Invitations through the keyed API: create (under the rules), read, list, cancel, count;
the sampling and contact rules."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import delete, select, tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.indices import service as indices
from app.indices.periods import Window
from app.invitations import rules, tokens
from app.invitations.models import (
    ContactRules,
    Invitation,
    InvitationStatus,
    SamplingRule,
    SuppressionReason,
)
from app.invitations.schemas import (
    ContactRulesIn,
    ContactRulesOut,
    InvitationIn,
    InvitationOut,
    InvitationStats,
    IssuedInvitation,
    SamplingList,
    SamplingOut,
    SuppressedCounts,
)
from app.keys.service import Principal
from app.orgs import tree
from app.orgs.models import Org
from app.orgs.service import within
from app.platform import clock
from app.platform.config import Settings
from app.platform.db import driver_connection
from app.platform.errors import Conflict, NotFound, ValidationFailed
from app.platform.pagination import PageParams, after_instant_and_id, cut
from app.responses.prepare import FUTURE_TOLERANCE, pseudonymize, tombstone_hash
from app.responses.schemas import CustomerOut
from app.responses.service import SourceForbidden, parse_id
from app.stages import Stage
from app.surveys.models import Survey, SurveyVersion

DEFAULT_VALIDITY = timedelta(days=14)
MAX_VALIDITY = timedelta(days=90)
# Contact rules look back at most this far (a rule is at most 365 days).
LOOKBACK = timedelta(days=366)
# pg_advisory_xact_lock(namespace, key): the namespace of a customer's invitations.
_CUSTOMER_LOCKS = 0x1A71


class InvitationNotFound(NotFound):
    title = "Invitation not found"


class InvitationConflict(Conflict):
    slug = "invitation-conflict"
    title = "This (source, external_id) names another invitation or a response"


class InvitationNotPending(Conflict):
    slug = "invitation-not-pending"
    title = "Only a pending invitation can be cancelled"


class SamplingRuleNotFound(NotFound):
    title = "Sampling rule not found"


@dataclass(frozen=True, slots=True)
class Named:
    """The codes an invitation row is rendered with."""

    survey: str
    survey_version: int
    org: str


def render(row: Invitation, names: Named, *, now: datetime) -> InvitationOut:
    return InvitationOut(
        id=str(row.id),
        status=rules.status_of(
            reason=row.reason,
            cancelled_at=row.cancelled_at,
            answered_at=row.answered_at,
            expires_at=row.expires_at,
            now=now,
        ),
        reason=SuppressionReason(row.reason) if row.reason else None,
        expires_at=row.expires_at,
        survey=names.survey,
        survey_version=names.survey_version,
        stage=row.stage,
        org=names.org,
        source=row.source,
        external_id=row.external_id,
        occurred_at=row.occurred_at,
        channel=row.channel,
        customer=CustomerOut(type=row.customer_type),
        segments=row.segments,
        created_at=row.created_at,
        answered_at=row.answered_at,
    )


def issued(row: Invitation, names: Named, *, settings: Settings, now: datetime) -> IssuedInvitation:
    """The invitation with its token (none when suppressed) and URL."""
    out = render(row, names, now=now)
    token = None
    if row.reason is None:
        token = tokens.make(settings.token_key, invitation_id=row.id, salt=row.salt)
    url = None
    if token is not None and settings.survey_url_template:
        url = settings.survey_url_template.replace("{token}", token)
    return IssuedInvitation(**out.model_dump(), token=token, url=url)


def _with_names() -> Any:
    return (
        select(Invitation, Survey.code, SurveyVersion.version, Org.code, Org.path)
        .join(SurveyVersion, SurveyVersion.id == Invitation.survey_version_id)
        .join(Survey, Survey.id == SurveyVersion.survey_id)
        .join(Org, Org.id == Invitation.org_id)
    )


async def _named(
    session: AsyncSession, where: Any, *, lock: bool = False
) -> tuple[Invitation, Named, list[int]] | None:
    query = _with_names().where(where)
    if lock:  # the invitation's row, read afresh
        query = query.with_for_update(of=Invitation).execution_options(populate_existing=True)
    found = (await session.execute(query)).first()
    if found is None:
        return None
    row, survey, version, org, path = found
    return row, Named(survey, version, org), path


_LOOKUP = """
SELECT
  (SELECT json_build_array(s.id, s.stage, v.id, v.version)
   FROM surveys s JOIN survey_versions v ON v.survey_id = s.id AND v.version = s.latest_version
   WHERE s.code = $1) AS survey,
  (SELECT json_build_array(o.id, o.path) FROM orgs o WHERE o.code = $2) AS org,
  (SELECT i.id FROM invitations i WHERE i.source = $3 AND i.external_id = $4) AS existing,
  EXISTS (SELECT FROM responses r WHERE r.source = $3 AND r.external_id = $4)
    OR EXISTS (SELECT FROM tombstones t WHERE t.key_hash = $5) AS taken,
  EXISTS (SELECT FROM opt_outs WHERE customer_pseudonym = $6) AS opted_out,
  (SELECT rate FROM sampling_rules WHERE source = $3) AS rate,
  (SELECT json_build_array(min_days, per_stage) FROM contact_rules WHERE id = 1) AS contact_rules,
  (SELECT coalesce(json_agg(json_build_array(stage, created_at)), '[]')
   FROM invitations
   WHERE customer_pseudonym = $6 AND reason IS NULL AND created_at > $7) AS contacts
"""

_INSERT = """
INSERT INTO invitations (
    salt, survey_version_id, org_id, stage, source, external_id, occurred_at, occurred_on,
    channel, customer_type, customer_pseudonym, segments, reason, expires_at, created_at)
VALUES ($1, $2, $3, $4::stage, $5, $6, $7, $8, $9, $10::customer_type, $11, $12::jsonb, $13,
        $14, $15)
ON CONFLICT (source, external_id) DO NOTHING
RETURNING id
"""


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def _expiry(body: InvitationIn, now: datetime) -> datetime:
    if body.expires_at is None:
        return now + DEFAULT_VALIDITY
    if body.expires_at <= now:
        raise ValidationFailed.at(("body", "expires_at"), "must be in the future")
    if body.expires_at > now + MAX_VALIDITY:
        raise ValidationFailed.at(
            ("body", "expires_at"), "may be at most 90 days after the request"
        )
    return body.expires_at


async def create_invitation(
    session: AsyncSession, *, body: InvitationIn, principal: Principal, settings: Settings
) -> tuple[IssuedInvitation, bool]:
    """Store an invitation (sent, or suppressed by a rule); (invitation, created-and-sent).

    The same (source, external_id) again answers the stored invitation, unchanged.
    """
    now = clock.now()
    source = body.source or principal.source
    errors: list[dict[str, Any]] = []
    if source is None:
        errors.append({"loc": ["body", "source"], "msg": "source is required"})
    elif principal.source is not None and source != principal.source:
        raise SourceForbidden(f"This key may only invite for source {principal.source!r}.")
    if body.occurred_at > now + FUTURE_TOLERANCE:
        errors.append(
            {"loc": ["body", "occurred_at"], "msg": "must not be more than a day in the future"}
        )
    expires_at = _expiry(body, now)
    pseudonym = pseudonymize(settings.pseudonym_key, body.customer.ref)
    conn = await driver_connection(session)
    # Two invitations of one customer take turns: at most one of them passes a contact rule.
    await conn.execute(
        "SELECT pg_advisory_xact_lock($1, hashtext(encode($2::bytea, 'hex')))",
        _CUSTOMER_LOCKS,
        pseudonym,
    )
    found = await conn.fetchrow(
        _LOOKUP,
        body.survey,
        body.org,
        source or "",
        body.external_id,
        tombstone_hash(source or "", body.external_id),
        pseudonym,
        now - LOOKBACK,
    )
    survey = _json(found["survey"])
    org = _json(found["org"])
    if survey is None:
        errors.append({"loc": ["body", "survey"], "msg": f"unknown survey {body.survey!r}"})
    if org is None or not principal.sees(org[1]):
        errors.append({"loc": ["body", "org"], "msg": f"unknown org {body.org!r}"})
    if errors:
        raise ValidationFailed(errors[0]["msg"], errors=errors)
    assert source is not None
    survey_id, stage_name, version_id, _ = survey
    stage = Stage(stage_name)
    if found["existing"] is not None:
        return await _replay(
            session,
            invitation_id=found["existing"],
            survey_id=survey_id,
            org_id=org[0],
            pseudonym=pseudonym,
            body=body,
            settings=settings,
            now=now,
        )
    if found["taken"]:
        raise InvitationConflict(
            f"A response with source {source!r} and external_id {body.external_id!r} exists "
            "or was erased: it cannot be asked for again."
        )
    reason = _reason(found, source=source, external_id=body.external_id, stage=stage, now=now)
    row = Invitation(
        salt=os.urandom(16),
        survey_version_id=version_id,
        org_id=org[0],
        stage=stage,
        source=source,
        external_id=body.external_id,
        occurred_at=body.occurred_at.astimezone(UTC),
        occurred_on=body.occurred_at.astimezone(settings.zone).date(),
        channel=body.channel,
        customer_type=body.customer.type,
        customer_pseudonym=pseudonym,
        segments=body.segments,
        reason=reason.value if reason else None,
        expires_at=expires_at.astimezone(UTC),
        created_at=now,
    )
    new_id = await conn.fetchval(
        _INSERT,
        row.salt,
        row.survey_version_id,
        row.org_id,
        row.stage.value,
        row.source,
        row.external_id,
        row.occurred_at,
        row.occurred_on,
        row.channel,
        row.customer_type.value,
        row.customer_pseudonym,
        orjson.dumps(row.segments).decode() if row.segments is not None else None,
        row.reason,
        row.expires_at,
        row.created_at,
    )
    if new_id is None:  # created meanwhile for another customer (who held another lock)
        existing = await conn.fetchval(
            "SELECT id FROM invitations WHERE source = $1 AND external_id = $2",
            source,
            body.external_id,
        )
        return await _replay(
            session,
            invitation_id=existing,
            survey_id=survey_id,
            org_id=org[0],
            pseudonym=pseudonym,
            body=body,
            settings=settings,
            now=now,
        )
    row.id = new_id
    # The survey's latest version as the lookup saw it; the codes are the body's own.
    names = Named(body.survey, survey[3], body.org)
    return issued(row, names, settings=settings, now=now), reason is None


def _reason(
    found: Any, *, source: str, external_id: str, stage: Stage, now: datetime
) -> SuppressionReason | None:
    contact = _json(found["contact_rules"])
    blocked = False
    if contact is not None:
        min_days, per_stage = contact
        contacts = [
            rules.Contact(Stage(s), datetime.fromisoformat(at))
            for s, at in _json(found["contacts"])
        ]
        blocked = rules.contact_blocked(
            contacts,
            stage=stage,
            now=now,
            min_days=min_days,
            per_stage={Stage(k): v for k, v in _json(per_stage).items()},
        )
    rate = found["rate"]
    return rules.decide(
        opted_out=found["opted_out"],
        contact_blocked=blocked,
        sampled_in=rate is None
        or rules.sampled_in(source=source, external_id=external_id, rate=rate),
    )


async def _replay(
    session: AsyncSession,
    *,
    invitation_id: int,
    survey_id: int,
    org_id: int,
    pseudonym: bytes,
    body: InvitationIn,
    settings: Settings,
    now: datetime,
) -> tuple[IssuedInvitation, bool]:
    """The stored invitation of a repeated create, if the repeat names the same survey, org and
    customer; else 409."""
    found = await _named(session, Invitation.id == invitation_id)
    assert found is not None
    row, names, _ = found
    stored_survey = await session.scalar(
        select(SurveyVersion.survey_id).where(SurveyVersion.id == row.survey_version_id)
    )
    same = (
        stored_survey == survey_id
        and row.org_id == org_id
        and row.customer_pseudonym == pseudonym
        and row.customer_type is body.customer.type
    )
    if not same:
        raise InvitationConflict(
            f"An invitation with source {row.source!r} and external_id {row.external_id!r} "
            "exists for another survey, org or customer."
        )
    return issued(row, names, settings=settings, now=now), False


async def _visible(
    session: AsyncSession, invitation_id: str, principal: Principal, *, lock: bool = False
) -> Any:
    number = parse_id(invitation_id)
    found = None if number is None else await _named(session, Invitation.id == number, lock=lock)
    if found is None or not principal.sees(found[2]):
        raise InvitationNotFound(f"No invitation with id {invitation_id!r}.")
    return found


async def get_invitation(
    session: AsyncSession, *, invitation_id: str, principal: Principal
) -> InvitationOut:
    """One invitation (never its token), if it lies in the key's subtree."""
    row, names, _ = await _visible(session, invitation_id, principal)
    return render(row, names, now=clock.now())


async def cancel_invitation(
    session: AsyncSession, *, invitation_id: str, principal: Principal
) -> None:
    """Cancel a pending invitation (its token then finds nothing); cancelling again is a no-op."""
    # The row lock orders this against a submit's marking (which also takes it).
    locked, _, _ = await _visible(session, invitation_id, principal, lock=True)
    now = clock.now()
    status = rules.status_of(
        reason=locked.reason,
        cancelled_at=locked.cancelled_at,
        answered_at=locked.answered_at,
        expires_at=locked.expires_at,
        now=now,
    )
    if status is InvitationStatus.cancelled:
        return
    if status is not InvitationStatus.pending:
        raise InvitationNotPending(f"The invitation is {status.value}; it cannot be cancelled.")
    locked.cancelled_at = now
    await session.flush()


def _status_filter(status: InvitationStatus, now: datetime) -> list[Any]:
    sent = Invitation.reason.is_(None)
    open_ = [sent, Invitation.cancelled_at.is_(None), Invitation.answered_at.is_(None)]
    match status:
        case InvitationStatus.suppressed:
            return [Invitation.reason.is_not(None)]
        case InvitationStatus.cancelled:
            return [sent, Invitation.cancelled_at.is_not(None)]
        case InvitationStatus.answered:
            return [sent, Invitation.cancelled_at.is_(None), Invitation.answered_at.is_not(None)]
        case InvitationStatus.expired:
            return [*open_, Invitation.expires_at <= now]
        case InvitationStatus.pending:
            return [*open_, Invitation.expires_at > now]


async def list_invitations(
    session: AsyncSession,
    *,
    principal: Principal,
    org_code: str | None,
    status: InvitationStatus | None,
    start: datetime | None,
    end: datetime | None,
    page: PageParams,
) -> tuple[list[InvitationOut], list[Any] | None]:
    """Invitations ordered by (occurred_at, id), by org subtree, status and time."""
    now = clock.now()
    query = _with_names()
    scope = await within(session, principal=principal, org_code=org_code)
    if scope is not None:
        query = query.where(scope)
    if status is not None:
        query = query.where(*_status_filter(status, now))
    if start is not None:
        query = query.where(Invitation.occurred_at >= start)
    if end is not None:
        query = query.where(Invitation.occurred_at < end)
    if page.after:
        query = query.where(
            tuple_(Invitation.occurred_at, Invitation.id) > after_instant_and_id(page.after)
        )
    query = query.order_by(Invitation.occurred_at, Invitation.id).limit(page.limit + 1)
    rows, last = cut(
        (await session.execute(query)).all(),
        page,
        lambda r: [r[0].occurred_at.isoformat(), r[0].id],
    )
    return [render(r, Named(s, v, o), now=now) for r, s, v, o, _ in rows], last


_STATS = """
SELECT count(*) AS created,
       count(*) FILTER (WHERE reason = 'sampled_out') AS sampled_out,
       count(*) FILTER (WHERE reason = 'contact_rule') AS contact_rule,
       count(*) FILTER (WHERE reason = 'opted_out') AS opted_out,
       count(*) FILTER (WHERE reason IS NULL AND cancelled_at IS NOT NULL) AS cancelled,
       count(*) FILTER (WHERE reason IS NULL AND cancelled_at IS NULL
                          AND answered_at IS NOT NULL) AS answered,
       count(*) FILTER (WHERE reason IS NULL AND cancelled_at IS NULL AND answered_at IS NULL
                          AND expires_at <= $1) AS expired
FROM invitations
WHERE ({where}){extra}
"""


async def stats(
    session: AsyncSession,
    *,
    org: Org,
    window: Window,
    scope: indices.Scope,
) -> InvitationStats:
    """Response rates of the invitations whose occurred_at date lies in the window, over the
    org's scope in the chosen tree."""
    now = clock.now()
    view = await tree.load(session)
    params: list[Any] = [now]
    where = indices.stretch_filter(
        indices.stretches(view, [org.id], window, scope),
        column="occurred_on",
        cast="date",
        params=params,
    )
    extra = indices.filter_sql(scope.filters, params)
    sql = _STATS.format(where=where, extra=extra)  # placeholders only: values are parameters
    conn = await driver_connection(session)
    counts = await conn.fetchrow(sql, *params)
    suppressed = counts["sampled_out"] + counts["contact_rule"] + counts["opted_out"]
    sent = counts["created"] - suppressed
    answered = counts["answered"]
    expired = counts["expired"]
    cancelled = counts["cancelled"]
    return InvitationStats(
        org=org.code,
        from_=window.start,
        to=window.end,
        tree=scope.tree.label,
        created=counts["created"],
        suppressed=SuppressedCounts(
            sampled_out=counts["sampled_out"],
            contact_rule=counts["contact_rule"],
            opted_out=counts["opted_out"],
        ),
        sent=sent,
        answered=answered,
        expired=expired,
        pending=sent - answered - expired - cancelled,
        cancelled=cancelled,
        response_rate=answered / sent if sent else None,
    )


async def list_sampling(session: AsyncSession) -> SamplingList:
    rows = await session.scalars(select(SamplingRule).order_by(SamplingRule.source))
    return SamplingList(items=[SamplingOut(source=r.source, rate=r.rate) for r in rows])


async def get_sampling(session: AsyncSession, *, source: str) -> SamplingOut:
    rule = await session.get(SamplingRule, source)
    if rule is None:
        raise SamplingRuleNotFound(f"No sampling rule for source {source!r} (it sends all).")
    return SamplingOut(source=rule.source, rate=rule.rate)


async def put_sampling(
    session: AsyncSession, *, source: str, rate: float, principal: Principal
) -> tuple[SamplingOut, bool]:
    """Set a source's sampling rate; (rule, created)."""
    existed = await session.get(SamplingRule, source, with_for_update=True) is not None
    await session.execute(
        insert(SamplingRule)
        .values(source=source, rate=rate)
        .on_conflict_do_update(
            index_elements=[SamplingRule.source], set_={"rate": rate, "updated_at": clock.now()}
        )
    )
    await audit.record(
        session,
        actor=audit.actor_of(principal),
        action=audit.Action.sampling_set,
        target=source,
        details={"rate": rate},
    )
    return SamplingOut(source=source, rate=rate), not existed


async def delete_sampling(session: AsyncSession, *, source: str, principal: Principal) -> None:
    deleted = await session.execute(
        delete(SamplingRule).where(SamplingRule.source == source).returning(SamplingRule.source)
    )
    if deleted.first() is None:
        raise SamplingRuleNotFound(f"No sampling rule for source {source!r}.")
    await audit.record(
        session,
        actor=audit.actor_of(principal),
        action=audit.Action.sampling_delete,
        target=source,
    )


async def get_contact_rules(session: AsyncSession) -> ContactRulesOut:
    row = await session.get(ContactRules, 1)
    if row is None:
        return ContactRulesOut(min_days=0, per_stage={})
    return ContactRulesOut(
        min_days=row.min_days, per_stage={Stage(k): v for k, v in row.per_stage.items()}
    )


async def put_contact_rules(
    session: AsyncSession, *, body: ContactRulesIn, principal: Principal
) -> ContactRulesOut:
    per_stage = {stage.value: days for stage, days in body.per_stage.items()}
    await session.execute(
        insert(ContactRules)
        .values(id=1, min_days=body.min_days, per_stage=per_stage)
        .on_conflict_do_update(
            index_elements=[ContactRules.id],
            set_={"min_days": body.min_days, "per_stage": per_stage, "updated_at": clock.now()},
        )
    )
    await audit.record(
        session,
        actor=audit.actor_of(principal),
        action=audit.Action.contact_rules_set,
        details={"min_days": body.min_days, "per_stage": per_stage},
    )
    return ContactRulesOut(min_days=body.min_days, per_stage=dict(body.per_stage))
