"""JSON logs with a request id, and one access line per request.

Every log line is one JSON object on stderr: `ts`, `level`, `logger`, `msg`, the `request_id` of
the request it belongs to, and the extra fields the caller gave. The access line names the
route's template (`/v1/customers/{ref}/responses`), never the path itself, so that no customer
ref, key or free text reaches a log; query strings and bodies are never logged.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.types import Message, Receive, Scope, Send

from app.platform import metrics
from app.platform.middleware import HttpMiddleware

CLIENT_CLOSED = 499
# Set in the scope by a middleware that answers for a route itself (a literal path).
ANSWERED_ROUTE = "cx.route"
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
access_logger = logging.getLogger("cx_survey.access")

# Methods named in metrics and logs as they are; any other is "OTHER" (bounded label values).
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "color_message"}


def install_request_ids() -> None:
    """Stamp every log record with the request id current where it is made (not where it is
    formatted, which may be later or elsewhere)."""
    base = logging.getLogRecordFactory()
    if getattr(base, "stamps_request_id", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = base(*args, **kwargs)
        record.request_id = request_id.get()
        return record

    factory.stamps_request_id = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


class JsonFormatter(logging.Formatter):
    """A record as one JSON line; fields given with `extra=` are kept."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or request_id.get()
        if rid is not None:
            entry["request_id"] = rid
        for key, value in vars(record).items():
            if key not in _STANDARD and key != "request_id" and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def logging_config(level: str) -> dict[str, Any]:
    """The dictConfig for `cx-survey serve` (applied by uvicorn in every worker)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "app.platform.logs.JsonFormatter"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": level.upper()},
        "loggers": {
            "uvicorn": {"level": level.upper()},
            "alembic": {"level": "WARNING"},
            # our own access line replaces uvicorn's, which prints the raw path
            "uvicorn.access": {"handlers": [], "propagate": False},
        },
    }


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not isinstance(template, str):  # answered before routing, e.g. an idempotent replay
        template = scope.get(ANSWERED_ROUTE)
    return template if isinstance(template, str) else "(no route)"


class RequestContext(HttpMiddleware):
    """Outermost middleware: a request id (the client's `X-Request-ID` when well-formed, else a
    new one) in the logs' context and echoed in the response; one access line per request."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"), b"")
        text = given.decode("latin-1")
        rid = text if _CLIENT_ID.fullmatch(text) else uuid.uuid4().hex
        token = request_id.set(rid)
        started = time.perf_counter()
        status: int | None = None  # set when the response starts

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if status is not None:
                raise
            # Answered here rather than by Starlette's outermost error middleware, so that the
            # log line and the response carry the request id like every other answer.
            from app.platform.errors import unexpected

            await (await unexpected(None, exc))(scope, receive, send_with_id)
        except asyncio.CancelledError:
            # The shutdown timeout cut the request short (its transaction rolls back): a 503
            # the client may retry, instead of the server's bare 500.
            if status is None:
                from app.platform.errors import ServiceUnavailable, render

                detail = "The service is shutting down; retry the request."
                await render(ServiceUnavailable(detail))(scope, receive, send_with_id)
            raise
        finally:
            seconds = time.perf_counter() - started
            # No answer at all: the client left before one was due (nginx's 499), not a 500.
            answered = status or CLIENT_CLOSED
            principal = scope.get("state", {}).get("principal")
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            route = _route_template(scope)
            access_logger.info(
                "request",
                extra={
                    "method": method,
                    "route": route,
                    "status": answered,
                    "ms": round(seconds * 1000, 2),
                    "key_id": getattr(principal, "key_id", None),
                },
            )
            metrics.REQUESTS.labels(method, route, str(answered)).inc()
            metrics.REQUEST_SECONDS.labels(method, route).observe(seconds)
            state = scope["app"].state if "app" in scope else None
            if state is not None and hasattr(state, "engine"):
                metrics.observe_pool(state.engine)
            request_id.reset(token)
