"""Webhooks (admin): subscribe, change, rotate the secret, read deliveries, retry one."""

from __future__ import annotations

import base64
import os
from datetime import timedelta
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.keys.service import Principal
from app.orgs.models import Org
from app.orgs.service import find_referenced
from app.platform import clock
from app.platform.config import Settings
from app.platform.errors import NotFound, ValidationFailed
from app.platform.pagination import PageParams, after_id, cut
from app.responses.service import parse_id
from app.webhooks import sender, worker
from app.webhooks.models import Delivery, DeliveryStatus, EventType, Webhook
from app.webhooks.schemas import (
    DeliveryOut,
    RotatedSecret,
    WebhookCreated,
    WebhookIn,
    WebhookOut,
    WebhookPatch,
)

ROTATION_OVERLAP = timedelta(hours=24)


class WebhookNotFound(NotFound):
    title = "Webhook not found"


class DeliveryNotFound(NotFound):
    title = "Delivery not found"


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(24)).decode()


async def check_url(url: str, settings: Settings) -> None:
    """422 at body.url for a URL the sender would refuse now."""
    try:
        parsed = sender.check_url(url, allow_http=settings.webhook_allow_http)
        await sender.resolve(parsed, allow_private=settings.webhook_allow_private)
    except sender.AddressRefused as exc:
        raise ValidationFailed.at(("body", "url"), str(exc)) from exc


async def _render(session: AsyncSession, hook: Webhook) -> WebhookOut:
    org = await session.get(Org, hook.org_id) if hook.org_id is not None else None
    return WebhookOut(
        id=str(hook.id),
        url=hook.url,
        events=[EventType(e) for e in hook.events],
        org=org.code if org else None,
        enabled=hook.enabled,
        disabled_reason=hook.disabled_reason,
        created_at=hook.created_at,
    )


async def create(
    session: AsyncSession, *, body: WebhookIn, principal: Principal, settings: Settings
) -> WebhookCreated:
    await check_url(body.url, settings)
    org_id = None
    if body.org is not None:
        org = await find_referenced(
            session, code=body.org, principal=principal, loc=("body", "org")
        )
        org_id = org.id
    hook = Webhook(
        url=body.url,
        events=list(dict.fromkeys(e.value for e in body.events)),
        org_id=org_id,
        secret=new_secret(),
        enabled=True,
    )
    session.add(hook)
    await session.flush()
    await session.refresh(hook)
    await audit.record(
        session,
        actor=audit.actor_of(principal),
        action=audit.Action.webhook_create,
        target=str(hook.id),
        details={"url": hook.url, "events": hook.events, "org": body.org},
    )
    out = await _render(session, hook)
    return WebhookCreated(**out.model_dump(), secret=hook.secret)


async def _get(session: AsyncSession, webhook_id: str, *, lock: bool = False) -> Webhook:
    number = parse_id(webhook_id)
    hook = (
        None if number is None else await session.get(Webhook, number, with_for_update=lock or None)
    )
    if hook is None:
        raise WebhookNotFound(f"No webhook with id {webhook_id!r}.")
    return hook


async def get(session: AsyncSession, *, webhook_id: str) -> WebhookOut:
    return await _render(session, await _get(session, webhook_id))


async def list_all(
    session: AsyncSession, *, page: PageParams
) -> tuple[list[WebhookOut], list[Any] | None]:
    query = select(Webhook).order_by(Webhook.id).limit(page.limit + 1)
    if page.after:
        query = query.where(Webhook.id > after_id(page.after))
    hooks, last = cut(list(await session.scalars(query)), page, lambda h: [h.id])
    return [await _render(session, h) for h in hooks], last


