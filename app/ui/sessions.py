"""Dashboard sessions: a random token in an HttpOnly cookie, its hash and the key id in the
database; the key itself is kept nowhere."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.keys.service import Principal, principal_by_id
from app.platform import clock
from app.ui.models import UiSession

COOKIE = "cx_ui"
CSRF_COOKIE = "cx_ui_csrf"  # the double-submit token of the sign-in form (before a session)
LIFETIME = timedelta(hours=12)


@dataclass(frozen=True)
class Signed:
    """A signed-in browser: who it acts as and the CSRF token of its forms."""

    principal: Principal
    csrf: str


def new_token() -> str:
    return secrets.token_urlsafe(32)


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def same_token(a: str | None, b: str | None) -> bool:
    """Whether two CSRF tokens are present and equal (in constant time)."""
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))


async def open_session(session: AsyncSession, *, principal: Principal) -> str:
    """Store a session for a verified key; the cookie's token (only its hash is kept)."""
    token = new_token()
    now = clock.now()
    session.add(
        UiSession(
            token_hash=_hash(token),
            key_id=principal.key_id,
            csrf=new_token(),
            created_at=now,
            expires_at=now + LIFETIME,
        )
    )
    # Expired sessions go as new ones come: the table holds only live ones and a few more.
    await session.execute(delete(UiSession).where(UiSession.expires_at <= now))
    await session.flush()
    return token


async def find(session: AsyncSession, *, token: str | None) -> Signed | None:
    """The live session of a cookie's token, with its key as it is now (None: signed out,
    expired, or the key revoked or deleted)."""
    if not token or len(token) > 128:
        return None
    row = (
        await session.execute(
            select(UiSession.key_id, UiSession.csrf).where(
                UiSession.token_hash == _hash(token), UiSession.expires_at > clock.now()
            )
        )
    ).first()
    if row is None:
        return None
    principal = await principal_by_id(session, key_id=row.key_id)
    if principal is None:
        return None
    return Signed(principal=principal, csrf=row.csrf)


async def close_session(session: AsyncSession, *, token: str | None) -> None:
    """Forget a session (sign-out)."""
    if token:
        await session.execute(delete(UiSession).where(UiSession.token_hash == _hash(token)))
