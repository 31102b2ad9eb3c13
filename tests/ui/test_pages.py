"""The dashboard over HTTP: sessions, CSRF, scopes, errors, and the numbers of each view."""

from __future__ import annotations

import logging
import re
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from app.ui.models import UiSession
from tests.conftest import KeyFactory, bearer
from tests.ui.conftest import YEAR, csrf_of, row_of, seed, shown_values, sign_in

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def seeded(client: httpx.AsyncClient, admin: dict[str, str]) -> dict[str, str]:
    await seed(client, admin)
    return admin


async def _sessions(app: Any) -> int:
    async with app.state.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(UiSession)) or 0)


# ---- signing in and out ----------------------------------------------------------------------


async def test_a_page_without_a_session_goes_to_sign_in_and_comes_back(
    client: httpx.AsyncClient, make_key: KeyFactory, app: Any
) -> None:
    r = await client.get("/ui/orgs/HQ?period=2026")
    assert r.status_code == 303
    assert r.headers["location"] == "/ui/sign-in?next=%2Fui%2Forgs%2FHQ%3Fperiod%3D2026"
    form = await client.get(r.headers["location"])
    assert form.status_code == 200
    cookie = form.headers["set-cookie"]
    assert cookie.startswith("cx_ui_csrf=")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/ui" in cookie
    assert 'value="/ui/orgs/HQ?period=2026"' in form.text

    key = await make_key("indices:read")
    signed = await sign_in(client, key, next_path="/ui/orgs/HQ?period=2026")
    assert signed.status_code == 303
    assert signed.headers["location"] == "/ui/orgs/HQ?period=2026"
    session_cookie = next(
        c for c in signed.headers.get_list("set-cookie") if c.startswith("cx_ui=")
    )
    assert "HttpOnly" in session_cookie
    assert "SameSite=strict" in session_cookie
    assert "Path=/ui" in session_cookie
    secret = key.split("_", 2)[2]
    for header in signed.headers.values():
        assert secret not in header  # the key is nowhere in the answer: no cookie, no URL
    assert await _sessions(app) == 1


async def test_the_key_appears_in_no_log_line(
    client: httpx.AsyncClient, make_key: KeyFactory, caplog: pytest.LogCaptureFixture, seeded: Any
) -> None:
    key = await make_key("indices:read")
    with caplog.at_level(logging.DEBUG):
        await sign_in(client, key, next_path="/ui/orgs/KR")
        assert (await client.get("/ui/orgs/KR")).status_code == 200
        await sign_in(client, key + "x")  # a failed sign-in logs nothing of the key either
    assert caplog.records
    secret = key.split("_", 2)[2]
    assert not [r for r in caplog.records if secret in r.getMessage() or secret in str(r.args)]


async def test_too_large_a_form_is_refused_with_a_page(
    client: httpx.AsyncClient, make_key: KeyFactory
) -> None:
    r = await client.post("/ui/sign-in", data={"key": "x" * 10_000})
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("text/html")
    r = await client.post("/ui/sign-out", data={"csrf": "x" * 10_000})
    assert r.status_code == 422
    assert "too large" in r.text


async def test_signing_in_again_replaces_the_browsers_session(
    client: httpx.AsyncClient, make_key: KeyFactory, app: Any
) -> None:
    await sign_in(client, await make_key("indices:read"))
    first = client.cookies.get("cx_ui", path="/ui")
    await sign_in(client, await make_key("indices:read", "cases:read"))
    assert client.cookies.get("cx_ui", path="/ui") != first
    assert await _sessions(app) == 1


async def test_the_session_table_holds_a_hash_and_the_key_id_only(
    client: httpx.AsyncClient, make_key: KeyFactory, app: Any
) -> None:
    key = await make_key("indices:read")
    await sign_in(client, key)
    token = client.cookies.get("cx_ui", path="/ui")
    assert token
    async with app.state.sessionmaker() as session:
        row = (await session.execute(select(UiSession))).scalar_one()
    assert row.key_id == key.split("_")[1]
    assert token.encode() != row.token_hash
    assert key.split("_", 2)[2].encode() not in row.token_hash