async def update(
    session: AsyncSession,
    *,
    webhook_id: str,
    body: WebhookPatch,
    principal: Principal,
    settings: Settings,
) -> WebhookOut:
    hook = await _get(session, webhook_id, lock=True)
    if body.url is not None:
        await check_url(body.url, settings)
        hook.url = body.url
    if body.events is not None:
        hook.events = list(dict.fromkeys(e.value for e in body.events))
    if body.enabled is not None:
        hook.enabled = body.enabled
        if body.enabled:
            hook.disabled_reason = None
    await session.flush()
    await audit.record(
        session,
        actor=audit.actor_of(principal),
        action=audit.Action.webhook_update,
        target=str(hook.id),
        details=body.model_dump(exclude_unset=True, mode="json"),
    )
    return await _render(session, hook)


async def delete(session: AsyncSession, *, webhook_id: str, principal: Principal) -> None:
    hook = await _get(session, webhook_id, lock=True)
    await session.delete(hook)
    await session.flush()
    await audit.record(
        session,
        actor=audit.actor_of(principal),
        action=audit.Action.webhook_delete,
        target=str(hook.id),
    )


async def rotate(session: AsyncSession, *, webhook_id: str, principal: Principal) -> RotatedSecret:
    """A new secret; the old one keeps signing (beside it) for 24 h."""
    hook = await _get(session, webhook_id, lock=True)
    until = clock.now() + ROTATION_OVERLAP
    hook.previous_secret, hook.previous_until = hook.secret, until
    hook.secret = new_secret()
    await session.flush()
    await audit.record(
        session,
        actor=audit.actor_of(principal),
        action=audit.Action.webhook_rotate_secret,
        target=str(hook.id),
    )
    return RotatedSecret(id=str(hook.id), secret=hook.secret, previous_valid_until=until)


def render_delivery(delivery: Delivery) -> DeliveryOut:
    return DeliveryOut(
        id=str(delivery.id),
        webhook_id=str(delivery.webhook_id),
        msg_id=delivery.msg_id,
        event_type=EventType(delivery.event_type),
        status=DeliveryStatus(delivery.status),
        attempts=delivery.attempts,
        next_attempt_at=delivery.next_attempt_at,
        created_at=delivery.created_at,
        delivered_at=delivery.delivered_at,
        payload=orjson.loads(delivery.payload) if delivery.payload else None,
    )


async def deliveries(
    session: AsyncSession, *, webhook_id: str, status: DeliveryStatus | None, page: PageParams
) -> tuple[list[DeliveryOut], list[Any] | None]:
    hook = await _get(session, webhook_id)
    query = select(Delivery).where(Delivery.webhook_id == hook.id)
    if status is not None:
        query = query.where(Delivery.status == status.value)
    if page.after:
        query = query.where(Delivery.id > after_id(page.after))
    rows = await session.scalars(query.order_by(Delivery.id).limit(page.limit + 1))
    deliveries, last = cut(list(rows), page, lambda d: [d.id])
    return [render_delivery(d) for d in deliveries], last


async def retry(
    session: AsyncSession, *, webhook_id: str, delivery_id: str, principal: Principal
) -> DeliveryOut:
    """Send a delivery again now, with the same webhook-id; a failed one gets one more attempt."""
    hook = await _get(session, webhook_id)
    number = parse_id(delivery_id)
    delivery = (
        None
        if number is None
        else await session.scalar(
            select(Delivery)
            .where(Delivery.id == number, Delivery.webhook_id == hook.id)
            .with_for_update()
        )
    )
    if delivery is None:
        raise DeliveryNotFound(f"No delivery {delivery_id!r} of webhook {webhook_id!r}.")
    if delivery.status == DeliveryStatus.failed.value:
        delivery.attempt_count = max(delivery.attempt_count, worker.ATTEMPTS - 1)
    delivery.status = DeliveryStatus.pending.value
    delivery.next_attempt_at = clock.now()
    await session.flush()
    await audit.record(
        session,
        actor=audit.actor_of(principal),
        action=audit.Action.webhook_retry,
        target=f"{hook.id}/{delivery.id}",
    )
    return render_delivery(delivery)
