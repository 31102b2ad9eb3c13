"""Writing and reading the audit log: one row per privileged change, in the change's transaction.

Events say who (`key:<id>` or `cli`), when, what (a stable action name on a target) and where in
the org tree; never personal data: no customer ref or pseudonym, no key secret or hash.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.models import AuditEvent
from app.audit.schemas import AuditEventOut
from app.keys.models import ApiKey
from app.orgs.models import Org
from app.platform.logs import request_id
from app.platform.pagination import PageParams, after_instant_and_id

if TYPE_CHECKING:  # keys.service records its own events: import it only for types
    from app.keys.service import Principal

CLI = "cli"
# The actor as an org-bound viewer reads it when the key lies outside its subtree.
OUTSIDE_KEY = "key"


class Action(StrEnum):
    """The stable names of audited operations."""

    org_create = "org.create"
    org_update = "org.update"
    org_move = "org.move"
    org_history_delete = "org.history_delete"
    survey_create = "survey.create"
    survey_publish = "survey.publish"
    stage_weights_set = "stage_weights.set"
    stage_weights_delete = "stage_weights.delete"
    target_set = "target.set"
    target_delete = "target.delete"
    key_create = "key.create"
    key_revoke = "key.revoke"
    response_erase = "response.erase"
    customer_erase = "customer.erase"
    responses_purge = "responses.purge"
    executive_create = "executive.create"
    executive_update = "executive.update"
    purview_set = "purview.set"
    purview_delete = "purview.delete"
    executive_target_set = "executive_target.set"
    executive_target_delete = "executive_target.delete"
    task_create = "task.create"
    task_update = "task.update"
    scheme_set = "scheme.set"
    evaluation_close = "evaluation.close"
    evaluation_reopen = "evaluation.reopen"
    sampling_set = "sampling.set"
    sampling_delete = "sampling.delete"
    contact_rules_set = "contact_rules.set"
    case_rule_set = "case_rule.set"
    case_rule_delete = "case_rule.delete"
    webhook_create = "webhook.create"
    webhook_update = "webhook.update"
    webhook_delete = "webhook.delete"
    webhook_rotate_secret = "webhook.rotate_secret"  # noqa: S105 (an action name)
    webhook_retry = "webhook.retry"


# Detail fields that name orgs: shown to an org-bound viewer only when inside its subtree.
ORG_DETAILS: Mapping[str, tuple[str, ...]] = {
    Action.org_create: ("parent",),
    Action.org_move: ("from", "to"),
    Action.org_history_delete: ("parent",),
}


def actor_of(principal: Principal | None) -> str:
    """`key:<id>` for an API key, `cli` for the command line (no principal, or its stand-in)."""
    if principal is None or principal.key_id == CLI:
        return CLI
    return f"key:{principal.key_id}"


async def record(
    session: AsyncSession,
    *,
    actor: str,
    action: Action,
    target: str | None = None,
    org_id: int | None = None,
    details: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Add an event to the caller's transaction (it commits or rolls back with the change)."""
    event = AuditEvent(
        actor=actor,
        action=action.value,
        target=target,
        org_id=org_id,
        details=dict(details or {}),
        request_id=request_id.get(),
    )
    session.add(event)
    await session.flush()
    return event


async def list_events(
    session: AsyncSession,
    *,
    viewer: Principal,
    action: Action | None,
    start: datetime | None,
    end: datetime | None,
    page: PageParams,
) -> tuple[list[AuditEventOut], list[Any] | None]:
    """Events newest first, as far as the viewer's subtree reaches; one page of them."""
    query = select(AuditEvent, Org.code, Org.path).outerjoin(Org, Org.id == AuditEvent.org_id)
    if viewer.org_id is not None:
        query = query.where(Org.path.contains([viewer.org_id]))
    if action is not None:
        query = query.where(AuditEvent.action == action.value)
    if start is not None:
        query = query.where(AuditEvent.at >= start)
    if end is not None:
        query = query.where(AuditEvent.at < end)
    if page.after:
        query = query.where(tuple_(AuditEvent.at, AuditEvent.id) < after_instant_and_id(page.after))
    query = query.order_by(AuditEvent.at.desc(), AuditEvent.id.desc()).limit(page.limit + 1)
    rows = (await session.execute(query)).all()
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    hidden = await _hidden(session, [event for event, _, _ in rows], viewer)
    items = [_render(event, code, hidden) for event, code, _ in rows]
    last = [rows[-1][0].at.isoformat(), rows[-1][0].id] if more else None
    return items, last


async def _hidden(
    session: AsyncSession, events: Sequence[AuditEvent], viewer: Principal
) -> set[str]:
    """Org codes in the events' details and actors whose keys lie outside the viewer's
    subtree: for it they do not exist."""
    if viewer.org_id is None:
        return set()
    codes = {
        value
        for event in events
        for field in ORG_DETAILS.get(event.action, ())
        if isinstance(value := event.details.get(field), str)
    }
    actors = {event.actor for event in events}
    visible: set[str] = set()
    if codes:
        rows = await session.execute(select(Org.code, Org.path).where(Org.code.in_(codes)))
        visible |= {code for code, path in rows if viewer.sees(path)}
    return (codes - visible) | await hidden_actors(session, actors, viewer)


async def hidden_actors(session: AsyncSession, actors: set[str], viewer: Principal) -> set[str]:
    """Of `actors` (`key:<id>`, `cli`), the keys that lie outside the viewer's subtree: for it
    they do not exist, and read as OUTSIDE_KEY."""
    keys = {a for a in actors if a.startswith("key:")}
    if viewer.org_id is None or not keys:
        return set()
    rows = await session.execute(
        select(ApiKey.id)
        .join(Org, Org.id == ApiKey.org_id)
        .where(ApiKey.id.in_([a.removeprefix("key:") for a in keys]))
        .where(Org.path.contains([viewer.org_id]))
    )
    return keys - {f"key:{key_id}" for key_id in rows.scalars()}


def _render(event: AuditEvent, org_code: str | None, hidden: set[str]) -> AuditEventOut:
    details = dict(event.details)
    for field in ORG_DETAILS.get(event.action, ()):
        if details.get(field) in hidden:
            details[field] = None  # as the org's `parent` reads for this key: outside, so null
    return AuditEventOut(
        id=str(event.id),
        at=event.at,
        actor=OUTSIDE_KEY if event.actor in hidden else event.actor,
        action=event.action,
        target=event.target,
        org=org_code,
        details=details,
        request_id=event.request_id,
    )
