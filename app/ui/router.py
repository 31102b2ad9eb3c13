"""The dashboard's pages: sign-in and sign-out, the tree view, the org view, the evaluation view."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup

from app.indices.periods import Window, add_months
from app.keys.cache import verify
from app.keys.scopes import Scope
from app.platform import clock
from app.platform.config import Settings
from app.platform.deps import SessionDep, tree_of_today
from app.platform.errors import AppError, Unauthenticated, ValidationFailed
from app.platform.ratelimit import Limiter, client_address
from app.responses.models import CustomerType
from app.stages import Stage
from app.ui import charts, sessions
from app.ui.reads import PAIN_POINTS_SHOWN, Json, Query, Reader

router = APIRouter(prefix="/ui", include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")

MAX_FORM_BYTES = 4096
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self';"
    " frame-ancestors 'none'; base-uri 'none'"
)


_NONE = Markup('<span class="muted">—</span>')
_SIGNIFICANT = Markup(' <strong class="sig" title="significant at 95%">significant</strong>')


def num(value: float | None, digits: int = 2) -> Markup:
    """A number as shown: rounded text, the exact value in the element (what tests compare)."""
    if value is None:
        return _NONE
    return Markup('<data value="{}">{}</data>').format(repr(value), f"{value:.{digits}f}")


def interval(value: list[float] | None) -> Markup:
    if not value:
        return _NONE
    return Markup("{} to {}").format(num(value[0], 1), num(value[1], 1))


def change(delta: float | None, significant: bool | None) -> Markup:
    """The change against the previous period: arrow, value, and a mark when significant."""
    if delta is None:
        return _NONE
    arrow, word = ("▲", "up") if delta > 0 else ("▼", "down") if delta < 0 else ("■", "level")
    mark = _SIGNIFICANT if significant else Markup("")
    return Markup(
        '<span class="delta {0}"><span aria-hidden="true">{1}</span>'
        '<span class="sr-only">{0} </span>{2}</span>{3}'
    ).format(word, arrow, num(delta), mark)


def attained(value: bool | None, target: float | None) -> Markup:
    if target is None:
        return Markup('<span class="muted">no target</span>')
    word = "attained" if value else "not attained" if value is False else "—"
    return Markup('{} <span class="att-{}">{}</span>').format(
        num(target, 1), str(value).lower(), word
    )


def api_path(path: str, params: dict[str, str]) -> str:
    return f"{path}?{urlencode(params)}" if params else path


templates.env.globals.update(
    num=num,
    interval=interval,
    change=change,
    attained=attained,
    STAGES=list(Stage),
    CUSTOMER_TYPES=list(CustomerType),
)


def _headers() -> dict[str, str]:
    return {
        "Cache-Control": "no-store",
        "Content-Security-Policy": CSP,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "X-Frame-Options": "DENY",
    }


def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    response = templates.TemplateResponse(
        request, name, {"request": request, **context}, status_code=status
    )
    response.headers.update(_headers())
    return response


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _set_cookie(request: Request, response: Response, name: str, value: str, age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=age,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )


def _safe_next(value: str | None) -> str:
    """Where to go after sign-in: a path under /ui/ only (never another site)."""
    if value and value.startswith("/ui/") and "//" not in value and "\\" not in value:
        return value
    return "/ui/tree"


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None:
        return True  # SameSite=Strict cookies and the CSRF token still hold
    return origin == f"{request.url.scheme}://{request.headers.get('host', '')}"


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise ValidationFailed("The form is too large.")
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {name: values[0] for name, values in fields.items()}


class SignInNeeded(Exception):
    """No live session: the browser goes to the sign-in page."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message)
        self.message = message


async def signed_in(request: Request, session: SessionDep) -> sessions.Signed:
    """The page's caller, from its session cookie; the key row is read anew on every page."""
    token = request.cookies.get(sessions.COOKIE)
    signed = await sessions.find(session, token=token)
    if signed is None:
        raise SignInNeeded("Your session has ended; sign in again." if token else None)
    limiter: Limiter = request.app.state.limiter
    try:
        await limiter.check(signed.principal.key_id, signed.principal.limit)
    except AppError as error:
        raise PageError(error, signed) from error
    await tree_of_today(request)
    request.state.principal = signed.principal
    return signed


