"""Idempotency records: claim a key before the request runs, store its answer after, replay it.

One record per (API key, Idempotency-Key). A claim is a row without a status; the answer fills
it in. A claim whose worker died is taken over after its lease; a record past its expiry is
treated as absent and deleted by the sweeper.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.platform.errors import AppError, Conflict, ValidationFailed
from app.responses.service import parse_id

# Longer than the statement timeout and then some: a claim this old has no request behind it.
LEASE_SECONDS = 60
# The draft makes the key an sf-string: printable ASCII. We take it quoted (1 to 255 characters
# once unescaped) or bare (no quote, no space at either end, as HTTP strips those anyway).
_QUOTED = re.compile(r"[\x20-\x7e]{1,255}")
BARE_PATTERN = "[!#-~](?:[ !#-~]{0,253}[!#-~])?"
# What the OpenAPI declares: the bare form exactly; the quoted one by its raw length (1 to 255
# characters, each possibly escaped), a little wider than what unescapes to a valid key.
HEADER_PATTERN = f'^(?:{BARE_PATTERN}|"[ -~]{{1,510}}")$'
_BARE = re.compile(BARE_PATTERN)
# What a replay repeats of the stored answer's headers (not its date, id or length).
KEPT_HEADERS = frozenset({b"content-type", b"location", b"retry-after", b"www-authenticate"})
# Answers that say nothing lasting about the request: not stored, the claim is released.
_TRANSIENT = frozenset({401, 408, 429})


class InvalidIdempotencyKey(AppError):
    status = 400
    slug = "invalid-idempotency-key"
    title = "The Idempotency-Key header is not valid"


class IdempotencyKeyInFlight(Conflict):
    slug = "idempotency-key-in-flight"
    title = "A request with this Idempotency-Key is still being processed"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, headers={"Retry-After": "1"})


class IdempotencyKeyReused(ValidationFailed):
    slug = "idempotency-key-reused"
    title = "The Idempotency-Key was used for another request"


def parse_key(values: list[str]) -> str:
    """The key of the Idempotency-Key header (one header, 1 to 255 printable ASCII characters)."""
    if len(values) != 1:
        raise InvalidIdempotencyKey("Send one Idempotency-Key header, not several.")
    # Not stripped: the HTTP server has removed the spaces and tabs around it already, and what
    # remains is the key exactly as the OpenAPI's pattern describes it.
    value = values[0]
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        valid = _QUOTED.fullmatch(value) is not None
    else:
        valid = _BARE.fullmatch(value) is not None
    if not valid:
        raise InvalidIdempotencyKey(
            "The Idempotency-Key must be 1 to 255 printable ASCII characters, quoted or bare."
        )
    return value


def fingerprint(method: str, path: str, query: bytes, body: bytes) -> bytes:
    """What makes two requests the same: method, path, query and the body as a JSON value."""
    try:
        canonical = orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS)
    except orjson.JSONDecodeError:
        canonical = body
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), query, canonical):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()


def storable(status: int) -> bool:
    """Whether an answer is stored for replay (a 5xx or a transient refusal is not)."""
    return status < 500 and status not in _TRANSIENT


@dataclass(frozen=True)
class Stored:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


_CLAIM = text(
    """
INSERT INTO idempotency_keys AS k
    (key_id, idempotency_key, fingerprint, token, locked_until, expires_at)
VALUES (:key_id, :key, :fingerprint, gen_random_uuid(),
        now() + make_interval(secs => :lease), now() + make_interval(secs => :ttl))
ON CONFLICT (key_id, idempotency_key) DO UPDATE
SET fingerprint = EXCLUDED.fingerprint, token = EXCLUDED.token, status = NULL, headers = NULL,
    body = NULL, response_ids = NULL, created_at = now(), locked_until = EXCLUDED.locked_until,
    expires_at = EXCLUDED.expires_at
WHERE k.expires_at <= now()
   OR (k.status IS NULL AND k.locked_until <= now() AND k.fingerprint = EXCLUDED.fingerprint)
RETURNING token
"""
)
_FETCH = text(
    """
SELECT fingerprint, status, headers::text AS headers, body FROM idempotency_keys
WHERE key_id = :key_id AND idempotency_key = :key
"""
)
_STORE = text(
    """
UPDATE idempotency_keys
SET status = :status, headers = CAST(:headers AS jsonb), body = :body,
    response_ids = CAST(:response_ids AS bigint[])
WHERE key_id = :key_id AND idempotency_key = :key AND token = :token AND status IS NULL
"""
)
_RELEASE = text(
    """
