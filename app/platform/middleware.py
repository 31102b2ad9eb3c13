"""ASGI middleware of our own: 415 for bodies that are not JSON, 413 for bodies too large."""

from __future__ import annotations

import asyncio

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.platform.errors import PayloadTooLarge, UnsupportedMediaType, render
from app.platform.limits import (
    DRAIN_IDLE_SECONDS,
    DRAIN_SECONDS,
    MAX_BATCH_BODY_BYTES,
    MAX_BODY_BYTES,
)

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


def bearer_key(scope: Scope) -> str | None:
    """The key of `Authorization: Bearer …` (the first such header), parsed as FastAPI's
    HTTPBearer parses it; None when there is none."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            credentials = credentials.strip()
            return credentials if scheme.lower() == "bearer" and credentials else None
    return None


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None when the client left first."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the body already read, then waits for the client as usual."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class HttpMiddleware:
    """An ASGI middleware for HTTP requests; lifespan and other scopes pass through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.http(scope, receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


class JsonOnly(HttpMiddleware):
    """A body sent with a content type other than JSON gets 415; no content type is read as JSON.

    The dashboard's forms (under /ui/) are the exception: a browser posts them urlencoded."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] in _BODY_METHODS and not scope["path"].startswith("/ui/"):
            for name, value in scope["headers"]:
                if name == b"content-type":
                    if not _is_json(value.decode("latin-1")):
                        response = render(
                            UnsupportedMediaType(
                                "Send the request body as JSON (Content-Type: application/json)."
                            )
                        )
                        await response(scope, receive, send)
                        return
                    break
        await self.app(scope, receive, send)


def _limit(scope: Scope) -> int:
    return MAX_BATCH_BODY_BYTES if scope["path"] == "/v1/responses/batch" else MAX_BODY_BYTES


def _too_large(limit: int) -> PayloadTooLarge:
    # Connection: close, so that the server drops the rest of the body instead of reading it.
    return PayloadTooLarge(
        f"The request body must be at most {limit:,} bytes.", headers={"Connection": "close"}
    )


async def _drain(receive: Receive) -> bool:
    """Read and drop a request body; whether it was read to its end in time.

    Most clients (httpx, requests, browsers' fetch) send the whole body before they read the
    answer: closing the connection on unread bytes makes the kernel reset it, and the client
    sees a broken connection instead of the 413. So the body is read away, whatever its size,
    for at most DRAIN_SECONDS and with no gap longer than DRAIN_IDLE_SECONDS.
    """
    try:
        async with asyncio.timeout(DRAIN_SECONDS):
            while True:
                message = await asyncio.wait_for(receive(), DRAIN_IDLE_SECONDS)
                if message["type"] == "http.disconnect":
                    return False
                if not message.get("more_body", False):
                    return True
    except TimeoutError:
        return False


class BodyLimit(HttpMiddleware):
    """413 problem+json for a body over its limit: unread past its headers when Content-Length
    says so, else as soon as the bytes read pass it. The body is read away first (for a bounded
    time); a connection whose body was not read to its end is then closed."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = _limit(scope)
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                # A client waiting for "100 Continue" has sent nothing: refuse it unread.
                waiting = any(
                    n == b"expect" and v.lower() == b"100-continue" for n, v in scope["headers"]
                )
                drained = not waiting and await _drain(receive)
                error = _too_large(limit)
                if drained:  # the connection is clean and may be used again
                    error.headers = None
                await render(error)(scope, receive, send)
                return
        seen = 0
        answered = False

        async def counted() -> Message:
            nonlocal seen, answered
            message = await receive()
            if message["type"] == "http.request" and not answered:
                seen += len(message.get("body", b""))
                if seen > limit:
                    # Answer now and tell the app the client left: it stops reading, and
                    # whatever it tries to send afterwards is dropped.
                    answered = True
                    if message.get("more_body", False):
                        await _drain(receive)  # the rest, so that the close is not a reset
                    await render(_too_large(limit))(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def unless_answered(message: Message) -> None:
            if not answered:
                await send(message)

        await self.app(scope, counted, unless_answered)