async def test_a_form_without_its_csrf_token_or_from_another_site_signs_nobody_in(
    client: httpx.AsyncClient, make_key: KeyFactory, app: Any
) -> None:
    key = await make_key("indices:read")
    await client.get("/ui/sign-in")
    missing = await client.post("/ui/sign-in", data={"key": key, "next": "/ui/tree"})
    assert missing.status_code == 403
    assert "expired" in missing.text
    form = await client.get("/ui/sign-in")
    foreign = await client.post(
        "/ui/sign-in",
        data={"key": key, "csrf": csrf_of(form.text)},
        headers={"Origin": "https://evil.example"},
    )
    assert foreign.status_code == 403
    form = await client.get("/ui/sign-in")
    client.cookies.set("cx_ui_csrf", "forged-token-forged-token", path="/ui")
    forged = await client.post("/ui/sign-in", data={"key": key, "csrf": csrf_of(form.text)})
    assert forged.status_code == 403
    assert await _sessions(app) == 0


@pytest.mark.parametrize(
    ("key", "status", "message"),
    [
        ("cx_nosuchkey_" + "a" * 40, 401, "The API key is not known."),
        ("not-a-key", 401, "The API key is malformed"),
        ("", 422, "Enter an API key."),
    ],
)
async def test_a_wrong_key_gets_a_clear_message_on_the_sign_in_page(
    client: httpx.AsyncClient, app: Any, key: str, status: int, message: str
) -> None:
    r = await sign_in(client, key)
    assert r.status_code == status
    assert message in r.text
    assert 'role="alert"' in r.text
    assert await _sessions(app) == 0


async def test_a_revoked_key_or_one_without_indices_read_cannot_sign_in(
    client: httpx.AsyncClient, make_key: KeyFactory, admin: dict[str, str], app: Any
) -> None:
    revoked = await make_key("indices:read")
    r = await client.delete(f"/v1/keys/{revoked.split('_')[1]}", headers=admin)
    assert r.status_code == 200, r.text
    r = await sign_in(client, revoked)
    assert r.status_code == 401
    assert "revoked" in r.text
    r = await sign_in(client, await make_key("responses:write"))
    assert r.status_code == 403
    assert "indices:read" in r.text
    assert await _sessions(app) == 0


async def test_revoking_the_key_ends_its_sessions_at_the_next_page(
    client: httpx.AsyncClient, make_key: KeyFactory, admin: dict[str, str], seeded: Any
) -> None:
    key = await make_key("indices:read")
    await sign_in(client, key)
    assert (await client.get("/ui/tree")).status_code == 200
    r = await client.delete(f"/v1/keys/{key.split('_')[1]}", headers=admin)
    assert r.status_code == 200
    r = await client.get("/ui/tree")
    assert r.status_code == 303
    assert "ended=1" in r.headers["location"]
    page = await client.get(r.headers["location"])
    assert "Your session has ended" in page.text


async def test_sign_out_needs_the_sessions_token_and_forgets_the_session(
    client: httpx.AsyncClient, make_key: KeyFactory, app: Any, seeded: Any
) -> None:
    await sign_in(client, await make_key("indices:read"))
    page = await client.get("/ui/tree")
    forged = await client.post("/ui/sign-out", data={"csrf": "not-the-token"})
    assert forged.status_code == 422
    assert await _sessions(app) == 1
    r = await client.post("/ui/sign-out", data={"csrf": csrf_of(page.text)})
    assert r.status_code == 303
    assert r.headers["location"] == "/ui/sign-in"
    assert any(c.startswith('cx_ui=""') for c in r.headers.get_list("set-cookie"))
    assert await _sessions(app) == 0
    assert (await client.get("/ui/tree")).status_code == 303


@pytest.mark.parametrize(
    "target", ["https://evil.example/", "//evil.example/ui/", "/v1/keys", "/ui/..\\x"]
)
async def test_sign_in_goes_only_to_dashboard_pages(
    client: httpx.AsyncClient, make_key: KeyFactory, target: str
) -> None:
    r = await sign_in(client, await make_key("indices:read"), next_path=target)
    assert r.status_code == 303
    assert r.headers["location"] == "/ui/tree"


