"""Webhooks with a real HTTP receiver on loopback: signatures the receiver verifies with the
Standard Webhooks library, retries on the scaled schedule with one webhook-id, failed after the
last attempt and retried by hand, 410 disables, subtrees, erasure, rotation, 400 concurrent
responses, addresses refused."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine
from standardwebhooks.webhooks import Webhook as Verifier

from app.platform.config import Settings
from app.webhooks import worker
from tests.factories import response_body, standard_setup
from tests.webhooks.conftest import SCALE, Receiver, drain, free_port

RECENT = (datetime.now(UTC) - timedelta(hours=3)).replace(microsecond=0).isoformat()


async def subscribe(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    url: str,
    *events: str,
    org: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"url": url, "events": list(events) or ["response.created"]}
    if org is not None:
        body["org"] = org
    r = await client.post("/v1/webhooks", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


async def post(client: httpx.AsyncClient, headers: dict[str, str], **overrides: Any) -> Any:
    body = response_body(occurred_at=RECENT, **overrides)
    r = await client.post("/v1/responses", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


async def test_events_arrive_signed_per_standard_webhooks(
    hook_client: httpx.AsyncClient,
    hook_admin: dict[str, str],
    receiver: Receiver,
    engine: AsyncEngine,
    hook_settings: Settings,
) -> None:
    await standard_setup(hook_client, hook_admin)
    r = await hook_client.put(
        "/v1/surveys/delivery-csat/case-rule",
        json={"at_most": 2, "sla_hours": 24},
        headers=hook_admin,
    )
    assert r.status_code == 201
    hook = await subscribe(
        hook_client, hook_admin, receiver.url, "response.created", "case.opened", "case.updated"
    )
    assert hook["secret"].startswith("whsec_")
    assert hook["enabled"] is True
    assert (
        "secret"
        not in (await hook_client.get(f"/v1/webhooks/{hook['id']}", headers=hook_admin)).json()
    )
    response = await post(hook_client, hook_admin, external_id="low", answers={"overall": 1})
    await drain(engine, hook_settings, lambda: len(receiver.seen) >= 2)
    verifier = Verifier(hook["secret"])
    bodies = {}
    for headers, body in receiver.seen:
        payload = verifier.verify(body, headers)  # raises unless the signature is right
        assert headers["webhook-id"].startswith("msg_")
        assert abs(int(headers["webhook-timestamp"]) - datetime.now(UTC).timestamp()) < 60
        assert headers["content-type"] == "application/json"
        bodies[payload["type"]] = payload
    created = bodies["response.created"]
    assert created["data"]["id"] == response["id"]
    assert created["data"]["org"] == "KR-DELIVERY-SEOUL"
    assert created["data"]["survey"] == "delivery-csat"
    assert created["data"]["score"] == {"raw": 1, "normalized": 0.0}
    assert "answers" not in created["data"]
    opened = bodies["case.opened"]
    assert opened["data"]["response_id"] == response["id"]
    assert opened["data"]["status"] == "open"
    # A change of the case is an event too.
    r = await hook_client.patch(
        f"/v1/cases/{opened['data']['id']}", json={"status": "acknowledged"}, headers=hook_admin
    )
    assert r.status_code == 200
    await drain(engine, hook_settings, lambda: len(receiver.seen) >= 3)
    updated = verifier.verify(receiver.seen[2][1], receiver.seen[2][0])
    assert updated["type"] == "case.updated"
    assert updated["data"]["status"] == "acknowledged"
    deliveries = (
        await hook_client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=hook_admin)
    ).json()
    assert [d["status"] for d in deliveries["items"]] == ["delivered"] * 3
    assert all(
        len(d["attempts"]) == 1 and d["attempts"][0]["status_code"] == 200
        for d in deliveries["items"]
    )


async def test_a_receiver_that_is_down_gets_the_event_later_with_the_same_id(
    hook_client: httpx.AsyncClient,
    hook_admin: dict[str, str],
    engine: AsyncEngine,
    hook_settings: Settings,
) -> None:
    await standard_setup(hook_client, hook_admin)
    late = Receiver(port=free_port())  # nothing listens yet: connections are refused
    hook = await subscribe(hook_client, hook_admin, late.url)
    await post(hook_client, hook_admin, external_id="a")
    url = f"/v1/webhooks/{hook['id']}/deliveries"

    async def attempts() -> list[Any]:
        items = (await hook_client.get(url, headers=hook_admin)).json()["items"]
        return items[0]["attempts"]

    async with httpx.AsyncClient() as client:
        for _ in range(3):
            await worker.deliver_due(engine, client, hook_settings)
            await asyncio.sleep(0.05)
    tried = await attempts()
    assert len(tried) >= 2
    assert all(a["status_code"] is None and a["error"] for a in tried)
    # The waits follow the scaled schedule: 5 s x scale after the first failure.
    first, second = (datetime.fromisoformat(a["at"]) for a in tried[:2])
    assert second - first >= timedelta(seconds=worker.SCHEDULE[0] * SCALE)
    await late.start()
    try:
        await drain(engine, hook_settings, lambda: len(late.seen) >= 1)
        items = (await hook_client.get(url, headers=hook_admin)).json()["items"]
        assert items[0]["status"] == "delivered"
        assert late.seen[0][0]["webhook-id"] == items[0]["msg_id"]
    finally:
        await late.stop()


async def test_failing_until_the_last_attempt_is_failed_then_retried_by_hand(
    hook_client: httpx.AsyncClient,
    hook_admin: dict[str, str],
    receiver: Receiver,
    engine: AsyncEngine,
    hook_settings: Settings,
) -> None:
    await standard_setup(hook_client, hook_admin)
    receiver.statuses = [500] * worker.ATTEMPTS + [204]
    hook = await subscribe(hook_client, hook_admin, receiver.url)
    await post(hook_client, hook_admin, external_id="a")
    url = f"/v1/webhooks/{hook['id']}/deliveries"

    async def failed() -> list[Any]:
        return (await hook_client.get(f"{url}?status=failed", headers=hook_admin)).json()["items"]

    async with httpx.AsyncClient() as client:
        deadline = asyncio.get_running_loop().time() + 20
        while not await failed():
            assert asyncio.get_running_loop().time() < deadline
            await worker.deliver_due(engine, client, hook_settings)
            await asyncio.sleep(0.02)
    (delivery,) = await failed()
    assert len(delivery["attempts"]) == worker.ATTEMPTS == 8
    assert [a["status_code"] for a in delivery["attempts"]] == [500] * 8
    assert delivery["next_attempt_at"] is None
    assert len({h["webhook-id"] for h, _ in receiver.seen}) == 1
    assert (await hook_client.get(f"{url}?status=pending", headers=hook_admin)).json()[
        "items"
    ] == []
    r = await hook_client.post(f"{url}/{delivery['id']}/retry", headers=hook_admin)
    assert r.status_code == 200
    assert r.json()["status"] == "pending"
    await drain(engine, hook_settings, lambda: len(receiver.seen) > worker.ATTEMPTS)
    (done,) = (await hook_client.get(f"{url}?status=delivered", headers=hook_admin)).json()["items"]
    assert done["msg_id"] == delivery["msg_id"]
    assert receiver.seen[-1][0]["webhook-id"] == delivery["msg_id"]
    for bad in ("999", "x"):
        assert (await hook_client.post(f"{url}/{bad}/retry", headers=hook_admin)).status_code == 404


async def test_a_410_disables_the_webhook_until_it_is_enabled_again(
    hook_client: httpx.AsyncClient,
    hook_admin: dict[str, str],
    receiver: Receiver,
    engine: AsyncEngine,
    hook_settings: Settings,
) -> None:
    await standard_setup(hook_client, hook_admin)
    receiver.statuses = [410, 200]
    hook = await subscribe(hook_client, hook_admin, receiver.url)
    await post(hook_client, hook_admin, external_id="a")
    await drain(engine, hook_settings, lambda: len(receiver.seen) >= 1)
    got = (await hook_client.get(f"/v1/webhooks/{hook['id']}", headers=hook_admin)).json()
    assert got["enabled"] is False
    assert "410" in got["disabled_reason"]
    await post(hook_client, hook_admin, external_id="b")  # not queued: the webhook is disabled
    async with httpx.AsyncClient() as client:
        assert await worker.deliver_due(engine, client, hook_settings) == 0
    r = await hook_client.patch(
        f"/v1/webhooks/{hook['id']}", json={"enabled": True}, headers=hook_admin
    )
    assert r.json()["enabled"] is True
    await post(hook_client, hook_admin, external_id="c")
    await drain(engine, hook_settings, lambda: len(receiver.seen) >= 2)
    assert (
        json.loads(receiver.seen[1][1])["data"]["id"]
        != json.loads(receiver.seen[0][1])["data"]["id"]
    )


async def test_org_limited_webhooks_see_only_their_subtree(
    hook_client: httpx.AsyncClient,
    hook_admin: dict[str, str],
    receiver: Receiver,
    engine: AsyncEngine,
    hook_settings: Settings,
) -> None:
    await standard_setup(hook_client, hook_admin)
    await subscribe(
        hook_client, hook_admin, receiver.url, "response.created", "evaluation.closed", org="US"
    )
    await post(hook_client, hook_admin, external_id="kr", org="KR-DELIVERY-SEOUL")
    us = await post(hook_client, hook_admin, external_id="us", org="US-SERVICE")
    r = await hook_client.post("/v1/evaluations/2026/close", json={}, headers=hook_admin)
    assert r.status_code == 200, r.text
    await drain(engine, hook_settings, lambda: len(receiver.seen) >= 1)
    async with httpx.AsyncClient() as client:
        await worker.deliver_due(engine, client, hook_settings)
    assert [json.loads(b)["data"]["id"] for _, b in receiver.seen] == [us["id"]]


async def test_an_unlimited_webhook_hears_of_closed_evaluations(
    hook_client: httpx.AsyncClient,
    hook_admin: dict[str, str],
    receiver: Receiver,
    engine: AsyncEngine,
    hook_settings: Settings,
) -> None:
    await standard_setup(hook_client, hook_admin)
    await subscribe(hook_client, hook_admin, receiver.url, "evaluation.closed")
    r = await hook_client.post("/v1/evaluations/2026/close", json={}, headers=hook_admin)
    assert r.status_code == 200, r.text
    await drain(engine, hook_settings, lambda: len(receiver.seen) >= 1)
    payload = json.loads(receiver.seen[0][1])
    assert payload["type"] == "evaluation.closed"
    assert payload["data"]["period"] == "2026"


async def test_erasing_a_response_drops_its_undelivered_events(
    hook_client: httpx.AsyncClient,
    hook_admin: dict[str, str],
    receiver: Receiver,
    engine: AsyncEngine,
    hook_settings: Settings,
) -> None:
    await standard_setup(hook_client, hook_admin)
    hook = await subscribe(hook_client, hook_admin, receiver.url)
    response = await post(hook_client, hook_admin, external_id="a")
    assert (
        await hook_client.delete(f"/v1/responses/{response['id']}", headers=hook_admin)
    ).status_code == 204
    async with httpx.AsyncClient() as client:
        assert await worker.deliver_due(engine, client, hook_settings) == 0
    items = (
        await hook_client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=hook_admin)
    ).json()
    assert items["items"] == []
    assert receiver.seen == []


async def test_a_rotated_secret_signs_beside_the_old_one(
    hook_client: httpx.AsyncClient,
    hook_admin: dict[str, str],
    receiver: Receiver,
    engine: AsyncEngine,
    hook_settings: Settings,
) -> None:
    await standard_setup(hook_client, hook_admin)
    hook = await subscribe(hook_client, hook_admin, receiver.url)
    r = await hook_client.post(f"/v1/webhooks/{hook['id']}/rotate-secret", headers=hook_admin)
    assert r.status_code == 200
    rotated = r.json()
    assert rotated["secret"] != hook["secret"]
    await post(hook_client, hook_admin, external_id="a")
    await drain(engine, hook_settings, lambda: len(receiver.seen) >= 1)
    headers, body = receiver.seen[0]
    assert len(headers["webhook-signature"].split(" ")) == 2
    Verifier(hook["secret"]).verify(body, headers)
    Verifier(rotated["secret"]).verify(body, headers)


async def test_four_hundred_concurrent_responses_make_four_hundred_deliveries(
    hook_client: httpx.AsyncClient,
    hook_admin: dict[str, str],
    receiver: Receiver,
    engine: AsyncEngine,
    hook_settings: Settings,
) -> None:
    await standard_setup(hook_client, hook_admin)
    await subscribe(hook_client, hook_admin, receiver.url)
    gate = asyncio.Semaphore(40)

    async def one(i: int) -> None:
        async with gate:
            await post(hook_client, hook_admin, external_id=f"c-{i}")

    # Two workers (as two processes would) race for the deliveries while they are written.
    stop = asyncio.Event()

    async def race() -> None:
        async with httpx.AsyncClient() as client:
            while not stop.is_set():
                if not await worker.deliver_due(engine, client, hook_settings):
                    await asyncio.sleep(0.01)

    racers = [asyncio.create_task(race()) for _ in range(2)]
    await asyncio.gather(*(one(i) for i in range(400)))
    await drain(
        engine, hook_settings, lambda: len({h["webhook-id"] for h, _ in receiver.seen}) >= 400, 60
    )
    stop.set()
    await asyncio.gather(*racers)
    ids = Counter(h["webhook-id"] for h, _ in receiver.seen)
    responses = {json.loads(b)["data"]["id"] for _, b in receiver.seen}
    assert len(ids) == 400
    assert len(responses) == 400
    # At-least-once: a delivery is sent again only after a lost outcome; none was lost here.
    assert sum(ids.values()) == 400, ids.most_common(3)


async def test_bad_urls_and_events_are_refused(
    hook_client: httpx.AsyncClient,
    hook_admin: dict[str, str],
    hook_app: Any,
    settings: Settings,
) -> None:
    await standard_setup(hook_client, hook_admin)
    for body, loc in (
        ({"url": "ftp://example.com/x", "events": ["case.opened"]}, ["body", "url"]),
        ({"url": "not a url", "events": ["case.opened"]}, ["body", "url"]),
        ({"url": "https://u:p@example.com/x", "events": ["case.opened"]}, ["body", "url"]),
        ({"url": "https://example.com/x", "events": ["case.nope"]}, ["body", "events", 0]),
        ({"url": "https://example.com/x", "events": []}, ["body", "events"]),
        (
            {"url": "http://127.0.0.1:9/x", "events": ["case.opened"], "org": "NOPE"},
            ["body", "org"],
        ),
    ):
        r = await hook_client.post("/v1/webhooks", json=body, headers=hook_admin)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["errors"][0]["loc"] == loc, (body, r.json())
    # Without the settings: http and private addresses are refused, at creation...
    strict = settings.model_copy(update={"webhook_poll_seconds": 0})
    hook_app.state.settings = strict
    for url in ("http://203.0.113.5/x", "https://127.0.0.1/x", "https://10.1.2.3/x",
                "https://169.254.169.254/latest", "https://[::1]/x", "https://[::ffff:127.0.0.1]/x",
                "https://localhost/x"):  # fmt: skip
        r = await hook_client.post(
            "/v1/webhooks", json={"url": url, "events": ["case.opened"]}, headers=hook_admin
        )
        assert r.status_code == 422, (url, r.text)
        assert r.json()["errors"][0]["loc"] == ["body", "url"]
    assert (await hook_client.get("/v1/webhooks", headers=hook_admin)).json()["items"] == []
    for bad in ("999", "x"):
        assert (await hook_client.get(f"/v1/webhooks/{bad}", headers=hook_admin)).status_code == 404
        assert (
            await hook_client.delete(f"/v1/webhooks/{bad}", headers=hook_admin)
        ).status_code == 404


async def test_a_private_address_is_refused_at_send_time_too(
    hook_client: httpx.AsyncClient,
    hook_admin: dict[str, str],
    receiver: Receiver,
    engine: AsyncEngine,
    hook_settings: Settings,
) -> None:
    await standard_setup(hook_client, hook_admin)
    hook = await subscribe(hook_client, hook_admin, receiver.url)  # allowed when created
    await post(hook_client, hook_admin, external_id="a")
    strict = hook_settings.model_copy(update={"webhook_allow_private": False})
    async with httpx.AsyncClient() as client:
        assert await worker.deliver_due(engine, client, strict) == 1
    assert receiver.seen == []
    (delivery,) = (
        await hook_client.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=hook_admin)
    ).json()["items"]
    assert delivery["status"] == "pending"
    assert "non-public" in delivery["attempts"][0]["error"]


async def test_receivers_that_hang_redirect_or_babble_block_nothing(
    hook_client: httpx.AsyncClient,
    hook_admin: dict[str, str],
    engine: AsyncEngine,
    hook_settings: Settings,
    monkeypatch: Any,
) -> None:
    from app.webhooks import sender

    monkeypatch.setattr(sender, "TIMEOUT_SECONDS", 0.3)
    await standard_setup(hook_client, hook_admin)
    target = Receiver(port=free_port())
    hanging = Receiver(port=free_port(), delay=5)
    redirecting = Receiver(
        port=free_port(), statuses=[302], answer_headers=[(b"location", target.url.encode())]
    )
    babbling = Receiver(port=free_port(), statuses=[299])  # a 2xx nobody defined: success
    for r in (target, hanging, redirecting, babbling):
        await r.start()
    try:
        for r in (hanging, redirecting, babbling):
            await subscribe(hook_client, hook_admin, r.url)
        await post(hook_client, hook_admin, external_id="a")
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with httpx.AsyncClient() as client:
            assert await worker.deliver_due(engine, client, hook_settings) == 3
        assert loop.time() - started < 3  # the hanging one was cut, the others did not wait
        assert target.seen == []  # the redirect was not followed
        hooks = (await hook_client.get("/v1/webhooks", headers=hook_admin)).json()["items"]
        by_url = {}
        for hook in hooks:
            listed = await hook_client.get(
                f"/v1/webhooks/{hook['id']}/deliveries", headers=hook_admin
            )
            by_url[hook["url"]] = listed.json()["items"][0]
        assert by_url[hanging.url]["status"] == "pending"
        assert by_url[hanging.url]["attempts"][0]["error"]
        assert by_url[redirecting.url]["status"] == "pending"
        assert by_url[redirecting.url]["attempts"][0]["status_code"] == 302
        assert by_url[babbling.url]["status"] == "delivered"
        # The service answers all along.
        assert (await hook_client.get("/v1/stages", headers=hook_admin)).status_code == 200
    finally:
        hanging.server.force_exit = True  # type: ignore[union-attr]  # not waiting for it
        for r in (target, hanging, redirecting, babbling):
            await r.stop()