SignedIn = Annotated[sessions.Signed, Depends(signed_in)]


class PageError(Exception):
    """An API error met before the page could render: shown as an error page."""

    def __init__(self, error: AppError, signed: sessions.Signed | None) -> None:
        super().__init__(error.detail)
        self.error = error
        self.signed = signed


def _to_sign_in(request: Request, message: str | None) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    params = {"next": target}
    if message:
        params["ended"] = "1"
    response = RedirectResponse(f"/ui/sign-in?{urlencode(params)}", status_code=303)
    response.headers.update(_headers())
    return response


def error_page(request: Request, error: AppError, signed: sessions.Signed | None) -> HTMLResponse:
    return page(
        request,
        "error.html",
        status=error.status,
        signed=signed,
        title=type(error).title,
        detail=error.detail,
        errors=error.errors or [],
    )


# ---- sign-in and sign-out --------------------------------------------------------------------


@router.get("")
async def home() -> RedirectResponse:
    return RedirectResponse("/ui/tree", status_code=303)


@router.get("/sign-in")
async def sign_in_form(
    request: Request, next: str | None = None, ended: str | None = None
) -> HTMLResponse:
    return _sign_in_page(
        request,
        next_path=_safe_next(next),
        message="Your session has ended; sign in again." if ended else None,
    )


def _sign_in_page(
    request: Request, *, next_path: str, message: str | None, status: int = 200
) -> HTMLResponse:
    csrf = sessions.new_token()
    response = page(
        request, "sign_in.html", status=status, next=next_path, csrf=csrf, message=message
    )
    _set_cookie(request, response, sessions.CSRF_COOKIE, csrf, age=3600)
    return response


@router.post("/sign-in")
async def sign_in(request: Request, session: SessionDep) -> Response:
    settings = _settings(request)
    address = client_address(
        request.client.host if request.client else None,
        request.headers.getlist("x-forwarded-for"),
        settings.trusted_proxies,
    )
    public_limiter: Limiter = request.app.state.public_limiter
    try:
        await public_limiter.check(address)
        form = await _form(request)
    except AppError as error:
        return error_page(request, error, None)
    next_path = _safe_next(form.get("next"))
    if not _same_origin(request) or not sessions.same_token(
        form.get("csrf"), request.cookies.get(sessions.CSRF_COOKIE)
    ):
        return _sign_in_page(
            request,
            next_path=next_path,
            message="The form had expired; please sign in again.",
            status=403,
        )
    raw_key = form.get("key", "").strip()
    if not raw_key:
        return _sign_in_page(request, next_path=next_path, message="Enter an API key.", status=422)
    state = request.app.state
    try:
        principal = await verify(state.keys, state.sessionmaker, raw_key)
    except Unauthenticated as error:
        return _sign_in_page(
            request, next_path=next_path, message=f"{error.detail} Check the key.", status=401
        )
    if not principal.has(Scope.indices_read):
        return _sign_in_page(
            request,
            next_path=next_path,
            message="This key lacks the indices:read scope, which the dashboard needs.",
            status=403,
        )
    # A browser signing in again (another key, say) leaves no older session behind.
    await sessions.close_session(session, token=request.cookies.get(sessions.COOKIE))
    token = await sessions.open_session(session, principal=principal)
    response = RedirectResponse(next_path, status_code=303)
    response.headers.update(_headers())
    _set_cookie(
        request, response, sessions.COOKIE, token, age=int(sessions.LIFETIME.total_seconds())
    )
    response.delete_cookie(sessions.CSRF_COOKIE, path="/ui")
    return response