async def test_a_session_expires_after_its_lifetime(
    client: httpx.AsyncClient, make_key: KeyFactory, app: Any, seeded: Any
) -> None:
    await sign_in(client, await make_key("indices:read"))
    async with app.state.sessionmaker() as session, session.begin():
        row = (await session.execute(select(UiSession))).scalar_one()
        row.expires_at = row.created_at
    r = await client.get("/ui/tree")
    assert r.status_code == 303


async def test_pages_are_not_cached_not_framed_and_run_no_script(
    client: httpx.AsyncClient, make_key: KeyFactory, seeded: Any
) -> None:
    await sign_in(client, await make_key("indices:read"))
    for path in ("/ui/sign-in", "/ui/tree", "/ui/orgs/HQ", "/ui/evaluations", "/ui/orgs/NOPE"):
        r = await client.get(path)
        assert r.headers["cache-control"] == "no-store", path
        assert "default-src 'none'" in r.headers["content-security-policy"], path
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"], path
        assert "<script" not in r.text, path


async def test_every_dashboard_route_is_signed_in_or_public_on_purpose(
    client: httpx.AsyncClient, app: Any
) -> None:
    """The dashboard's routes, as the app serves them: each page sends a signed-out browser
    to sign-in; only the sign-in form, sign-out, the stylesheet and /ui itself answer without
    a session (and none of those shows data)."""
    from tests.keys.test_auth_matrix import DASHBOARD, _walk

    served = {(m, p) for m, p in _walk(app.routes) if p.startswith("/ui")}
    assert {p for _, p in served} == DASHBOARD
    without_session = {
        ("GET", "/ui"): (303, "/ui/tree"),
        ("GET", "/ui/sign-in"): (200, None),
        ("POST", "/ui/sign-in"): (403, None),  # no CSRF token: nobody signed in
        ("POST", "/ui/sign-out"): (303, "/ui/sign-in"),
        ("*", "/ui/static"): (200, None),
    }
    for method, path in sorted(served):
        url = path.replace("{code}", "HQ") + ("/ui.css" if path == "/ui/static" else "")
        r = await client.request("GET" if method == "*" else method, url)
        if (method, path) in without_session:
            status, location = without_session[method, path]
            assert r.status_code == status, (method, path)
            assert r.headers.get("location") == location, (method, path)
        else:
            assert method == "GET", (method, path)
            assert r.status_code == 303, path
            assert r.headers["location"].startswith("/ui/sign-in?next="), path


