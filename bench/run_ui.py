"""The dashboard in headless Chromium: page-load timings on a loaded data set, and screenshots.

    python -m bench.run_ui paint --database cx_bench --org HQ --period 2025 --loads 30
    python -m bench.run_ui screenshots --key "$KEY" --out docs/screenshots

`paint` starts `cx-survey serve` on the database, signs in once, loads the org view `--loads`
times (fresh navigations, same session), and reads the browser's own timings: the HTML's first
byte, first contentful paint (the page is server-rendered, so the first paint holds every
number), largest contentful paint, and the load event. In the same run it times the API
requests the page is made of, one after another over HTTP, as the baseline the page costs on
top of.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from playwright.async_api import Page, async_playwright

from bench.common import create_key, database_url, server_url, start_server

CHROMIUM = "/usr/bin/chromium"
app = typer.Typer(add_completion=False)

TIMINGS = """() => new Promise(resolve => {
  const nav = performance.getEntriesByType('navigation')[0];
  const done = fcp => resolve({ttfb: nav.responseStart, html: nav.responseEnd, fcp: fcp,
                               load: nav.loadEventEnd});
  new PerformanceObserver(list => {
    const paint = list.getEntries().find(e => e.name === 'first-contentful-paint');
    if (paint) done(paint.startTime);
  }).observe({type: 'paint', buffered: true});
  setTimeout(() => done(null), 3000);
})"""
LCP = """() => new Promise(resolve => {
  new PerformanceObserver(list => {
    const entries = list.getEntries();
    resolve(entries[entries.length - 1].startTime);
  }).observe({type: 'largest-contentful-paint', buffered: true});
  setTimeout(() => resolve(null), 2000);
})"""


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _sign_in(page: Page, base: str, key: str) -> None:
    await page.goto(f"{base}/ui/sign-in")
    await page.fill("#key", key)
    await page.click("button[type=submit]")
    await page.wait_for_url("**/ui/tree*")


async def _paint(base: str, key: str, path: str, loads: int) -> dict[str, Any]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM)
        page = await browser.new_page(viewport={"width": 1280, "height": 800})
        await _sign_in(page, base, key)
        await page.goto(base + path)  # warm: the first read of each kind
        html = await page.content()
        runs: list[dict[str, float]] = []
        for _ in range(loads):
            await page.goto(base + path)
            timing = await page.evaluate(TIMINGS)
            timing["lcp"] = await page.evaluate(LCP)
            runs.append(timing)
        await browser.close()
    apis = [p.replace("&amp;", "&") for p in re.findall(r'data-api="([^"]+)"', html)]
    api_ms: list[float] = []
    async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {key}"}) as c:
        for _ in range(loads):
            started = time.perf_counter()
            for api in apis:
                r = await c.get(api)
                r.raise_for_status()
            api_ms.append((time.perf_counter() - started) * 1000)
    return {"runs": runs, "api_ms": api_ms, "apis": apis}


@app.command()
def paint(
    database: Annotated[str, typer.Option(help="A database loaded by bench.load.")] = "cx_bench",
    org: Annotated[str, typer.Option(help="The org of the org view.")] = "HQ",
    period: Annotated[str, typer.Option(help="The period of the org view.")] = "2025",
    loads: Annotated[int, typer.Option(help="Page loads measured.")] = 30,
    port: Annotated[int, typer.Option(help="Port for the server under test.")] = 8771,
) -> None:
    """Time the org view's page load in headless Chromium against the API it is made of."""
    url = database_url(server_url(), database)
    key = create_key(url, "admin")
    server = start_server(url, port, env={"CX_RATE_LIMIT_PER_SECOND": "0"})
    try:
        found = asyncio.run(
            _paint(f"http://127.0.0.1:{port}", key, f"/ui/orgs/{org}?period={period}", loads)
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    runs = found["runs"]
    typer.echo(f"\norg view /ui/orgs/{org}?period={period}, {loads} loads, 1280x800\n")
    typer.echo("| measure | p50 ms | p90 ms | max ms |")
    typer.echo("|---|---:|---:|---:|")
    for name, label in (
        ("ttfb", "HTML first byte"),
        ("html", "HTML complete"),
        ("fcp", "first contentful paint"),
        ("lcp", "largest contentful paint"),
        ("load", "load event"),
    ):
        values = [r[name] for r in runs if r[name] is not None]
        typer.echo(
            f"| {label} | {_p(values, 0.5):.0f} | {_p(values, 0.9):.0f} | {max(values):.0f} |"
        )
    api = found["api_ms"]
    typer.echo(
        f"| baseline: its {len(found['apis'])} API requests one after another | "
        f"{_p(api, 0.5):.0f} | {_p(api, 0.9):.0f} | {max(api):.0f} |"
    )
    fcp = statistics.median(r["fcp"] for r in runs)
    typer.echo(f"\nfirst contentful paint / API baseline (p50): {fcp / _p(api, 0.5):.2f}")


@app.command()
def screenshots(
    url: Annotated[str, typer.Option(help="A running service.")] = "http://127.0.0.1:8000",
    key: Annotated[str, typer.Option(help="A key with the read scopes.")] = "",
    org: Annotated[str, typer.Option(help="The org of the org view.")] = "KR",
    period: Annotated[str, typer.Option(help="The period shown.")] = "2026",
    out: Annotated[Path, typer.Option(help="Where the PNGs go.")] = Path("docs/screenshots"),
) -> None:
    """A PNG of each view (and of the org view on a phone), as the README shows them."""
    out.mkdir(parents=True, exist_ok=True)

    async def run() -> None:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM)
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            await page.goto(f"{url}/ui/sign-in")
            await page.screenshot(path=str(out / "sign-in.png"))
            await _sign_in(page, url, key)
            for name, path in (
                ("tree-view", f"/ui/tree?period={period}"),
                ("org-view", f"/ui/orgs/{org}?period={period}"),
                ("evaluation-view", f"/ui/evaluations?period={period}"),
            ):
                await page.goto(url + path)
                await page.screenshot(path=str(out / f"{name}.png"), full_page=True)
            phone = await browser.new_page(viewport={"width": 390, "height": 844})
            await phone.context.add_cookies(await page.context.cookies())
            await phone.goto(f"{url}/ui/orgs/{org}?period={period}")
            await phone.screenshot(path=str(out / "org-view-phone.png"), full_page=True)
            await browser.close()

    asyncio.run(run())
    typer.echo(f"screenshots in {out}")


if __name__ == "__main__":
    app()
