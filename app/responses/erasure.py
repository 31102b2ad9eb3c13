"""Erasure of responses (admin): the rows go, a tombstone of (source, external_id) stays.

Deleting rows fires the index trigger, so every index forgets them at once. Retention purges
(app/responses/retention.py) go through the same `delete_with_tombstones`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Response, status
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.idempotency import service as idempotency
from app.keys.service import Principal
from app.platform.db import driver_connection
from app.platform.deps import Admin, SessionDep, SettingsDep
from app.responses.prepare import pseudonymize, tombstone_hash
from app.responses.service import ResponseNotFound, parse_id

router = APIRouter(tags=["erasure"])

_DELETE = """
DELETE FROM responses r USING orgs o
WHERE o.id = r.org_id AND {match} AND ($2::bigint IS NULL OR o.path @> ARRAY[$2::bigint])
RETURNING r.id, r.source, r.external_id, r.org_id
"""
_DELETE_INVITATIONS = """
DELETE FROM invitations i USING orgs o
WHERE o.id = i.org_id AND i.customer_pseudonym = $1
  AND ($2::bigint IS NULL OR o.path @> ARRAY[$2::bigint])
"""
_TOMBSTONE = """
INSERT INTO tombstones (key_hash, org_id, reason)
SELECT * FROM unnest($1::bytea[], $2::bigint[], $3::text[])
ON CONFLICT (key_hash) DO NOTHING
"""


async def delete_with_tombstones(
    conn: Any, *, match: str, value: Any, within_org: int | None, reason: str
) -> list[Any]:
    """Delete the responses matching `match` (SQL on `r`, with `$1` = value) inside
    `within_org`'s subtree (None: anywhere), leave a tombstone of each; the deleted rows."""
    rows: list[Any] = await conn.fetch(_DELETE.format(match=match), value, within_org)
    if rows:
        await conn.execute(
            _TOMBSTONE,
            [tombstone_hash(r["source"], r["external_id"]) for r in rows],
            [r["org_id"] for r in rows],
            [reason] * len(rows),
        )
        # A stored Idempotency-Key answer may show an erased response's answers: it goes too.
        await idempotency.forget_responses(conn, response_ids=[r["id"] for r in rows])
        # Its events not delivered yet are not sent.
        await conn.execute(
            "DELETE FROM webhook_deliveries WHERE response_id = ANY($1::bigint[])"
            " AND status <> 'delivered'",
            [r["id"] for r in rows],
        )
    return rows


async def _erase(session: AsyncSession, match: str, value: Any, principal: Principal) -> list[Any]:
    conn = await driver_connection(session)
    return await delete_with_tombstones(
        conn, match=match, value=value, within_org=principal.org_id, reason="erased"
    )


async def erase_response(session: AsyncSession, *, response_id: str, principal: Principal) -> None:
    """Erase one response; 404 when it does not exist or lies outside the key's subtree."""
    number = parse_id(response_id)
    if number is None:
        raise ResponseNotFound(f"No response with id {response_id!r}.")
    rows = await _erase(session, "r.id = $1", number, principal)
    if not rows:
        raise ResponseNotFound(f"No response with id {response_id!r}.")
    await audit.record(
        session,
        actor=audit.actor_of(principal),
        action=audit.Action.response_erase,
        target=str(number),
        org_id=rows[0]["org_id"],
        details={"count": 1},
    )


async def erase_customer(
    session: AsyncSession, *, ref: str, principal: Principal, pseudonym_key: str
) -> int:
    """Erase every response of a customer (by the ref the client knows); how many."""
    pseudonym = pseudonymize(pseudonym_key, ref)
    count = len(await _erase(session, "r.customer_pseudonym = $1", pseudonym, principal))
    # Their invitations go too (their opt-out stays: a pseudonym, so they are not asked again).
    await (await driver_connection(session)).execute(
        _DELETE_INVITATIONS, pseudonym, principal.org_id
    )
    # The event names neither the ref nor its pseudonym: that would keep what was erased.
    await audit.record(
        session,
        actor=audit.actor_of(principal),
        action=audit.Action.customer_erase,
        org_id=principal.org_id,
        details={"count": count},
    )
    return count


class Deleted(BaseModel):
    deleted: int


@router.delete("/v1/responses/{response_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_response(
    response_id: Annotated[str, Path(description="The response id.")],
    session: SessionDep,
    admin: Admin,
) -> Response:
    """Erase one response; posting its (source, external_id) again is then refused with 410."""
    await erase_response(session, response_id=response_id, principal=admin)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# `:path`, as a ref may hold a '/' (sent as %2F, which the server decodes before routing).
@router.delete("/v1/customers/{ref:path}/responses")
async def delete_customer_responses(
    ref: Annotated[
        str,
        Path(description="The customer ref as the client knows it.", min_length=1, max_length=256),
    ],
    session: SessionDep,
    admin: Admin,
    settings: SettingsDep,
) -> Deleted:
    """Erase all responses of one customer."""
    count = await erase_customer(
        session, ref=ref, principal=admin, pseudonym_key=settings.pseudonym_key
    )
    return Deleted(deleted=count)