async def test_the_api_still_refuses_form_bodies(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    r = await client.post("/v1/orgs", data={"code": "X", "name": "X"}, headers=admin)
    assert r.status_code == 415


# ---- what each view shows --------------------------------------------------------------------


def _api_paths(page: str) -> list[str]:
    return re.findall(r'data-api="([^"]+)"', page.replace("&amp;", "&"))


async def test_the_org_view_shows_the_apis_numbers_for_the_same_requests(
    client: httpx.AsyncClient, make_key: KeyFactory, seeded: dict[str, str]
) -> None:
    await sign_in(client, await make_key("admin"))
    page = (await client.get(f"/ui/orgs/KR?period={YEAR}")).text
    paths = _api_paths(page)
    assert f"/v1/orgs/KR/index?period={YEAR}" in paths
    api = {p.split("?")[0].rsplit("/", 1)[-1]: (await client.get(p, headers=seeded)) for p in paths}
    assert all(r.status_code == 200 for r in api.values()), {k: r.text for k, r in api.items()}
    index = api["index"].json()
    headline = page[page.index('id="index"') : page.index('id="stages"')]
    shown = shown_values(headline)
    assert shown["csi"] == index["csi"]
    assert shown["delta"] == index["delta"]
    assert shown["target"] == index["target"] == 70.0
    assert f'data-field="n">{index["n"]}<' in headline
    for stage in index["stages"]:
        row = row_of(page, "data-stage", stage["stage"])
        if stage["suppressed"]:
            assert "suppressed" in row
            assert "score" not in shown_values(row)
        else:
            assert shown_values(row)["score"] == stage["score"]
            assert shown_values(row)["weight"] == stage["weight"]
    series = api["series"].json()["items"]
    assert len(series) == 24
    assert series[-1]["period"] == f"{YEAR}-12"
    for point in series:
        row = row_of(page, "data-period", point["period"])
        if point["suppressed"]:
            assert "suppressed" in row
        else:
            assert shown_values(row)["csi"] == point["csi"]
        # The target line: the month's year target (KR has one for the year only).
        if point["period"].startswith(str(YEAR)):
            assert shown_values(row)["target"] == 70.0
        else:
            assert "target" not in shown_values(row)
    for child in api["children"].json()["items"]:
        row = row_of(page, "data-org", child["org"])
        assert shown_values(row).get("csi") == child["csi"]
        assert f'data-field="rank">{child["rank"]}<' in row
    stats = {
        p.split("?")[0]: (await client.get(p, headers=seeded)).json()
        for p in paths
        if "/stats" in p
    }
    case_stats = stats["/v1/orgs/KR/cases/stats"]
    assert case_stats["opened"] > 0
    assert f'data-field="open_now" class="big">{case_stats["open_now"]}<' in page
    assert f'data-field="opened">{case_stats["opened"]}<' in page
    invitation_stats = stats["/v1/orgs/KR/invitations/stats"]
    assert invitation_stats["sent"] == 3
    assert shown_values(page)["response_rate"] == invitation_stats["response_rate"]
    pains = api["pain-points"].json()
    for item in pains["items"][:5]:
        row = row_of(page, "data-option", f"{item['survey']}/{item['question']}/{item['option']}")
        assert f'data-field="low_n">{item["low_n"]}<' in row


async def test_the_tree_view_shows_each_childs_index_and_suppressed_orgs_as_suppressed(
    client: httpx.AsyncClient, make_key: KeyFactory, seeded: dict[str, str]
) -> None:
    await sign_in(client, await make_key("indices:read"))
    page = (await client.get(f"/ui/tree?period={YEAR}")).text  # the one root: HQ
    children = (
        await client.get(f"/v1/orgs/HQ/index/children?period={YEAR}", headers=seeded)
    ).json()["items"]
    own = (await client.get(f"/v1/orgs/HQ/index?period={YEAR}", headers=seeded)).json()
    assert shown_values(row_of(page, "data-org", "HQ"))["csi"] == own["csi"]
    for child in children:
        row = row_of(page, "data-org", child["org"])
        if child["suppressed"]:
            assert "suppressed" in row
            assert "csi" not in shown_values(row)
        else:
            assert shown_values(row)["csi"] == child["csi"]
    us = (await client.get(f"/ui/tree?org=US&period={YEAR}")).text
    row = row_of(us, "data-org", "US-SERVICE")
    assert "suppressed" in row
    assert ">0.00<" not in row


async def test_the_evaluation_view_ranks_the_scorecards_of_the_api(
    client: httpx.AsyncClient, make_key: KeyFactory, seeded: dict[str, str]
) -> None:
    await sign_in(client, await make_key("indices:read", "evaluations:read"))
    page = (await client.get(f"/ui/evaluations?period={YEAR}")).text
    evaluation = (await client.get(f"/v1/evaluations/{YEAR}", headers=seeded)).json()
    assert evaluation["scorecards"]
    for card in evaluation["scorecards"]:
        row = row_of(page, "data-executive", card["executive"])
        values = shown_values(row)
        assert values.get("total") == card["total"]
        assert values.get("task_component") == card["tasks"]["component"]
        assert f'data-field="rank">{card["rank"]}<' in row
    assert "<strong>Open</strong>" in page
    r = await client.post(f"/v1/evaluations/{YEAR}/close", json={}, headers=seeded)
    assert r.status_code == 200, r.text
    closed = (await client.get(f"/ui/evaluations?period={YEAR}")).text
    assert "<strong>Closed</strong>: frozen numbers, version 1" in closed
    assert 'data-field="frozen">frozen<' in closed


async def test_panels_the_key_may_not_read_say_so(
    client: httpx.AsyncClient, make_key: KeyFactory, seeded: Any
) -> None:
    await sign_in(client, await make_key("indices:read"))
    page = (await client.get(f"/ui/orgs/KR?period={YEAR}")).text
    for scope in ("insights:read", "cases:read", "invitations:read"):
        assert f"Your key lacks the <code>{scope}</code> scope" in page
    evaluation = (await client.get(f"/ui/evaluations?period={YEAR}")).text
    assert "Your key lacks the <code>evaluations:read</code> scope" in evaluation


async def test_an_org_bound_key_sees_its_subtree_only(
    client: httpx.AsyncClient, make_key: KeyFactory, seeded: Any
) -> None:
    await sign_in(client, await make_key("indices:read", org="KR"))
    tree = (await client.get(f"/ui/tree?period={YEAR}")).text
    assert "Tree: Org KR" in tree
    assert 'data-org="KR-DELIVERY-SEOUL"' in tree
    assert "HQ" not in tree
    assert 'data-org="US' not in tree
    for path in ("/ui/orgs/HQ", "/ui/orgs/US", "/ui/tree?org=US-SERVICE"):
        r = await client.get(path)
        assert r.status_code == 404, path
        assert "No org with code" in r.text
    org = (await client.get("/ui/orgs/KR-DELIVERY-SEOUL")).text
    crumbs = org[org.index('class="crumbs"') : org.index("</nav>", org.index('class="crumbs"'))]
    assert "HQ" not in crumbs
    assert ">KR<" in crumbs


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/ui/orgs/NOPE", 404, "No org with code &#39;NOPE&#39;."),
        ("/ui/orgs/HQ?period=2026-13", 422, "period"),
        ("/ui/orgs/HQ?from=2026-02-10", 422, "to"),
        ("/ui/orgs/HQ?period=2026&amp;tree=yesterday", 422, "tree"),
        ("/ui/orgs/HQ?tree=history&stages=nope", 422, "stages are purchase"),
        ("/ui/evaluations?period=26", 422, "period"),
        ("/ui/tree?org=NOPE", 404, "No org with code"),
    ],
)
async def test_bad_urls_get_a_clear_page(
    client: httpx.AsyncClient,
    make_key: KeyFactory,
    seeded: Any,
    path: str,
    status: int,
    message: str,
) -> None:
    await sign_in(client, await make_key("admin"))
    r = await client.get(path.replace("&amp;", "&"))
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert message in r.text
    assert "Traceback" not in r.text


