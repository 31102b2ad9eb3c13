"""The dashboard in a real browser: Playwright driving Debian's Chromium against the service
served by uvicorn on a real port, on committed data.

Each test saves a screenshot of what it saw (PNG) under CX_TEST_ARTIFACTS (default
.artifacts/ui). A machine without Chromium fails here, with how to install it: the browser is
part of what `make test` proves (.ci/run installs it).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from playwright.async_api import Browser, Page, async_playwright
from sqlalchemy.ext.asyncio import AsyncEngine

from app.keys.scopes import Scope
from app.keys.service import create_key
from app.main import create_app
from app.platform.config import Settings
from tests.conftest import TABLES, bearer
from tests.ui.conftest import YEAR, seed

pytestmark = pytest.mark.asyncio

CHROMIUM = os.environ.get("CX_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("CX_TEST_ARTIFACTS", ".artifacts/ui"))
HAVE_CHROMIUM = Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is not None


class Served:
    """The service on a real port, with the keys the tests sign in with."""

    def __init__(self, url: str, keys: dict[str, str]) -> None:
        self.url = url
        self.keys = keys

    def api(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers=bearer(self.keys["admin"]))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _key(app: Any, name: str, scopes: list[Scope], org: str | None = None) -> str:
    async with app.state.sessionmaker() as session, session.begin():
        issued = await create_key(session, name=name, scopes=scopes, org_code=org)
    return issued.secret_key


@pytest.fixture(scope="module")
async def served(settings: Settings, engine: AsyncEngine) -> AsyncIterator[Served]:
    app = create_app(settings, engine=engine)
    ops_scopes = [
        Scope.indices_read,
        Scope.insights_read,
        Scope.cases_read,
        Scope.invitations_read,
        Scope.evaluations_read,
    ]
    async with app.router.lifespan_context(app):
        keys = {"admin": await _key(app, "admin", [Scope.admin])}
        keys["ops"] = await _key(app, "ops", ops_scopes)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            await seed(client, bearer(keys["admin"]))
        keys["korea"] = await _key(app, "korea", [Scope.indices_read], org="KR")
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    for _ in range(200):  # at most 10 s
        if server.started:
            break
        await asyncio.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield Served(f"http://127.0.0.1:{port}", keys)
    finally:
        server.should_exit = True
        await task
        async with engine.begin() as conn:
            await conn.exec_driver_sql(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE")
            await conn.exec_driver_sql(
                "UPDATE tree_state SET version = gen_random_uuid()::text, tree_date = NULL"
            )


@pytest.fixture(scope="module")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="module")
async def browser(artifacts: Path) -> AsyncIterator[Browser]:
    if not HAVE_CHROMIUM:
        pytest.fail(
            f"No Chromium at {CHROMIUM}: install Debian's chromium package"
            " (sudo apt-get install chromium) or set CX_CHROMIUM to a Chromium binary."
        )
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            yield browser
        finally:
            await browser.close()


async def _page(browser: Browser, width: int = 1280, height: int = 800) -> Page:
    context = await browser.new_context(viewport={"width": width, "height": height})
    return await context.new_page()


async def _sign_in(page: Page, served: Served, key: str, path: str) -> None:
    await page.goto(served.url + path)
    assert "/ui/sign-in" in page.url
    await page.fill("#key", key)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"**{path.split('?', maxsplit=1)[0]}*")


async def _shot(page: Page, name: str) -> None:
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def _values(page: Page, selector: str) -> dict[str, float]:
    """data-field → the exact value of its <data> element, within `selector`."""
    found: dict[str, float] = await page.eval_on_selector(
        selector,
        """(root) => Object.fromEntries([...root.querySelectorAll('[data-field]')]
             .filter(cell => cell.querySelector('data'))
             .map(cell => [cell.dataset.field, Number(cell.querySelector('data').value)]))""",
    )
    return found


async def _api_of(page: Page, section: str) -> str:
    return await page.get_attribute(f"{section} [data-api]", "data-api") or ""


async def test_the_org_view_shows_the_apis_numbers(browser: Browser, served: Served) -> None:
    page = await _page(browser)
    await _sign_in(page, served, served.keys["ops"], f"/ui/orgs/KR?period={YEAR}")
    async with served.api() as api:
        index = (await api.get(await _api_of(page, "#index"))).json()
        assert await _values(page, "#index") == {
            k: index[k] for k in ("csi", "delta", "target") if index[k] is not None
        } | {"ci95": index["ci95"][0]}
        assert await page.inner_text("#index [data-field=n]") == str(index["n"])
        for stage in index["stages"]:
            row = f"#stages tr[data-stage={stage['stage']}]"
            values = await _values(page, row)
            if stage["suppressed"]:
                assert "suppressed" in await page.inner_text(row)
                assert "score" not in values
            else:
                assert values["score"] == stage["score"]
                assert values["weight"] == stage["weight"]
        series_path = await page.get_attribute("#trend [data-api]", "data-api")
        series = (await api.get(series_path or "")).json()["items"]
        assert len(series) == 24
        await page.click("#trend summary")  # the table alternative of the chart
        for point in series:
            row = f"#trend tr[data-period='{point['period']}']"
            shown = await _values(page, row)
            assert shown.get("csi") == (None if point["suppressed"] else point["csi"])
        assert await page.locator("#trend svg[role=img]").count() == 1
        children = (await api.get(await _api_of(page, "#children"))).json()["items"]
        for child in children:
            shown = await _values(page, f"#children tr[data-org='{child['org']}']")
            assert shown.get("csi") == child["csi"]
        cases = (await api.get(await _api_of(page, "#cases"))).json()
        assert await page.inner_text("#cases [data-field=open_now]") == str(cases["open_now"])
        assert await page.inner_text("#cases [data-field=overdue_now]") == str(cases["overdue_now"])
        invitations = (await api.get(await _api_of(page, "#invitations"))).json()
        assert (await _values(page, "#invitations"))["response_rate"] == invitations[
            "response_rate"
        ]
        pains = (await api.get(await _api_of(page, "#pain-points"))).json()
        shown_rows = await page.locator("#pain-points tbody tr").count()
        assert shown_rows == min(5, len(pains["items"]))
    await _shot(page, "org-view")


async def test_the_tree_view_and_the_evaluation_view_show_the_apis_numbers(
    browser: Browser, served: Served
) -> None:
    page = await _page(browser)
    await _sign_in(page, served, served.keys["ops"], f"/ui/tree?period={YEAR}")
    async with served.api() as api:
        children = (await api.get(await _api_of(page, "main"))).json()["items"]
        assert [c["org"] for c in children] == ["KR", "US"] or children
        for child in children:
            row = f"tr[data-org='{child['org']}']"
            assert (await _values(page, row)).get("csi") == child["csi"]
        await _shot(page, "tree-view")
        await page.click("tr[data-org='US'] th a")
        await page.wait_for_url("**org=US*")
        assert "suppressed" in await page.inner_text("tr[data-org='US-SERVICE']")
        await page.goto(f"{served.url}/ui/evaluations?period={YEAR}")
        evaluation = (await api.get(f"/v1/evaluations/{YEAR}")).json()
        for card in evaluation["scorecards"]:
            row = f"tr[data-executive='{card['executive']}']"
            shown = await _values(page, row)
            assert shown.get("total") == card["total"]
            assert await page.inner_text(f"{row} [data-field=rank]") == str(card["rank"])
        await _shot(page, "evaluation-view")


async def test_keyboard_only_sign_in_drill_down_and_sign_out(
    browser: Browser, served: Served
) -> None:
    page = await _page(browser)
    await page.goto(f"{served.url}/ui/tree?period={YEAR}")
    await page.wait_for_selector("#key:focus")  # autofocus: the key field has the focus
    await page.keyboard.type(served.keys["ops"])
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/ui/tree?period=*")
    # Tab to the link of the child KR and follow it, then to its org view.
    for _ in range(60):
        await page.keyboard.press("Tab")
        focused = await page.evaluate("document.activeElement.textContent")
        if focused.strip() == "Org KR":
            break
    else:
        pytest.fail("the keyboard never reached the link of KR")
    await page.keyboard.press("Enter")
    await page.wait_for_url("**org=KR*")
    assert await page.inner_text("h1") == "Tree: Org KR KR"
    for _ in range(60):
        await page.keyboard.press("Tab")
        label = await page.evaluate("document.activeElement.getAttribute('aria-label')")
        if label == "Org view of KR-DELIVERY-SEOUL":
            break
    else:
        pytest.fail("the keyboard never reached the org view of KR-DELIVERY-SEOUL")
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/ui/orgs/KR-DELIVERY-SEOUL*")
    outline = await page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline is not None
    for _ in range(20):
        await page.keyboard.press("Tab")
        if (await page.evaluate("document.activeElement.textContent")).strip() == "Sign out":
            break
    else:
        pytest.fail("the keyboard never reached Sign out")
    await page.keyboard.press("Enter")
    await page.wait_for_url("**/ui/sign-in")
    await page.goto(f"{served.url}/ui/tree")
    assert "/ui/sign-in" in page.url


async def test_an_org_bound_key_sees_only_its_subtree(browser: Browser, served: Served) -> None:
    page = await _page(browser)
    await _sign_in(page, served, served.keys["korea"], f"/ui/tree?period={YEAR}")
    assert await page.inner_text("h1") == "Tree: Org KR KR"
    orgs = await page.eval_on_selector_all("tr[data-org]", "rows => rows.map(r => r.dataset.org)")
    assert set(orgs) == {"KR", "KR-DELIVERY-SEOUL", "KR-DELIVERY-BUSAN"}
    assert "HQ" not in await page.inner_text("main")
    response = await page.goto(f"{served.url}/ui/orgs/HQ?period={YEAR}")
    assert response is not None
    assert response.status == 404
    assert "No org with code 'HQ'" in await page.inner_text("main")
    await page.goto(f"{served.url}/ui/orgs/KR?period={YEAR}")
    for scope in ("insights:read", "cases:read", "invitations:read"):
        assert f"lacks the {scope} scope" in await page.inner_text("main")
    await _shot(page, "org-view-bound-key")


async def test_a_wrong_key_and_a_bad_url_get_messages_a_person_can_act_on(
    browser: Browser, served: Served
) -> None:
    page = await _page(browser)
    await page.goto(f"{served.url}/ui/sign-in")
    await page.fill("#key", "cx_unknown_" + "x" * 40)
    await page.click("button[type=submit]")
    assert "The API key is not known. Check the key." in await page.inner_text("[role=alert]")
    await _shot(page, "sign-in-wrong-key")
    await _sign_in(page, served, served.keys["ops"], "/ui/tree")
    await page.goto(f"{served.url}/ui/orgs/KR?period=2026-13")
    assert "period" in await page.inner_text("[role=alert]")


@pytest.mark.parametrize(("width", "height"), [(1280, 800), (390, 844)])
async def test_the_org_view_fits_a_laptop_and_a_phone(
    browser: Browser, served: Served, width: int, height: int
) -> None:
    page = await _page(browser, width, height)
    await _sign_in(page, served, served.keys["ops"], f"/ui/orgs/KR?period={YEAR}")
    overflow = await page.evaluate(
        "document.scrollingElement.scrollWidth - document.scrollingElement.clientWidth"
    )
    assert overflow <= 0
    font = await page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)")
    assert font >= 14
    await _shot(page, f"org-view-{width}x{height}")
