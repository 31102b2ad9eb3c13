"""Error kinds of the API and the one handler that renders them as RFC 9457 problem+json."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from http import HTTPStatus
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger("cx_survey.errors")

PROBLEM_BASE = "https://cx-survey.dev/problems/"
PROBLEM_JSON = "application/problem+json"

Loc = Sequence[str | int]


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_JSON


class AppError(Exception):
    """An error the API reports to its client; subclasses fix status, type and title."""

    status: ClassVar[int] = 400
    slug: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = errors
        self.headers = headers

    @classmethod
    def type_uri(cls) -> str:
        return PROBLEM_BASE + cls.slug


class MalformedRequest(AppError):
    status = 400
    slug = "malformed-request"
    title = "The request body is not valid JSON"


class Unauthenticated(AppError):
    status = 401
    slug = "unauthenticated"
    title = "Missing or invalid API key"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="cx-survey"'})


class Forbidden(AppError):
    status = 403
    slug = "forbidden"
    title = "The API key may not do this"


class NotFound(AppError):
    status = 404
    slug = "not-found"
    title = "Not found"


class MethodNotAllowed(AppError):
    status = 405
    slug = "method-not-allowed"
    title = "Method not allowed"


class Conflict(AppError):
    status = 409
    slug = "conflict"
    title = "Conflict with the current state"


class Gone(AppError):
    status = 410
    slug = "gone"
    title = "Gone"


class PayloadTooLarge(AppError):
    status = 413
    slug = "payload-too-large"
    title = "Request body too large"


class UnsupportedMediaType(AppError):
    status = 415
    slug = "unsupported-media-type"
    title = "Unsupported media type"


class ValidationFailed(AppError):
    status = 422
    slug = "validation-error"
    title = "The request is not valid"

    @classmethod
    def at(cls, loc: Loc, msg: str) -> ValidationFailed:
        """One validation error at `loc`, e.g. ("body", "answers", "overall")."""
        return cls(msg, errors=[{"loc": list(loc), "msg": msg}])


class TooManyRequests(AppError):
    status = 429
    slug = "rate-limited"
    title = "Too many requests"

    def __init__(self, detail: str | None = None, *, retry_after: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


class ServiceUnavailable(AppError):
    status = 503
    slug = "service-unavailable"
    title = "The service is unavailable for a moment"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail, headers={"Retry-After": "1"})


def problem(
    error_type: str,
    title: str,
    status: int,
    detail: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> ProblemResponse:
    """Render one problem+json response."""
    body: dict[str, Any] = {"type": error_type, "title": title, "status": status, "detail": detail}
    if errors is not None:
        body["errors"] = errors
    return ProblemResponse(body, status_code=status, headers=headers)


def render(error: AppError) -> ProblemResponse:
    return problem(
        error.type_uri(),
        error.title,
        error.status,
        error.detail,
        errors=error.errors,
        headers=error.headers,
    )


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    errors = []
    for err in exc.errors():
        msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        errors.append({"loc": [p for p in err.get("loc", ()) if p != "function-after"], "msg": msg})
    return errors


async def _app_error(_: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, AppError)
    return render(exc)


async def _request_validation(_: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, RequestValidationError)
    if any(err.get("type") == "json_invalid" for err in exc.errors()):
        return render(MalformedRequest("The request body could not be parsed as JSON."))
    errors = _validation_errors(exc)
    detail = (
        "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[:5])
        or "invalid request"
    )
    return render(ValidationFailed(detail, errors=errors))


_HTTP_KINDS: dict[int, type[AppError]] = {
    400: AppError,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: ValidationFailed,
    429: TooManyRequests,
}


async def _http_exception(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, StarletteHTTPException)
    kind = _HTTP_KINDS.get(exc.status_code)
    if kind is None:
        phrase = HTTPStatus(exc.status_code).phrase
        return problem(
            PROBLEM_BASE + phrase.lower().replace(" ", "-"),
            phrase,
            exc.status_code,
            str(exc.detail),
            headers=exc.headers,
        )
    detail = str(exc.detail) if exc.detail else kind.title
    headers = exc.headers
    if exc.status_code == 404 and detail == "Not Found":
        detail = "No such resource."
    elif exc.status_code == 405 and detail == "Method Not Allowed":
        allowed = _allowed_methods(request)
        if allowed:
            headers = {**(headers or {}), "Allow": ", ".join(allowed)}
            detail = f"{request.method} is not allowed here; allowed: {', '.join(allowed)}."
    return problem(kind.type_uri(), kind.title, exc.status_code, detail, headers=headers)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> list[str]:
    """The methods the API documents for the request's path (literal paths before templates).

    Starlette's own `Allow` names only the first route whose path matched, so `/v1/orgs`
    (GET and POST, two routes) would answer `Allow: POST` to a DELETE; and a template such as
    /v1/responses/{response_id} must not add its GET to the literal /v1/responses/batch.
    """
    paths: dict[str, dict[str, Any]] = request.app.openapi().get("paths", {})
    path = request.url.path
    operations = paths.get(path)
    if operations is None:
        for template, candidate in paths.items():
            if re.fullmatch(re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(template)), path):
                operations = candidate
                break
    methods = {method.upper() for method in operations or {}}
    return [method for method in _METHODS if method in methods]


async def _integrity_error(_: Request, exc: Exception) -> ProblemResponse:
    # A unique key raced by a concurrent writer: the resource exists now.
    logger.info("integrity error turned into 409: %s", type(exc).__name__)
    return render(Conflict("The resource conflicts with one that exists already."))


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and what lies behind it: the driver error of a DBAPIError, causes, contexts."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__


def _data_error(exc: BaseException) -> BaseException | None:
    """The PostgreSQL data exception (SQLSTATE class 22) behind `exc`, if any: a value that
    passed validation but that the database refuses to store (a backstop; the schemas refuse
    what they know of, such as NUL characters)."""
    return next(
        (e for e in _causes(exc) if str(getattr(e, "sqlstate", "") or "").startswith("22")),
        None,
    )


def _refused_value(error: BaseException) -> ProblemResponse:
    logger.info("value refused by the database: %s", type(error).__name__)
    return render(ValidationFailed.at(("body",), f"a value cannot be stored: {error}"))


async def _database_error(_: Request, exc: Exception) -> ProblemResponse:
    if (refused := _data_error(exc)) is not None:
        return _refused_value(refused)
    if (
        isinstance(exc, DBAPIError)
        and not exc.connection_invalidated
        and not _is_connection_error(exc)
    ):
        return await unexpected(_, exc)
    logger.warning("database unavailable: %s", type(exc).__name__)
    return render(ServiceUnavailable("The database is unavailable; retry shortly."))


_CONNECTION_ERRORS = {
    "ConnectionDoesNotExistError",
    "CannotConnectNowError",
    "ConnectionFailureError",
    "InterfaceError",
    "AdminShutdownError",
    "TooManyConnectionsError",
}


# Refusals that say "not now" rather than "not this": the statement ran into its timeout or a
# lock timeout, lost a deadlock or a serialization race, or the server is shutting down or
# full. A retry may well succeed, so they are 503 with Retry-After, not 500.
_TRANSIENT_SQLSTATES = frozenset(
    {"57014", "55P03", "40001", "40P01", "53300", "57P01", "57P02", "57P03"}
)


_STATEMENT_SQLSTATES = frozenset({"57014", "55P03", "40001", "40P01"})  # this statement's luck


def database_away(exc: BaseException) -> bool:
    """Whether `exc` says the database cannot be reached at all (a lost or refused connection,
    an exhausted pool, a server shutting down or full), not that one statement was unlucky (a
    timeout, a lock, a deadlock, a serialization race)."""
    return any(
        isinstance(e, OSError | ConnectionError | PoolTimeoutError)
        or type(e).__name__ in _CONNECTION_ERRORS
        or str(getattr(e, "sqlstate", "") or "") in _TRANSIENT_SQLSTATES - _STATEMENT_SQLSTATES
        for e in _causes(exc)
    )


def _is_connection_error(exc: BaseException) -> bool:
    """Whether `exc` means the database is (for now) unavailable: a lost or refused connection,
    an exhausted pool, or a transient refusal."""
    return any(
        isinstance(e, OSError | ConnectionError | PoolTimeoutError)
        or type(e).__name__ in _CONNECTION_ERRORS
        or str(getattr(e, "sqlstate", "") or "") in _TRANSIENT_SQLSTATES
        for e in _causes(exc)
    )


async def unexpected(_: Request | None, exc: Exception) -> ProblemResponse:
    """The answer to an exception nothing else handled: 422/503 where it is one, else 500."""
    if (refused := _data_error(exc)) is not None:
        return _refused_value(refused)
    if _is_connection_error(exc):
        return render(ServiceUnavailable("The database is unavailable; retry shortly."))
    logger.exception("unhandled error", exc_info=exc)
    return problem(
        PROBLEM_BASE + "internal-error",
        "Internal server error",
        500,
        "An unexpected error occurred; it has been logged.",
    )


def register_error_handlers(app: FastAPI) -> None:
    """Route every error kind through problem+json."""
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(StarletteHTTPException, _http_exception)
    app.add_exception_handler(IntegrityError, _integrity_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(PoolTimeoutError, _database_error)
    app.add_exception_handler(OSError, _database_error)
    app.add_exception_handler(Exception, unexpected)


ALL_ERROR_KINDS: tuple[type[AppError], ...] = (
    MalformedRequest,
    Unauthenticated,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    Gone,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
    ServiceUnavailable,
)