async def test_the_view_state_is_kept_in_links_without_the_key(
    client: httpx.AsyncClient, make_key: KeyFactory, seeded: Any
) -> None:
    key = await make_key("indices:read")
    await sign_in(client, key)
    query = f"period={YEAR}-Q3&tree=2026-06-30&stages=delivery&channel=web"
    page = (await client.get(f"/ui/orgs/KR?{query}")).text.replace("&amp;", "&")
    assert f"/ui/orgs/KR-DELIVERY-SEOUL?period={YEAR}-Q3&tree=2026-06-30&channel=web" in page
    assert "stages=delivery" in page
    assert f"/v1/orgs/KR/index?period={YEAR}-Q3&tree=2026-06-30&stages=delivery" in page
    assert key.split("_", 2)[2] not in page


# ---- fuzzing the views' URLs -----------------------------------------------------------------

_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=24)
_params = st.fixed_dictionaries(
    {},
    optional={
        "period": st.one_of(_text, st.sampled_from(["2026", "2026-Q3", "2026-09", "1899"])),
        "from": st.one_of(_text, st.sampled_from(["2026-01-01", "2026-02-30"])),
        "to": st.one_of(_text, st.sampled_from(["2026-03-01", "9999-12-31"])),
        "tree": st.one_of(_text, st.sampled_from(["current", "history", "day", "2026-01-01"])),
        "day": _text,
        "stages": st.one_of(_text, st.sampled_from(["delivery", "purchase,rental"])),
        "channel": _text,
        "customer_type": _text,
        "org": _text,
    },
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(view=st.sampled_from(["/ui/tree", "/ui/orgs/KR", "/ui/evaluations"]), params=_params)
async def test_no_view_url_gets_a_500(
    client: httpx.AsyncClient, make_key: KeyFactory, view: str, params: dict[str, str]
) -> None:
    if "cx_ui" not in client.cookies:
        admin = bearer(await make_key("admin"))
        await client.post("/v1/orgs", json={"code": "KR", "name": "KR"}, headers=admin)
        await sign_in(client, await make_key("admin"))
    r = await client.get(view, params=params)
    assert r.status_code in (200, 404, 422, 429), (view, params, r.text)
    assert r.headers["content-type"].startswith("text/html"), (view, params, r.text)