@router.post("/sign-out")
async def sign_out(request: Request, session: SessionDep) -> Response:
    token = request.cookies.get(sessions.COOKIE)
    signed = await sessions.find(session, token=token)
    try:
        form = await _form(request)
    except AppError as error:
        return error_page(request, error, signed)
    if signed is not None and (
        not _same_origin(request) or not sessions.same_token(form.get("csrf"), signed.csrf)
    ):
        return error_page(request, ValidationFailed("The sign-out form had expired."), signed)
    await sessions.close_session(session, token=token)
    response = RedirectResponse("/ui/sign-in", status_code=303)
    response.headers.update(_headers())
    response.delete_cookie(sessions.COOKIE, path="/ui")
    return response


# ---- views -----------------------------------------------------------------------------------


def view_query(request: Request, *, today: date, history: bool = True) -> Query:
    """The view's state from its URL; the year of today when no window is named."""
    params = request.query_params
    tree = params.get("tree") or None
    if tree == "day":
        tree = params.get("day") or None
    if tree == "history" and not history:
        tree = None
    stages = ",".join(v for v in params.getlist("stages") if v) or None
    start, end = params.get("from") or None, params.get("to") or None
    period = params.get("period") or None
    if period is None and start is None and end is None:
        period = str(today.year)
    return Query(
        period=period,
        start=start,
        end=end,
        tree=None if tree == "current" else tree,
        stages=stages,
        channel=params.get("channel") or None,
        customer_type=params.get("customer_type") or None,
    )


def view_link(path: str, q: Query, **more: str | None) -> str:
    """A link to a view with the same window, tree and filters."""
    params = {k: v for k, v in q.api_params(**more).items() if k != "stages"}
    pairs = list(params.items()) + [("stages", s) for s in (q.stages or "").split(",") if s]
    return f"{path}?{urlencode(pairs)}" if pairs else path


templates.env.globals.update(view_link=view_link, api_path=api_path)


Render = Callable[[Reader, Query], Awaitable[dict[str, Any]]]


async def _view(
    request: Request,
    session: SessionDep,
    signed: sessions.Signed,
    name: str,
    render: Render,
    *,
    history: bool = True,
) -> HTMLResponse:
    settings = _settings(request)
    today = clock.today(settings.zone)
    q = view_query(request, today=today, history=history)
    reader = Reader(session=session, principal=signed.principal, settings=settings)
    try:
        context = await render(reader, q)
        periods = suggested_periods(q.window() if q.period or q.start else None, today)
    except AppError as error:
        return error_page(request, error, signed)
    return page(request, name, signed=signed, q=q, periods=periods, **context)


def suggested_periods(window: Window | None, today: date) -> list[str]:
    """Periods offered in the period field: the year of the window's last day (or of today)
    and the one before, their quarters, and the twelve months up to that day."""
    last = window.end - timedelta(days=1) if window is not None else today
    year, month = last.year, date(last.year, last.month, 1)
    labels = [str(year), str(year - 1)]
    labels += [f"{y}-Q{k}" for y in (year, year - 1) for k in (4, 3, 2, 1)]
    labels += [add_months(month, -i).strftime("%Y-%m") for i in range(12)]
    return labels


@router.get("/tree", response_model=None)
async def tree_view(request: Request, session: SessionDep, signed: SignedIn) -> HTMLResponse:
    code = request.query_params.get("org") or None

    async def render(reader: Reader, q: Query) -> dict[str, Any]:
        as_of = q.tree if q.tree not in (None, "history") else None
        if code is None:
            roots = await reader.roots()
            if len(roots) != 1:
                rows = [(root, await reader.index(root["code"], q)) for root in roots]
                return {"org": None, "roots": rows, "children": None, "path": []}
            chosen = roots[0]["code"]
        else:
            chosen = code
        org = await reader.org(chosen, as_of=as_of)
        return {
            "org": org,
            "own": await reader.index(chosen, q),
            "children": await reader.children(chosen, q),
            "children_api": api_path(f"/v1/orgs/{chosen}/index/children", q.api_params()),
            "path": org["path"],
        }

    return await _view(request, session, signed, "tree.html", render, history=False)


def _month_target(targets: dict[str, float], label: str) -> float | None:
    """The target a month is drawn against: its own, else its quarter's, else its year's."""
    year, month = label.split("-")
    quarter = f"{year}-Q{(int(month) - 1) // 3 + 1}"
    for key in (label, quarter, year):
        if key in targets:
            return targets[key]
    return None


