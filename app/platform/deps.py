"""Annotated dependencies shared by the routers: the session, the caller, pagination."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import State

from app.keys.cache import verify
from app.keys.scopes import Scope
from app.keys.service import Principal
from app.orgs import tree
from app.platform import clock
from app.platform.config import Settings
from app.platform.db import get_session
from app.platform.errors import Forbidden, Unauthenticated
from app.platform.pagination import Pagination
from app.platform.ratelimit import Limiter

# scope="function": the transaction commits before the response is sent, so an
# acknowledged write is a committed write.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]

_bearer = HTTPBearer(auto_error=False, description="An API key: `cx_<id>_<secret>`.")


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The verified caller; 401 for a missing, malformed, unknown or revoked key.

    Looked up in a transaction of its own (or taken from the worker's key cache), so that a
    route that needs no database, the single POST, opens no session for it."""
    if credentials is None:
        header = request.headers.get("authorization")
        if header:
            raise Unauthenticated("The Authorization header must be 'Bearer <key>'.")
        raise Unauthenticated("An API key is required: 'Authorization: Bearer <key>'.")
    state = request.app.state
    await sync_tree(state)
    principal = await verify(state.keys, state.sessionmaker, credentials.credentials.strip())
    request.state.principal = principal
    await check_rate(state, request.scope.setdefault("state", {}), principal)
    return principal


async def check_rate(state: State, request_state: dict[str, Any], principal: Principal) -> None:
    """429 when the caller's key is over its rate, unless the idempotency layer checked it."""
    if not request_state.get("rate_checked", False):
        limiter: Limiter = state.limiter
        await limiter.check(principal.key_id, principal.limit)


PrincipalDep = Annotated[Principal, Depends(current_principal)]


async def tree_of_today(request: Request) -> None:
    """Once per process and day: make the materialized tree today's (a move dated today takes
    effect without any call), before anything reads a path."""
    await sync_tree(request.app.state)


async def sync_tree(state: State) -> None:
    """tree_of_today for the app's state."""
    settings: Settings = state.settings
    today = clock.today(settings.zone)
    if getattr(state, "tree_synced_for", None) != today:
        state.tree_synced_for = await tree.synchronize(state.sessionmaker, zone=settings.zone)


def require(scope: Scope) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that admits only keys holding `scope` (or admin)."""

    async def check(principal: PrincipalDep) -> Principal:
        if not principal.has(scope):
            raise Forbidden(f"This operation needs the {scope.value!r} scope.")
        return principal

    return check


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]

OrgsWriter = Annotated[Principal, Depends(require(Scope.orgs_write))]
SurveysReader = Annotated[Principal, Depends(require(Scope.surveys_read))]
SurveysWriter = Annotated[Principal, Depends(require(Scope.surveys_write))]
ResponsesReader = Annotated[Principal, Depends(require(Scope.responses_read))]
ResponsesWriter = Annotated[Principal, Depends(require(Scope.responses_write))]
IndicesReader = Annotated[Principal, Depends(require(Scope.indices_read))]
IndicesWriter = Annotated[Principal, Depends(require(Scope.indices_write))]
EvaluationsReader = Annotated[Principal, Depends(require(Scope.evaluations_read))]
EvaluationsWriter = Annotated[Principal, Depends(require(Scope.evaluations_write))]
CasesReader = Annotated[Principal, Depends(require(Scope.cases_read))]
CasesWriter = Annotated[Principal, Depends(require(Scope.cases_write))]
InsightsReader = Annotated[Principal, Depends(require(Scope.insights_read))]
InvitationsReader = Annotated[Principal, Depends(require(Scope.invitations_read))]
InvitationsWriter = Annotated[Principal, Depends(require(Scope.invitations_write))]
Admin = Annotated[Principal, Depends(require(Scope.admin))]

__all__ = [
    "Admin",
    "CasesReader",
    "CasesWriter",
    "EvaluationsReader",
    "EvaluationsWriter",
    "IndicesReader",
    "IndicesWriter",
    "InsightsReader",
    "InvitationsReader",
    "InvitationsWriter",
    "OrgsWriter",
    "Pagination",
    "PrincipalDep",
    "ResponsesReader",
    "ResponsesWriter",
    "SessionDep",
    "SettingsDep",
    "SurveysReader",
    "SurveysWriter",
]
