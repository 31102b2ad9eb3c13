"""ASGI middleware of our own: refuse request bodies that are not JSON with a clear 415."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from app.errors import UnsupportedMediaType, render

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


class JsonOnly:
    """A body sent with a content type other than JSON gets 415; no content type is read as JSON."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in _BODY_METHODS:
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
