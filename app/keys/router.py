"""Admin routes for API keys."""

from __future__ import annotations

from fastapi import APIRouter, status

from app.keys import service
from app.keys.models import ApiKey
from app.keys.schemas import IssuedKeyOut, KeyCreate, KeyList, KeyOut
from app.keys.scopes import Scope
from app.platform.deps import Admin, SessionDep

router = APIRouter(prefix="/v1/keys", tags=["keys"])


def render(key: ApiKey, org_code: str | None) -> KeyOut:
    return KeyOut(
        id=key.id,
        name=key.name,
        scopes=sorted(Scope(s) for s in key.scopes),
        org=org_code,
        source=key.source,
        rate=key.rate,
        burst=key.burst,
        created_at=key.created_at,
        revoked_at=key.revoked_at,
    )


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_key(body: KeyCreate, session: SessionDep, admin: Admin) -> IssuedKeyOut:
    """Issue a key; the response carries the whole key once."""
    issued = await service.create_key(
        session,
        name=body.name,
        scopes=body.scopes,
        org_code=body.org,
        source=body.source,
        creator=admin,
        rate=body.rate,
        burst=body.burst,
    )
    return IssuedKeyOut(**render(issued.key, issued.org_code).model_dump(), key=issued.secret_key)


@router.get("")
async def list_keys(session: SessionDep, admin: Admin) -> KeyList:
    """Every key (secrets are never shown)."""
    return KeyList(items=[render(k, c) for k, c in await service.list_keys(session, viewer=admin)])


@router.delete("/{key_id}")
async def revoke_key(key_id: str, session: SessionDep, admin: Admin) -> KeyOut:
    """Revoke a key; it is refused from then on."""
    key, code = await service.revoke_key(session, key_id=key_id, viewer=admin)
    return render(key, code)
