"""Issuing, listing, revoking and verifying API keys (`cx_<id>_<secret>`, secret hashed)."""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit
from app.keys.models import ApiKey
from app.keys.scopes import Scope
from app.orgs.models import Org
from app.platform.errors import NotFound, Unauthenticated, ValidationFailed
from app.platform.ratelimit import Limit

KEY_PATTERN = re.compile(r"^cx_([a-z0-9]{1,32})_([A-Za-z0-9_-]{16,128})$")
_DUMMY_HASH = hashlib.sha256(b"cx-survey: no such key").digest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: a verified key with its scopes and optional org/source binding."""

    key_id: str
    name: str
    scopes: frozenset[Scope]
    org_id: int | None = None
    org_code: str | None = None
    source: str | None = None
    rate: float | None = None  # its own rate limit (None: the service's)
    burst: int | None = None

    @property
    def limit(self) -> Limit | None:
        """Its own rate limit, if it has one."""
        if self.rate is None and self.burst is None:
            return None
        return Limit(self.rate, self.burst)

    def has(self, scope: Scope) -> bool:
        return Scope.admin in self.scopes or scope in self.scopes

    def sees(self, org_path: list[int]) -> bool:
        """Whether an org with this ancestor path lies inside the key's subtree."""
        return self.org_id is None or self.org_id in org_path


def command_line(source: str | None = None) -> Principal:
    """Who the command line acts as (imports): admin, audited as `cli`."""
    return Principal(key_id="cli", name="import", scopes=frozenset({Scope.admin}), source=source)


@dataclass(frozen=True)
class IssuedKey:
    key: ApiKey
    org_code: str | None
    secret_key: str


def hash_secret(secret: str) -> bytes:
    # The secret carries 256 random bits, so a fast hash is as strong as a slow one here.
    return hashlib.sha256(secret.encode()).digest()


# Built once: constructing a select costs more than executing it (the compiled form is cached).
_KEY_LOOKUP = (
    select(
        ApiKey.secret_hash,
        ApiKey.revoked_at,
        ApiKey.name,
        ApiKey.scopes,
        ApiKey.org_id,
        ApiKey.source,
        ApiKey.rate,
        ApiKey.burst,
        Org.code,
    )
    .outerjoin(Org, Org.id == ApiKey.org_id)
    .where(ApiKey.id == bindparam("key_id"))
)


async def authenticate(session: AsyncSession, *, raw_key: str) -> Principal:
    """Verify a presented key in constant time; unknown, malformed or revoked → 401."""
    match = KEY_PATTERN.fullmatch(raw_key)
    if match is None:
        raise Unauthenticated("The API key is malformed; expected cx_<id>_<secret>.")
    key_id, secret = match.groups()
    row = (await session.execute(_KEY_LOOKUP, {"key_id": key_id})).first()
    expected = row.secret_hash if row else _DUMMY_HASH
    valid = hmac.compare_digest(hash_secret(secret), expected)
    if row is None or not valid:
        raise Unauthenticated("The API key is not known.")
    if row.revoked_at is not None:
        raise Unauthenticated("The API key has been revoked.")
    return _principal(key_id, row)


async def principal_by_id(session: AsyncSession, *, key_id: str) -> Principal | None:
    """The key `key_id` as a caller, for a session that proved the secret earlier; None when
    the key is gone or revoked."""
    row = (await session.execute(_KEY_LOOKUP, {"key_id": key_id})).first()
    if row is None or row.revoked_at is not None:
        return None
    return _principal(key_id, row)


def _principal(key_id: str, row: Any) -> Principal:
    return Principal(
        key_id=key_id,
        name=row.name,
        scopes=frozenset(Scope(s) for s in row.scopes),
        org_id=row.org_id,
        org_code=row.code,
        source=row.source,
        rate=row.rate,
        burst=row.burst,
    )


def key_burst(rate: float | None, burst: int | None) -> int | None:
    """The bucket size stored for a key: as given, or twice its own rate when only that is."""
    if burst is None and rate is not None:
        return max(1, math.ceil(2 * rate))
    return burst


async def create_key(
    session: AsyncSession,
    *,
    name: str,
    scopes: list[Scope],
    org_code: str | None = None,
    source: str | None = None,
    creator: Principal | None = None,
    rate: float | None = None,
    burst: int | None = None,
) -> IssuedKey:
    """Issue a key; the whole secret is returned once and only its hash is kept."""
    if not scopes:
        raise ValidationFailed.at(("body", "scopes"), "at least one scope is required")
    org_id = None
    if creator is not None and creator.org_id is not None and org_code is None:
        org_code = creator.org_code
    if org_code is not None:
        org = (await session.execute(select(Org).where(Org.code == org_code))).scalar_one_or_none()
        if org is None or (creator is not None and not creator.sees(org.path)):
            raise ValidationFailed.at(("body", "org"), f"unknown org {org_code!r}")
        org_id = org.id
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    key = ApiKey(
        id=key_id,
        name=name,
        secret_hash=hash_secret(secret),
        scopes=sorted({s.value for s in scopes}),
        org_id=org_id,
        source=source,
        rate=rate,
        burst=key_burst(rate, burst),
    )
    session.add(key)
    await session.flush()
    await session.refresh(key)
    details: dict[str, Any] = {
        "name": name,
        "scopes": key.scopes,
        "org": org_code,
        "source": source,
    }
    if key.rate is not None or key.burst is not None:  # a limit of its own
        details.update(rate=key.rate, burst=key.burst)
    await audit.record(
        session,
        actor=audit.actor_of(creator),
        action=audit.Action.key_create,
        target=key_id,
        org_id=org_id,
        details=details,
    )
    return IssuedKey(key=key, org_code=org_code, secret_key=f"cx_{key_id}_{secret}")


def _visible_keys(viewer: Principal | None) -> Select[ApiKey, str]:
    query = select(ApiKey, Org.code).outerjoin(Org, Org.id == ApiKey.org_id)
    if viewer is not None and viewer.org_id is not None:
        query = query.where(Org.path.contains([viewer.org_id]))
    return query


async def list_keys(
    session: AsyncSession, *, viewer: Principal | None = None
) -> list[tuple[ApiKey, str | None]]:
    """Every key (or every key inside the viewer's subtree), oldest first."""
    query = _visible_keys(viewer).order_by(ApiKey.created_at, ApiKey.id)
    return [(key, code) for key, code in (await session.execute(query)).all()]


async def revoke_key(
    session: AsyncSession, *, key_id: str, viewer: Principal | None = None
) -> tuple[ApiKey, str | None]:
    """Revoke a key (idempotent: a revoked key keeps its first revocation time)."""
    row = (await session.execute(_visible_keys(viewer).where(ApiKey.id == key_id))).first()
    if row is None:
        raise NotFound(f"No API key with id {key_id!r}.")
    key, code = row
    if key.revoked_at is None:
        key.revoked_at = datetime.now(UTC)
        await session.flush()
        await audit.record(
            session,
            actor=audit.actor_of(viewer),
            action=audit.Action.key_revoke,
            target=key.id,
            org_id=key.org_id,
            details={"name": key.name},
        )
    return key, code