DELETE FROM idempotency_keys
WHERE key_id = :key_id AND idempotency_key = :key AND token = :token AND status IS NULL
"""
)
_LOCK_SHOWN = text(
    "SELECT count(*) FROM (SELECT id FROM responses WHERE id = ANY(CAST(:ids AS bigint[]))"
    " FOR KEY SHARE) AS shown"
)
_FORGET = "DELETE FROM idempotency_keys WHERE response_ids && $1::bigint[]"
_SWEEP = text(
    """
DELETE FROM idempotency_keys WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM idempotency_keys
    WHERE expires_at <= coalesce(CAST(:now AS timestamptz), now()) LIMIT :batch))
"""
)


@dataclass(frozen=True)
class Claim:
    """A request's hold on (key_id, key) with its fingerprint; `token` names the hold once
    taken, so that a request whose lease ran out cannot settle the hold of the one that took
    it over."""

    key_id: str
    key: str
    fingerprint: bytes
    token: UUID | None = None

    def params(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "key": self.key, "fingerprint": self.fingerprint}

    def held(self) -> dict[str, Any]:
        return {"key_id": self.key_id, "key": self.key, "token": self.token}


async def claim(session: AsyncSession, *, claim: Claim, ttl_seconds: int) -> Stored | Claim:
    """Take the key for this request (the claim, with its token), or the stored answer to
    replay; 409 while another request holds it, 422 when it was used for a different request."""
    params = {**claim.params(), "lease": LEASE_SECONDS, "ttl": ttl_seconds}
    if (token := (await session.execute(_CLAIM, params)).scalar()) is not None:
        return replace(claim, token=token)
    row = (await session.execute(_FETCH, claim.params())).first()
    if row is None:  # swept between the two statements: the key is free again
        if (token := (await session.execute(_CLAIM, params)).scalar()) is not None:
            return replace(claim, token=token)
        raise IdempotencyKeyInFlight("The Idempotency-Key is in use; retry shortly.")
    if row.fingerprint != claim.fingerprint:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was used with another request (method, path or body); "
            "use a new key for a new request."
        )
    if row.status is None:
        raise IdempotencyKeyInFlight(
            "A request with this Idempotency-Key is still in flight; retry after it ends."
        )
    headers = [
        (name.encode("latin-1"), value.encode("latin-1"))
        for name, value in orjson.loads(row.headers)
    ]
    return Stored(row.status, headers, row.body)


def shown_responses(path: str, body: bytes) -> list[int] | None:
    """The ids of the stored responses an answer of `path` shows (erasure looks for them)."""
    if path not in ("/v1/responses", "/v1/responses/batch"):
        return None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    items = data.get("results", []) if path.endswith("/batch") else [data]
    ids = [parse_id(item["id"]) for item in items if isinstance(item.get("id"), str)]
    return [i for i in ids if i is not None] or None


async def store(session: AsyncSession, *, claim: Claim, answer: Stored, path: str) -> None:
    """Record the answer of a claimed request; release the claim instead if a response the
    answer shows was erased meanwhile (its text must not survive in a replay)."""
    shown = shown_responses(path, answer.body)
    if shown:
        # Locked against erasure: an erasure either ran before (the rows are gone: nothing is
        # stored) or waits for this transaction (and then deletes this record with them).
        present = (await session.execute(_LOCK_SHOWN, {"ids": shown})).scalar_one()
        if present < len(set(shown)):
            await release(session, claim=claim)
            return
    headers = [[n.decode("latin-1"), v.decode("latin-1")] for n, v in answer.headers]
    await session.execute(
        _STORE,
        {
            **claim.held(),
            "status": answer.status,
            "headers": orjson.dumps(headers).decode(),
            "body": answer.body,
            "response_ids": shown,
        },
    )


async def release(session: AsyncSession, *, claim: Claim) -> None:
    """Give the key up: the request produced nothing worth replaying."""
    await session.execute(_RELEASE, claim.held())


async def forget_responses(conn: Any, *, response_ids: list[int]) -> None:
    """Delete the stored answers that show any of these erased responses (`conn`: asyncpg's)."""
    if response_ids:
        await conn.execute(_FORGET, response_ids)


async def sweep(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    now: datetime | None = None,
    batch: int = 1000,
) -> int:
    """Delete records expired by `now` (default: the database's clock), a batch per
    transaction; how many went."""
    total = 0
    while True:
        async with sessionmaker() as session, session.begin():
            result = await session.execute(_SWEEP, {"batch": batch, "now": now})
            deleted = int(result.rowcount)  # type: ignore[attr-defined]
        total += deleted
        if deleted < batch:
            return total