async def _panel(scope: Scope, reader: Reader, read: Callable[[], Awaitable[Json]]) -> Json:
    """A panel's data, or why it has none (a scope the key lacks, or the API's 4xx)."""
    if not reader.principal.has(scope):
        return {"denied": scope.value}
    try:
        return {"data": await read()}
    except AppError as error:
        return {"error": error.detail}


@router.get("/orgs/{code}", response_model=None)
async def org_view(
    code: str, request: Request, session: SessionDep, signed: SignedIn
) -> HTMLResponse:
    async def render(reader: Reader, q: Query) -> dict[str, Any]:
        as_of = q.tree if q.tree not in (None, "history") else None
        org = await reader.org(code, as_of=as_of)
        index = await reader.index(code, q)
        series, series_query = await reader.trend(code, q)
        targets = {t["period"]: t["csi"] for t in (await reader.targets(code))["items"]}
        points = [
            charts.Point(
                p["period"],
                p["csi"] if not p["suppressed"] else None,
                _month_target(targets, p["period"]),
            )
            for p in series["items"]
        ]
        children = await reader.children(code, q)
        pains = await _panel(Scope.insights_read, reader, lambda: reader.pain_points(code, q))
        if "data" in pains:
            pains["data"]["items"] = pains["data"]["items"][:PAIN_POINTS_SHOWN]
        cases = await _panel(Scope.cases_read, reader, lambda: reader.case_stats(code, q))
        invitations = await _panel(
            Scope.invitations_read, reader, lambda: reader.invitation_stats(code, q)
        )
        base = f"/v1/orgs/{code}"
        window_params = {
            k: v for k, v in q.api_params().items() if k in {"period", "from", "to", "tree"}
        }
        return {
            "org": org,
            "path": org["path"],
            "index": index,
            "stage_chart": charts.stage_bars(
                index["stages"], label=f"Stage scores of {code} with 95% intervals"
            ),
            "series": series,
            "points": points,
            "trend_chart": charts.trend(
                points, label=f"Monthly CSI of {code}, {len(points)} months, with the target"
            ),
            "children": children,
            "pains": pains,
            "cases": cases,
            "invitations": invitations,
            "apis": {
                "index": api_path(f"{base}/index", q.api_params()),
                "series": api_path(
                    f"{base}/index/series", series_query.api_params(granularity="month")
                ),
                "targets": f"{base}/targets",
                "children": api_path(
                    f"{base}/index/children",
                    q.api_params(tree=None if q.tree == "history" else q.tree),
                ),
                "pains": api_path(f"{base}/pain-points", q.api_params()),
                "cases": api_path(f"{base}/cases/stats", window_params),
                "invitations": api_path(f"{base}/invitations/stats", q.api_params()),
            },
        }

    return await _view(request, session, signed, "org.html", render)


@router.get("/evaluations", response_model=None)
async def evaluation_view(request: Request, session: SessionDep, signed: SignedIn) -> HTMLResponse:
    async def render(reader: Reader, q: Query) -> dict[str, Any]:
        period = q.period or str(clock.today(reader.settings.zone).year)
        if not reader.principal.has(Scope.evaluations_read):
            return {"period": period, "denied": Scope.evaluations_read.value}
        evaluation = await reader.evaluation(period)
        return {
            "period": period,
            "evaluation": evaluation,
            "api_path_of_page": f"/v1/evaluations/{period}",
        }

    return await _view(request, session, signed, "evaluation.html", render)


def install(app: FastAPI) -> None:
    """Serve the dashboard: its pages, its stylesheet, and the redirect to sign-in."""

    async def to_sign_in(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SignInNeeded)
        return _to_sign_in(request, exc.message)

    async def to_error_page(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, PageError)
        return error_page(request, exc.error, exc.signed)

    app.add_exception_handler(SignInNeeded, to_sign_in)
    app.add_exception_handler(PageError, to_error_page)
    app.mount(
        "/ui/static", StaticFiles(directory=Path(__file__).parent / "static"), name="ui-static"
    )
    app.include_router(router)
