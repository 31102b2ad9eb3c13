"""HTTP routes of webhooks (admin)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response, status

from app.keys.scopes import Scope
from app.keys.service import Principal
from app.platform.deps import Pagination, SessionDep, SettingsDep, require
from app.platform.errors import Forbidden
from app.platform.pagination import Page, encode_cursor
from app.webhooks import service
from app.webhooks.models import DeliveryStatus
from app.webhooks.schemas import (
    DeliveryOut,
    RotatedSecret,
    WebhookCreated,
    WebhookIn,
    WebhookOut,
    WebhookPatch,
)


async def _service_admin(
    principal: Annotated[Principal, Depends(require(Scope.admin))],
) -> Principal:
    """Webhooks are the service's: an admin key bound to an org may not see or change them
    (they reach beyond its subtree: secrets, URLs, events of other orgs)."""
    if principal.org_id is not None:
        raise Forbidden("Webhooks need an admin key that is not bound to an org.")
    return principal


Admin = Annotated[Principal, Depends(_service_admin)]
router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

WebhookId = Annotated[str, Path(description="The webhook id.")]


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_webhook(
    body: WebhookIn, session: SessionDep, admin: Admin, settings: SettingsDep, response: Response
) -> WebhookCreated:
    """Subscribe a URL to event types (of an org subtree); the secret is shown only here."""
    hook = await service.create(session, body=body, principal=admin, settings=settings)
    response.headers["Location"] = f"/v1/webhooks/{hook.id}"
    response.headers["Cache-Control"] = "no-store"
    return hook


@router.get("")
async def list_webhooks(session: SessionDep, _: Admin, page: Pagination) -> Page[WebhookOut]:
    """Every webhook, by id (no secrets)."""
    items, last = await service.list_all(session, page=page)
    return Page[WebhookOut](items=items, next_cursor=encode_cursor(last) if last else None)


@router.get("/{webhook_id}")
async def get_webhook(webhook_id: WebhookId, session: SessionDep, _: Admin) -> WebhookOut:
    """One webhook (no secret)."""
    return await service.get(session, webhook_id=webhook_id)


@router.patch("/{webhook_id}")
async def update_webhook(
    webhook_id: WebhookId,
    body: WebhookPatch,
    session: SessionDep,
    admin: Admin,
    settings: SettingsDep,
) -> WebhookOut:
    """Change the URL or the event types; `enabled: true` re-enables one a 410 disabled."""
    return await service.update(
        session, webhook_id=webhook_id, body=body, principal=admin, settings=settings
    )


@router.delete("/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_webhook(webhook_id: WebhookId, session: SessionDep, admin: Admin) -> Response:
    """Unsubscribe; its deliveries go with it."""
    await service.delete(session, webhook_id=webhook_id, principal=admin)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{webhook_id}/rotate-secret")
async def rotate_webhook_secret(
    webhook_id: WebhookId, session: SessionDep, admin: Admin, response: Response
) -> RotatedSecret:
    """A new secret; for 24 h every delivery is signed with both."""
    response.headers["Cache-Control"] = "no-store"
    return await service.rotate(session, webhook_id=webhook_id, principal=admin)


@router.get("/{webhook_id}/deliveries")
async def list_webhook_deliveries(
    webhook_id: WebhookId,
    session: SessionDep,
    _: Admin,
    page: Pagination,
    status_: Annotated[DeliveryStatus | None, Query(alias="status")] = None,
) -> Page[DeliveryOut]:
    """One delivery per event, with its attempts and next attempt, by id."""
    items, last = await service.deliveries(
        session, webhook_id=webhook_id, status=status_, page=page
    )
    return Page[DeliveryOut](items=items, next_cursor=encode_cursor(last) if last else None)


@router.post("/{webhook_id}/deliveries/{delivery_id}/retry")
async def retry_webhook_delivery(
    webhook_id: WebhookId,
    delivery_id: Annotated[str, Path(description="The delivery id.")],
    session: SessionDep,
    admin: Admin,
) -> DeliveryOut:
    """Send a delivery again now, with the same webhook-id."""
    return await service.retry(
        session, webhook_id=webhook_id, delivery_id=delivery_id, principal=admin
    )
