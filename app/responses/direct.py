"""The single POST's direct path: a `POST /v1/responses` that its route would accept is
answered here, without FastAPI's routing, dependency solving and response rendering, which took
about a fifth of a worker's CPU per post.

Only what the route would accept is answered here: a body that validates as `ResponseIn`, a
Bearer key the key cache (or the database) verifies, a key holding `responses:write`. Anything
else (no key, a refused key, a missing scope, a body that does not parse or validate) is passed
on to the app with its body, to be answered there exactly as before. From the rate check on,
this path does what the route does: the same checks in the same order, the same coalescer, the
same exception handlers, the same JSON.
"""

from __future__ import annotations

import orjson
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from app.keys.cache import verify
from app.keys.scopes import Scope as KeyScope
from app.keys.service import Principal
from app.platform.deps import check_rate, sync_tree
from app.platform.logs import ANSWERED_ROUTE
from app.platform.middleware import HttpMiddleware, bearer_key, read_body, replaying
from app.responses.router import post_single
from app.responses.schemas import ResponseIn

PATH = "/v1/responses"


class DirectPost(HttpMiddleware):
    """Innermost middleware: answers the single POSTs its route would accept."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        raw = await read_body(receive)
        if raw is None:  # the client left, or the body limit answered and cut the body
            return
        admitted = await self._admit(scope, raw)
        if admitted is None:
            await self.app(scope, replaying(raw, receive), send)
            return
        body, principal = admitted
        scope[ANSWERED_ROUTE] = PATH  # the route the access log and the metrics name
        state = scope["app"].state
        try:
            await check_rate(state, scope.setdefault("state", {}), principal)
            stored, created = await post_single(state.coalescer, body, principal)
        except Exception as error:
            response = await _handled(scope, error)
        else:
            response = Response(
                stored.model_dump_json().encode(),
                status_code=201 if created else 200,
                headers={"Location": f"{PATH}/{stored.id}"},
                media_type="application/json",
            )
        await response(scope, receive, send)

    async def _admit(self, scope: Scope, raw: bytes) -> tuple[ResponseIn, Principal] | None:
        """The body and the caller when the route would accept both, else None."""
        credentials = bearer_key(scope)
        if credentials is None:
            return None
        try:
            body = ResponseIn.model_validate(orjson.loads(raw))
        except (orjson.JSONDecodeError, ValidationError):
            return None
        state = scope["app"].state
        try:
            await sync_tree(state)
            principal = await verify(state.keys, state.sessionmaker, credentials)
        except Exception:  # refused, or the database is away: the route says which
            return None
        if not principal.has(KeyScope.responses_write):
            return None
        scope.setdefault("state", {})["principal"] = principal
        return body, principal


async def _handled(scope: Scope, error: Exception) -> Response:
    """The answer the app's exception handlers give `error` (as ExceptionMiddleware finds them;
    a bare Exception goes up, to be answered as the route's would be)."""
    handlers = scope["app"].exception_handlers
    for kind in type(error).__mro__:
        if kind is not Exception and kind in handlers:
            response: Response = await handlers[kind](Request(scope), error)
            return response
    raise error
