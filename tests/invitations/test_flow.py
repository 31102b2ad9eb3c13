"""Invitations through HTTP on real PostgreSQL: create and replay, the public render, submit and
opt-out, cancel, expiry on a controlled clock, bad input, org-bound keys, erasure."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.responses.prepare import pseudonymize
from tests.conftest import TEST_PSEUDONYM_KEY
from tests.factories import response_body
from tests.invitations.conftest import NOW, URL_TEMPLATE, Clock, invitation_body, issue

PUBLIC = "/v1/public/invitations"


async def invite(
    client: httpx.AsyncClient, headers: dict[str, str], **overrides: Any
) -> httpx.Response:
    return await client.post("/v1/invitations", json=invitation_body(**overrides), headers=headers)


async def rows(connection: AsyncConnection, sql: str, **params: Any) -> list[Any]:
    return list((await connection.execute(text(sql), params)).all())


async def test_an_invitation_is_created_with_a_token_and_replayed_unchanged(
    inv_client: httpx.AsyncClient, inv_admin: dict[str, str], connection: AsyncConnection
) -> None:
    r = await invite(inv_client, inv_admin, segments={"tier": "gold"})
    assert r.status_code == 201, r.text
    created = r.json()
    assert r.headers["location"] == f"/v1/invitations/{created['id']}"
    assert r.headers["cache-control"] == "no-store"
    assert created["status"] == "pending"
    assert created["reason"] is None
    assert created["survey"] == "delivery-csat"
    assert created["survey_version"] == 1
    assert created["org"] == "KR-DELIVERY-SEOUL"
    assert created["customer"] == {"type": "end_user"}
    assert created["segments"] == {"tier": "gold"}
    assert created["expires_at"] == (NOW + timedelta(days=14)).isoformat().replace("+00:00", "Z")
    token = created["token"]
    assert len(token) == 32
    assert created["url"] == URL_TEMPLATE.replace("{token}", token)

    # Again: 200, the same invitation and token; expires_at, channel and segments are ignored.
    again = await invite(
        inv_client,
        inv_admin,
        channel="web",
        segments={"tier": "silver"},
        expires_at="2026-12-20T00:00:00Z",
    )
    assert again.status_code == 200, again.text
    assert again.json() == created

    # Read back: never the token. The customer ref is nowhere; its pseudonym is stored.
    got = await inv_client.get(f"/v1/invitations/{created['id']}", headers=inv_admin)
    assert got.status_code == 200
    assert "token" not in got.json()
    assert "url" not in got.json()
    assert "customer-42" not in got.text
    (stored,) = await rows(connection, "SELECT customer_pseudonym, salt FROM invitations")
    assert bytes(stored.customer_pseudonym) == pseudonymize(TEST_PSEUDONYM_KEY, "customer-42")
    # No column holds the token or anything it starts with.
    dump = await rows(connection, "SELECT row_to_json(i)::text AS j FROM invitations i")
    assert token not in dump[0].j


async def test_a_repeat_naming_another_survey_org_or_customer_is_409(
    inv_client: httpx.AsyncClient, inv_admin: dict[str, str]
) -> None:
    assert (await invite(inv_client, inv_admin)).status_code == 201
    other_survey = {
        "code": "purchase-nps",
        "title": "Purchase",
        "stage": "purchase",
        "primary": "nps",
        "questions": [{"key": "nps", "type": "nps", "prompt": "Recommend us?"}],
    }
    assert (
        await inv_client.post("/v1/surveys", json=other_survey, headers=inv_admin)
    ).status_code == 201
    for change in (
        {"survey": "purchase-nps"},
        {"org": "KR-DELIVERY-BUSAN"},
        {"customer": {"ref": "customer-43", "type": "end_user"}},
        {"customer": {"ref": "customer-42", "type": "business_partner"}},
    ):
        r = await invite(inv_client, inv_admin, **change)
        assert r.status_code == 409, (change, r.text)
        assert r.json()["type"].endswith("/invitation-conflict")


async def test_a_key_that_names_a_response_or_an_erased_one_is_409(
    inv_client: httpx.AsyncClient, inv_admin: dict[str, str]
) -> None:
    posted = await inv_client.post(
        "/v1/responses", json=response_body(external_id="order-9"), headers=inv_admin
    )
    assert posted.status_code == 201
    r = await invite(inv_client, inv_admin, external_id="order-9")
    assert r.status_code == 409
    assert r.json()["type"].endswith("/invitation-conflict")
    erased = await inv_client.delete(f"/v1/responses/{posted.json()['id']}", headers=inv_admin)
    assert erased.status_code == 204
    r = await invite(inv_client, inv_admin, external_id="order-9")
    assert r.status_code == 409


async def test_bad_input_is_a_clear_422_and_stores_nothing(
    inv_client: httpx.AsyncClient, inv_admin: dict[str, str], connection: AsyncConnection
) -> None:
    cases: list[tuple[dict[str, Any], list[Any]]] = [
        ({"survey": "nope"}, ["body", "survey"]),
        ({"org": "NOPE"}, ["body", "org"]),
        ({"customer": {"type": "end_user"}}, ["body", "customer", "ref"]),
        ({"expires_at": NOW.isoformat()}, ["body", "expires_at"]),
        ({"expires_at": (NOW + timedelta(days=90, seconds=1)).isoformat()}, ["body", "expires_at"]),
        ({"expires_at": "2026-12-20T00:00:00"}, ["body", "expires_at"]),
        ({"occurred_at": (NOW + timedelta(days=2)).isoformat()}, ["body", "occurred_at"]),
        ({"segments": {f"k{i}": "v" for i in range(9)}}, ["body", "segments"]),
        ({"segments": {"bad key": "v"}}, ["body", "segments"]),
        ({"segments": {"tier": "x" * 65}}, ["body", "segments", "tier"]),
        ({"external_id": ""}, ["body", "external_id"]),
        ({"surprise": 1}, ["body", "surprise"]),
    ]
    for change, loc in cases:
        r = await invite(inv_client, inv_admin, **change)
        assert r.status_code == 422, (change, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["errors"][0]["loc"] == loc, (change, r.json())
    ok = await invite(
        inv_client, inv_admin, expires_at=(NOW + timedelta(days=90)).isoformat(), external_id="x"
    )
    assert ok.status_code == 201, ok.text
    assert len(await rows(connection, "SELECT id FROM invitations")) == 1


async def test_the_public_flow_renders_answers_once_and_counts_at_once(
    inv_client: httpx.AsyncClient, inv_admin: dict[str, str], connection: AsyncConnection
) -> None:
    created = (await invite(inv_client, inv_admin)).json()
    token = created["token"]
    shown = await inv_client.get(f"{PUBLIC}/{token}")
    assert shown.status_code == 200, shown.text
    assert shown.headers["cache-control"] == "no-store"
    page = shown.json()
    assert page["status"] == "pending"
    assert page["org"] == {"name": "Org KR-DELIVERY-SEOUL"}
    assert page["survey"]["code"] == "delivery-csat"
    assert page["survey"]["version"] == 1
    assert page["survey"]["title"] == "Delivery satisfaction"
    assert [q["key"] for q in page["survey"]["questions"]] == ["overall", "reason", "comment"]
    # Nothing of the customer, no org code (the name, "Org KR-DELIVERY-SEOUL", is the org's).
    for secret in ("customer-42", '"KR-DELIVERY-SEOUL"', '"KR"', "order-1", "delivery-app"):
        assert secret not in shown.text
    assert "end_user" not in shown.text

    before = (
        await inv_client.get("/v1/orgs/HQ/index?period=2026-11&min_n=5", headers=inv_admin)
    ).json()
    answered = await inv_client.post(
        f"{PUBLIC}/{token}/response", json={"answers": {"overall": 2, "reason": "late"}}
    )
    assert answered.status_code == 201, answered.text
    assert answered.json() == {"status": "answered"}
    after = (
        await inv_client.get("/v1/orgs/HQ/index?period=2026-11&min_n=5", headers=inv_admin)
    ).json()
    assert after["n"] == before["n"] + 1

    # Stored exactly as POST /v1/responses would store it.
    listed = await inv_client.get("/v1/responses?org=KR-DELIVERY-SEOUL", headers=inv_admin)
    (response,) = listed.json()["items"]
    assert response["survey"] == "delivery-csat"
    assert response["survey_version"] == 1
    assert response["source"] == "delivery-app"
    assert response["external_id"] == "order-1/delivery"
    assert response["channel"] == "mobile"
    assert response["customer"] == {"type": "end_user"}
    assert response["occurred_at"] == "2026-11-30T01:00:00Z"
    assert response["answers"] == {"overall": 2, "reason": "late"}
    assert response["score"] == {"raw": 2, "normalized": 25.0}
    (row,) = await rows(connection, "SELECT customer_pseudonym FROM responses")
    assert bytes(row.customer_pseudonym) == pseudonymize(TEST_PSEUDONYM_KEY, "customer-42")
    # The same post by the touchpoint is now a duplicate of it (same content, same pseudonym).
    replay = response_body(
        external_id="order-1/delivery",
        occurred_at="2026-11-30T10:00:00+09:00",
        answers={"overall": 2, "reason": "late"},
    )
    dup = await inv_client.post("/v1/responses", json=replay, headers=inv_admin)
    assert dup.status_code == 200, dup.text
    assert dup.json()["id"] == response["id"]

    again = await inv_client.post(f"{PUBLIC}/{token}/response", json={"answers": {"overall": 5}})
    assert again.status_code == 409
    assert again.json()["type"].endswith("/invitation-answered")
    assert (await inv_client.get(f"{PUBLIC}/{token}")).json()["status"] == "answered"
    got = await inv_client.get(f"/v1/invitations/{created['id']}", headers=inv_admin)
    assert got.json()["status"] == "answered"
    assert got.json()["answered_at"] is not None
    assert len(await rows(connection, "SELECT id FROM responses")) == 1


async def test_a_response_posted_by_a_server_under_the_key_answers_the_invitation(
    inv_client: httpx.AsyncClient, inv_admin: dict[str, str]
) -> None:
    created = (await invite(inv_client, inv_admin)).json()
    body = response_body(external_id="order-1/delivery")
    assert (await inv_client.post("/v1/responses", json=body, headers=inv_admin)).status_code == 201
    got = await inv_client.get(f"/v1/invitations/{created['id']}", headers=inv_admin)
    assert got.json()["status"] == "answered"
    r = await inv_client.post(
        f"{PUBLIC}/{created['token']}/response", json={"answers": {"overall": 3}}
    )
    assert r.status_code == 409


async def test_answers_off_the_survey_are_422_at_the_field_and_store_nothing(
    inv_client: httpx.AsyncClient, inv_admin: dict[str, str], connection: AsyncConnection
) -> None:
    token = (await invite(inv_client, inv_admin)).json()["token"]
    url = f"{PUBLIC}/{token}/response"
    cases: list[tuple[Any, list[Any]]] = [
        ({"answers": {"overall": 6}}, ["body", "answers", "overall"]),
        ({"answers": {"overall": 3, "reason": "bored"}}, ["body", "answers", "reason"]),
        ({"answers": {"overall": 3, "extra": 1}}, ["body", "answers", "extra"]),
        ({"answers": {}}, ["body", "answers", "overall"]),
        ({"answers": {"overall": 3}, "org": "US"}, ["body", "org"]),
        ({}, ["body", "answers"]),
    ]
    for body, loc in cases:
        r = await inv_client.post(url, json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["errors"][0]["loc"] == loc, (body, r.json())
    r = await inv_client.post(
        url, content=b'{"answers": ', headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    r = await inv_client.post(url, content=b"answers=1", headers={"content-type": "text/plain"})
    assert r.status_code == 415
    big = {"answers": {"overall": 3, "comment": "x" * (1024 * 1024)}}
    r = await inv_client.post(url, json=big)
    assert r.status_code == 413
    assert await rows(connection, "SELECT id FROM responses") == []
    assert (await inv_client.get(f"{PUBLIC}/{token}")).json()["status"] == "pending"
    assert (await inv_client.post(url, json={"answers": {"overall": 3}})).status_code == 201


async def test_forged_altered_and_foreign_tokens_are_404(
    inv_client: httpx.AsyncClient, inv_admin: dict[str, str]
) -> None:
    token = (await invite(inv_client, inv_admin)).json()["token"]
    other = (await invite(inv_client, inv_admin, external_id="order-2")).json()["token"]
    altered = token[:-1] + ("A" if token[-1] != "A" else "B")
    spliced = token[:16] + other[16:]  # one's MAC with the other's (masked) id
    for bad in (altered, spliced, "A" * 32, token[:31], token + "A", "not-a-token", "%00", "..."):
        for method, path in (("GET", ""), ("POST", "/response"), ("POST", "/opt-out")):
            body = {"answers": {"overall": 3}} if path == "/response" else None
            r = await inv_client.request(method, f"{PUBLIC}/{bad}{path}", json=body)
            assert r.status_code == 404, (bad, path, r.text)
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["detail"] == "No invitation has this token."
    # A key does not help, and the API never takes a key for these routes.
    assert (await inv_client.get(f"{PUBLIC}/{token}", headers=inv_admin)).status_code == 200


async def test_expiry_follows_the_clock_on_every_request(
    inv_client: httpx.AsyncClient, inv_admin: dict[str, str], moment: Clock
) -> None:
    created = (await invite(inv_client, inv_admin, expires_at="2026-12-03T09:00:00Z")).json()
    token = created["token"]
    answered = (
        await invite(
            inv_client, inv_admin, external_id="order-2", expires_at="2026-12-03T09:00:00Z"
        )
    ).json()
    r = await inv_client.post(
        f"{PUBLIC}/{answered['token']}/response", json={"answers": {"overall": 4}}
    )
    assert r.status_code == 201
    moment.advance(days=2, seconds=-1)
    assert (await inv_client.get(f"{PUBLIC}/{token}")).json()["status"] == "pending"
    moment.advance(seconds=1)  # now == expires_at: expired
    shown = await inv_client.get(f"{PUBLIC}/{token}")
    assert shown.status_code == 200
    assert shown.json()["status"] == "expired"
    r = await inv_client.post(f"{PUBLIC}/{token}/response", json={"answers": {"overall": 4}})
    assert r.status_code == 410
    assert r.json()["type"].endswith("/invitation-expired")
    # An answered invitation stays answered after its expiry.
    assert (await inv_client.get(f"{PUBLIC}/{answered['token']}")).json()["status"] == "answered"
    got = await inv_client.get(f"/v1/invitations/{created['id']}", headers=inv_admin)
    assert got.json()["status"] == "expired"
    stats = (
        await inv_client.get("/v1/orgs/HQ/invitations/stats?period=2026-11", headers=inv_admin)
    ).json()
    assert (stats["sent"], stats["answered"], stats["expired"], stats["pending"]) == (2, 1, 1, 0)
    assert stats["response_rate"] == 0.5
    # The clock back: pending again (nothing was swept).
    moment.advance(days=-1)
    assert (await inv_client.get(f"{PUBLIC}/{token}")).json()["status"] == "pending"


async def test_cancel_voids_the_token_and_only_pending_invitations_cancel(
    inv_client: httpx.AsyncClient, inv_admin: dict[str, str], moment: Clock
) -> None:
    first = (await invite(inv_client, inv_admin)).json()
    r = await inv_client.delete(f"/v1/invitations/{first['id']}", headers=inv_admin)
    assert r.status_code == 204
    assert (await inv_client.get(f"{PUBLIC}/{first['token']}")).status_code == 404
    r = await inv_client.post(
        f"{PUBLIC}/{first['token']}/response", json={"answers": {"overall": 1}}
    )
    assert r.status_code == 404
    again = await inv_client.delete(f"/v1/invitations/{first['id']}", headers=inv_admin)
    assert again.status_code == 204
    got = await inv_client.get(f"/v1/invitations/{first['id']}", headers=inv_admin)
    assert got.json()["status"] == "cancelled"

    second = (await invite(inv_client, inv_admin, external_id="order-2")).json()
    await inv_client.post(f"{PUBLIC}/{second['token']}/response", json={"answers": {"overall": 1}})
    r = await inv_client.delete(f"/v1/invitations/{second['id']}", headers=inv_admin)
    assert r.status_code == 409
    assert r.json()["type"].endswith("/invitation-not-pending")
    third = (await invite(inv_client, inv_admin, external_id="order-3")).json()
    moment.advance(days=15)
    assert (
        await inv_client.delete(f"/v1/invitations/{third['id']}", headers=inv_admin)
    ).status_code == 409
    for bad in ("999999", "abc", "1" * 30):
        assert (
            await inv_client.delete(f"/v1/invitations/{bad}", headers=inv_admin)
        ).status_code == 404
        assert (
            await inv_client.get(f"/v1/invitations/{bad}", headers=inv_admin)
        ).status_code == 404


async def test_opt_out_suppresses_later_invitations_and_outlives_erasure(
    inv_client: httpx.AsyncClient, inv_admin: dict[str, str], connection: AsyncConnection
) -> None:
    first = (await invite(inv_client, inv_admin)).json()
    pending = (await invite(inv_client, inv_admin, external_id="order-2")).json()
    r = await inv_client.post(f"{PUBLIC}/{first['token']}/opt-out")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "pending", "opted_out": True}
    assert (await inv_client.post(f"{PUBLIC}/{first['token']}/opt-out")).status_code == 200
    later = await invite(inv_client, inv_admin, external_id="order-3")
    assert later.status_code == 200
    assert later.json()["status"] == "suppressed"
    assert later.json()["reason"] == "opted_out"
    assert later.json()["token"] is None
    assert later.json()["url"] is None
    # Their pending invitations stay answerable.
    r = await inv_client.post(
        f"{PUBLIC}/{pending['token']}/response", json={"answers": {"overall": 5}}
    )
    assert r.status_code == 201
    # Another customer is not affected.
    other = await invite(
        inv_client, inv_admin, external_id="order-4", customer={"ref": "c-7", "type": "end_user"}
    )
    assert other.status_code == 201

    erased = await inv_client.delete("/v1/customers/customer-42/responses", headers=inv_admin)
    assert erased.json() == {"deleted": 1}
    left = await rows(connection, "SELECT external_id FROM invitations ORDER BY external_id")
    assert [r.external_id for r in left] == ["order-4"]
    assert (await inv_client.get(f"{PUBLIC}/{first['token']}")).status_code == 404
    # The opt-out stays: the customer is still not asked.
    after = await invite(inv_client, inv_admin, external_id="order-5")
    assert after.json()["reason"] == "opted_out"


async def test_org_bound_keys_see_and_invite_only_their_subtree(
    inv_client: httpx.AsyncClient, inv_admin: dict[str, str], inv_app: Any
) -> None:
    kr = await issue(inv_app, "invitations:read", "invitations:write", org="KR")
    us = await issue(inv_app, "invitations:read", "invitations:write", org="US")
    created = await invite(inv_client, kr)
    assert created.status_code == 201
    outside = await invite(inv_client, kr, org="US-SERVICE", external_id="o-2")
    assert outside.status_code == 422
    assert outside.json()["errors"][0]["loc"] == ["body", "org"]
    invitation_id = created.json()["id"]
    assert (await inv_client.get(f"/v1/invitations/{invitation_id}", headers=us)).status_code == 404
    assert (
        await inv_client.delete(f"/v1/invitations/{invitation_id}", headers=us)
    ).status_code == 404
    assert (await inv_client.get("/v1/invitations", headers=us)).json()["items"] == []
    assert (await inv_client.get("/v1/invitations?org=KR", headers=us)).status_code == 422
    assert (
        await inv_client.get("/v1/orgs/KR/invitations/stats?period=2026", headers=us)
    ).status_code == 404
    listed = (await inv_client.get("/v1/invitations", headers=kr)).json()["items"]
    assert [i["id"] for i in listed] == [invitation_id]
    # A source-bound key invites for its source only.
    bound = await issue(inv_app, "invitations:write", source="shop")
    r = await invite(inv_client, bound, source=None, external_id="o-3")
    assert r.status_code == 201
    assert r.json()["source"] == "shop"
    r = await invite(inv_client, bound, source="delivery-app", external_id="o-4")
    assert r.status_code == 403
    assert r.json()["type"].endswith("/source-forbidden")
    # Scopes: read cannot write, write cannot read.
    reader = await issue(inv_app, "invitations:read")
    writer = await issue(inv_app, "invitations:write")
    assert (await invite(inv_client, reader, external_id="o-5")).status_code == 403
    assert (await inv_client.get("/v1/invitations", headers=writer)).status_code == 403


async def test_listing_filters_by_status_and_time_and_pages(
    inv_client: httpx.AsyncClient, inv_admin: dict[str, str], moment: Clock
) -> None:
    ids = []
    for i in range(5):
        body = {"external_id": f"o-{i}", "occurred_at": f"2026-11-2{i}T10:00:00Z"}
        ids.append((await invite(inv_client, inv_admin, **body)).json())
    await inv_client.delete(f"/v1/invitations/{ids[0]['id']}", headers=inv_admin)
    await inv_client.post(f"{PUBLIC}/{ids[1]['token']}/response", json={"answers": {"overall": 3}})
    await inv_client.put("/v1/sampling/delivery-app", json={"rate": 0}, headers=inv_admin)
    suppressed = (
        await invite(
            inv_client, inv_admin, external_id="o-9", customer={"ref": "z", "type": "internal"}
        )
    ).json()

    async def listed(query: str) -> list[str]:
        found, cursor = [], None
        while True:
            suffix = f"&cursor={cursor}" if cursor else ""
            r = await inv_client.get(f"/v1/invitations?limit=2&{query}{suffix}", headers=inv_admin)
            assert r.status_code == 200, r.text
            found += [i["id"] for i in r.json()["items"]]
            cursor = r.json()["next_cursor"]
            if cursor is None:
                return found

    assert await listed("") == [i["id"] for i in ids] + [suppressed["id"]]
    assert await listed("status=cancelled") == [ids[0]["id"]]
    assert await listed("status=answered") == [ids[1]["id"]]
    assert await listed("status=pending") == [i["id"] for i in ids[2:]]
    assert await listed("status=suppressed") == [suppressed["id"]]
    assert await listed("from=2026-11-21T10:00:00Z&to=2026-11-23T10:00:00Z") == [
        ids[1]["id"],
        ids[2]["id"],
    ]
    moment.advance(days=15)
    assert await listed("status=expired") == [i["id"] for i in ids[2:]]
    assert await listed("status=pending") == []
    assert (
        await inv_client.get("/v1/invitations?status=lost", headers=inv_admin)
    ).status_code == 422
    assert (await inv_client.get("/v1/invitations?org=NOPE", headers=inv_admin)).status_code == 422
    r = await inv_client.get(
        "/v1/invitations?from=2026-11-23T00:00:00Z&to=2026-11-22T00:00:00Z", headers=inv_admin
    )
    assert r.status_code == 422


async def test_sampling_rules_are_admin_and_decide_by_the_hash(
    inv_client: httpx.AsyncClient, inv_admin: dict[str, str], inv_app: Any
) -> None:
    from tests.invitations.test_tokens import _independent_sample

    r = await inv_client.put("/v1/sampling/delivery-app", json={"rate": 0.3}, headers=inv_admin)
    assert r.status_code == 201
    assert r.json() == {"source": "delivery-app", "rate": 0.3}
    r = await inv_client.put("/v1/sampling/delivery-app", json={"rate": 0.25}, headers=inv_admin)
    assert r.status_code == 200
    assert (await inv_client.get("/v1/sampling/delivery-app", headers=inv_admin)).json()[
        "rate"
    ] == 0.25
    assert (await inv_client.get("/v1/sampling", headers=inv_admin)).json() == {
        "items": [{"source": "delivery-app", "rate": 0.25}]
    }
    outcomes = []
    for i in range(60):
        body = {"external_id": f"sample-{i}", "customer": {"ref": f"c-{i}", "type": "end_user"}}
        r = await invite(inv_client, inv_admin, **body)
        expected = _independent_sample("delivery-app", f"sample-{i}", 0.25)
        assert r.status_code == (201 if expected else 200), r.text
        assert r.json()["reason"] == (None if expected else "sampled_out")
        outcomes.append(expected)
    assert 0 < sum(outcomes) < 60
    # Another source has no rule: all are sent.
    r = await invite(inv_client, inv_admin, source="shop", external_id="s-1")
    assert r.status_code == 201
    assert (
        await inv_client.delete("/v1/sampling/delivery-app", headers=inv_admin)
    ).status_code == 204
    assert (
        await inv_client.delete("/v1/sampling/delivery-app", headers=inv_admin)
    ).status_code == 404
    assert (await inv_client.get("/v1/sampling/delivery-app", headers=inv_admin)).status_code == 404
    for bad in (
        {"rate": 1.5},
        {"rate": -0.1},
        {"rate": "half"},
        {"rate": True},
        {},
        {"rate": 0.5, "x": 1},
    ):
        r = await inv_client.put("/v1/sampling/delivery-app", json=bad, headers=inv_admin)
        assert r.status_code == 422, bad
    r = await inv_client.put("/v1/sampling/bad%20source", json={"rate": 0.5}, headers=inv_admin)
    assert r.status_code == 422
    writer = await issue(inv_app, "invitations:write", "invitations:read")
    assert (await inv_client.get("/v1/sampling", headers=writer)).status_code == 403
    assert (
        await inv_client.put("/v1/sampling/x", json={"rate": 1}, headers=writer)
    ).status_code == 403
    events = (await inv_client.get("/v1/audit?action=sampling.set", headers=inv_admin)).json()
    assert len(events["items"]) == 2


async def test_contact_rules_hold_a_customer_back_globally_and_per_stage(
    inv_client: httpx.AsyncClient, inv_admin: dict[str, str], moment: Clock
) -> None:
    assert (await inv_client.get("/v1/contact-rules", headers=inv_admin)).json() == {
        "min_days": 0,
        "per_stage": {},
    }
    rules = {"min_days": 2, "per_stage": {"delivery": 10}}
    r = await inv_client.put("/v1/contact-rules", json=rules, headers=inv_admin)
    assert r.status_code == 200
    assert r.json() == rules
    assert (await inv_client.get("/v1/contact-rules", headers=inv_admin)).json() == rules
    purchase = {
        "code": "purchase-nps",
        "title": "Purchase",
        "stage": "purchase",
        "primary": "nps",
        "questions": [{"key": "nps", "type": "nps", "prompt": "Recommend us?"}],
    }
    await inv_client.post("/v1/surveys", json=purchase, headers=inv_admin)

    assert (await invite(inv_client, inv_admin, external_id="d-1")).status_code == 201
    moment.advance(days=1)
    blocked = await invite(inv_client, inv_admin, survey="purchase-nps", external_id="p-1")
    assert blocked.json()["reason"] == "contact_rule"
    moment.advance(days=1)  # exactly 2 days of 24 h after the first: the global rule lets it pass
    assert (
        await invite(inv_client, inv_admin, survey="purchase-nps", external_id="p-2")
    ).status_code == 201
    moment.advance(days=3)
    # delivery again 5 days after the first delivery: held back by the stage's 10 days
    assert (await invite(inv_client, inv_admin, external_id="d-2")).json()[
        "reason"
    ] == "contact_rule"
    moment.advance(days=5)
    assert (await invite(inv_client, inv_admin, external_id="d-3")).status_code == 201
    # SuppressedCounts invitations are no contact: another customer's rule history is their own.
    for bad in (
        {"min_days": 366},
        {"min_days": -1},
        {"per_stage": {"nowhere": 1}},
        {"per_stage": {"delivery": 400}},
        {"min_days": 1, "x": 2},
    ):
        r = await inv_client.put("/v1/contact-rules", json=bad, headers=inv_admin)
        assert r.status_code == 422, bad


async def test_rules_apply_in_order_opted_out_then_contact_then_sampling(
    inv_client: httpx.AsyncClient, inv_admin: dict[str, str]
) -> None:
    await inv_client.put("/v1/sampling/delivery-app", json={"rate": 0}, headers=inv_admin)
    await inv_client.put("/v1/contact-rules", json={"min_days": 30}, headers=inv_admin)
    # Sampling alone
    r = await invite(inv_client, inv_admin, external_id="a")
    assert r.json()["reason"] == "sampled_out"
    # A sent invitation (another source, no sampling) makes the contact rule apply first.
    assert (await invite(inv_client, inv_admin, source="shop", external_id="b")).status_code == 201
    assert (await invite(inv_client, inv_admin, external_id="c")).json()["reason"] == "contact_rule"
    token = (await invite(inv_client, inv_admin, source="shop", external_id="b")).json()["token"]
    await inv_client.post(f"{PUBLIC}/{token}/opt-out")
    assert (await invite(inv_client, inv_admin, external_id="d")).json()["reason"] == "opted_out"
    stats = (
        await inv_client.get("/v1/orgs/HQ/invitations/stats?period=2026-11", headers=inv_admin)
    ).json()
    assert stats["created"] == 4
    assert stats["suppressed"] == {"sampled_out": 1, "contact_rule": 1, "opted_out": 1}
    assert stats["sent"] == 1
    assert stats["pending"] == 1
    assert stats["response_rate"] == 0.0
