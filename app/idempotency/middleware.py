"""The Idempotency-Key layer: replay a POST's stored answer instead of running it again.

It runs inside the body limit and the JSON check, around the routes. For a POST carrying the
header it authenticates the key (a request that fails to is passed on, to be refused as usual),
reads the body, claims (API key, Idempotency-Key) with the request's fingerprint, runs the
request and stores its answer. A later request with the same key gets that answer again, with
`Idempotent-Replayed: true`.
"""

from __future__ import annotations

import logging

from starlette.datastructures import State
from starlette.types import Message, Receive, Scope, Send

from app.idempotency import service
from app.idempotency.service import Claim, InvalidIdempotencyKey, Stored
from app.keys.cache import verify
from app.platform.errors import AppError, Unauthenticated, render, unexpected
from app.platform.logs import ANSWERED_ROUTE
from app.platform.metrics import IDEMPOTENT_REPLAYS
from app.platform.middleware import HttpMiddleware, bearer_key, read_body, replaying

logger = logging.getLogger("cx_survey.idempotency")

# POST endpoints the header applies to. /v1/keys is refused: its answer holds a new key's
# secret, which is never stored, so it could not be replayed.
IDEMPOTENT_PATHS = frozenset({"/v1/orgs", "/v1/surveys", "/v1/responses", "/v1/responses/batch"})
UNSUPPORTED_PATHS = frozenset({"/v1/keys", "/v1/invitations"})
_SEEN = IDEMPOTENT_PATHS | UNSUPPORTED_PATHS


def _idempotency_key(values: list[str], path: str) -> str:
    key = service.parse_key(values)
    if path in UNSUPPORTED_PATHS:
        raise InvalidIdempotencyKey(
            f"POST {path} does not take an Idempotency-Key: its answer holds a secret "
            "that is never stored."
            + (
                " It is idempotent on (source, external_id): simply retry."
                if path == "/v1/invitations"
                else " Retry only after listing what exists."
            )
        )
    return key


async def _answer(scope: Scope, receive: Receive, send: Send, error: Exception) -> None:
    response = render(error) if isinstance(error, AppError) else await unexpected(None, error)
    await response(scope, receive, send)


class Idempotency(HttpMiddleware):
    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        values = [v.decode("latin-1") for k, v in scope["headers"] if k == b"idempotency-key"]
        path = scope["path"]
        if scope["method"] != "POST" or not values or path not in _SEEN:
            await self.app(scope, receive, send)
            return
        scope[ANSWERED_ROUTE] = path  # a literal route path: what logs and metrics name
        raw_key = bearer_key(scope)
        if raw_key is None:  # refused as usual, with the usual 401
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        if body is None:
            return
        state = scope["app"].state
        try:
            principal = await verify(state.keys, state.sessionmaker, raw_key)
            key = _idempotency_key(values, path)  # after authentication: 401 comes first
            await state.limiter.check(principal.key_id, principal.limit)
            async with state.sessionmaker() as session, session.begin():
                request = Claim(
                    principal.key_id,
                    key,
                    service.fingerprint("POST", path, scope.get("query_string", b""), body),
                )
                outcome = await service.claim(
                    session, claim=request, ttl_seconds=state.settings.idempotency_ttl_seconds
                )
        except Unauthenticated:  # the app refuses the key as usual
            await self.app(scope, replaying(body, receive), send)
            return
        except Exception as error:
            await _answer(scope, receive, send, error)
            return
        scope.setdefault("state", {})["rate_checked"] = True
        if isinstance(outcome, Stored):
            IDEMPOTENT_REPLAYS.inc()
            await _replay(outcome, send)
            return
        await self._run(scope, replaying(body, receive), send, state, outcome)

    async def _run(
        self, scope: Scope, receive: Receive, send: Send, state: State, claim: Claim
    ) -> None:
        status: int | None = None
        headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers.extend(
                    (name.lower(), value)
                    for name, value in message.get("headers", [])
                    if name.lower() in service.KEPT_HEADERS
                )
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        answer: Stored | None = None
        try:
            await self.app(scope, receive, capture)
            if status is not None and service.storable(status):
                answer = Stored(status, headers, b"".join(chunks))
        finally:
            await _settle(state, claim, answer, scope["path"])


async def _settle(state: State, claim: Claim, answer: Stored | None, path: str) -> None:
    """Store the answer, or release the claim; if the database is gone the claim's lease runs
    out instead (a retry after it runs the request again, which the API tolerates)."""
    try:
        async with state.sessionmaker() as session, session.begin():
            if answer is None:
                await service.release(session, claim=claim)
            else:
                await service.store(session, claim=claim, answer=answer, path=path)
    except Exception as error:
        logger.warning("idempotency record not settled: %s", type(error).__name__)


async def _replay(stored: Stored, send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": stored.status,
            "headers": [
                *stored.headers,
                (b"content-length", str(len(stored.body)).encode()),
                (b"idempotent-replayed", b"true"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": stored.body})
