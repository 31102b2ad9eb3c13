"""The audit log: every privileged change writes exactly one event, with no personal data, and
GET /v1/audit shows them to admins (an org-bound admin: its subtree's only)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.platform.config import Settings
from app.responses.prepare import pseudonymize
from tests.conftest import KeyFactory, bearer
from tests.factories import STANDARD_TREE, create_orgs, cursor_of, response_body, standard_setup
from tests.responses.conftest import assert_invalid_at, assert_problem

REF = "customer-audit-7f3e21"


def today() -> str:
    """The effective date of an undated move: today in the reporting zone (UTC here)."""
    return datetime.now(UTC).date().isoformat()


def key_id(key: str) -> str:
    return key.split("_")[1]


async def events_after(conn: AsyncConnection, last_id: int = 0) -> list[dict[str, Any]]:
    """The stored events with an id above `last_id`, oldest first, with their org's code."""
    rows = await conn.execute(
        text(
            "SELECT a.id, a.actor, a.action, a.target, o.code AS org, a.details, a.request_id"
            " FROM audit_events a LEFT JOIN orgs o ON o.id = a.org_id"
            " WHERE a.id > :last ORDER BY a.id"
        ),
        {"last": last_id},
    )
    return [dict(row._mapping) for row in rows]


async def last_event_id(conn: AsyncConnection) -> int:
    return int(await conn.scalar(text("SELECT coalesce(max(id), 0) FROM audit_events")) or 0)


def brief(events: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(e["actor"], e["action"], e["target"], e["org"], e["details"]) for e in events]


async def test_org_create_update_and_move_are_recorded(
    client: httpx.AsyncClient, admin: dict[str, str], connection: AsyncConnection
) -> None:
    actor = f"key:{key_id(admin['Authorization'].split()[1])}"
    start = await last_event_id(connection)
    await create_orgs(client, admin, ("HQ", None), ("KR", "HQ"), ("US", "HQ"))
    r = await client.post(
        "/v1/orgs",
        json={"code": "KR-SEOUL", "name": "Seoul", "parent": "KR", "kind": "team"},
        headers={**admin, "X-Request-ID": "req-create-1"},
    )
    assert r.status_code == 201, r.text
    events = await events_after(connection, start)
    assert brief(events) == [
        (actor, "org.create", "HQ", "HQ", {"name": "Org HQ", "parent": None, "kind": None}),
        (actor, "org.create", "KR", "KR", {"name": "Org KR", "parent": "HQ", "kind": None}),
        (actor, "org.create", "US", "US", {"name": "Org US", "parent": "HQ", "kind": None}),
        (
            actor,
            "org.create",
            "KR-SEOUL",
            "KR-SEOUL",
            {"name": "Seoul", "parent": "KR", "kind": "team"},
        ),
    ]
    assert events[-1]["request_id"] == "req-create-1"

    start = await last_event_id(connection)
    r = await client.patch("/v1/orgs/KR-SEOUL", json={"name": "Seoul Gangnam"}, headers=admin)
    assert r.status_code == 200, r.text
    r = await client.patch("/v1/orgs/KR-SEOUL", json={"parent": "US", "kind": "hub"}, headers=admin)
    assert r.status_code == 200, r.text
    assert brief(await events_after(connection, start)) == [
        (
            actor,
            "org.update",
            "KR-SEOUL",
            "KR-SEOUL",
            {"name": {"from": "Seoul", "to": "Seoul Gangnam"}},
        ),
        (actor, "org.update", "KR-SEOUL", "KR-SEOUL", {"kind": {"from": "team", "to": "hub"}}),
        (
            actor,
            "org.move",
            "KR-SEOUL",
            "KR-SEOUL",
            {"from": "KR", "to": "US", "effective": today()},
        ),
    ]

    # Changes that change nothing, and refused changes, leave no event.
    start = await last_event_id(connection)
    r = await client.patch(
        "/v1/orgs/KR-SEOUL", json={"parent": "US", "name": "Seoul Gangnam"}, headers=admin
    )
    assert r.status_code == 200, r.text
    assert_problem(await client.patch("/v1/orgs/HQ", json={"parent": "US"}, headers=admin), 409)
    assert_problem(
        await client.post(
            "/v1/orgs", json={"code": "KR", "name": "x", "parent": None}, headers=admin
        ),
        409,
    )
    r = await client.patch("/v1/orgs/KR-SEOUL", json={"parent": None}, headers=admin)
    assert r.status_code == 200, r.text
    assert brief(await events_after(connection, start)) == [
        (
            actor,
            "org.move",
            "KR-SEOUL",
            "KR-SEOUL",
            {"from": "US", "to": None, "effective": today()},
        ),
    ]


async def test_weights_targets_and_surveys_are_recorded(
    client: httpx.AsyncClient, admin: dict[str, str], connection: AsyncConnection
) -> None:
    await standard_setup(client, admin)
    writer = await client_key(client, admin, ["indices:write", "indices:read"], org="KR")
    actor = f"key:{key_id(writer)}"
    h = bearer(writer)
    start = await last_event_id(connection)
    for _ in range(2):  # the second time changes nothing: no event
        assert (
            await client.put(
                "/v1/orgs/KR/stage-weights", json={"delivery": 2, "rental": 0}, headers=h
            )
        ).status_code == 200
    assert (await client.delete("/v1/orgs/KR/stage-weights", headers=h)).status_code == 204
    assert (await client.delete("/v1/orgs/KR/stage-weights", headers=h)).status_code == 204
    for _ in range(2):
        assert (
            await client.put("/v1/orgs/KR/targets/2026-Q3", json={"csi": 80.5}, headers=h)
        ).status_code == 200
    assert (await client.delete("/v1/orgs/KR/targets/2026-Q3", headers=h)).status_code == 204
    assert_problem(await client.delete("/v1/orgs/KR/targets/2026-Q3", headers=h), 404)
    assert brief(await events_after(connection, start)) == [
        (actor, "stage_weights.set", "KR", "KR", {"weights": {"delivery": 2.0, "rental": 0.0}}),
        (actor, "stage_weights.delete", "KR", "KR", {}),
        (actor, "target.set", "KR", "KR", {"period": "2026-Q3", "csi": 80.5}),
        (actor, "target.delete", "KR", "KR", {"period": "2026-Q3"}),
    ]

    admin_actor = f"key:{key_id(admin['Authorization'].split()[1])}"
    start = await last_event_id(connection)
    body = (await client.get("/v1/surveys/delivery-csat", headers=admin)).json()
    publish = {k: body[k] for k in ("code", "title", "stage", "primary", "questions")}
    publish["title"] = "Delivery satisfaction, v2"
    publish["questions"] = [
        {k: v for k, v in q.items() if v is not None} for q in body["questions"]
    ]
    assert (
        await client.put("/v1/surveys/delivery-csat", json=publish, headers=admin)
    ).status_code == 201
    # The same body again publishes nothing: no event.
    assert (
        await client.put("/v1/surveys/delivery-csat", json=publish, headers=admin)
    ).status_code == 200
    assert brief(await events_after(connection, start)) == [
        (admin_actor, "survey.publish", "delivery-csat", None, {"version": 2, "stage": "delivery"}),
    ]
    [created] = [e for e in await events_after(connection) if e["action"] == "survey.create"]
    assert brief([created]) == [
        (admin_actor, "survey.create", "delivery-csat", None, {"version": 1, "stage": "delivery"})
    ]


async def client_key(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    scopes: list[str],
    org: str | None = None,
    source: str | None = None,
) -> str:
    r = await client.post(
        "/v1/keys",
        json={"name": "made-by-api", "scopes": scopes, "org": org, "source": source},
        headers=headers,
    )
    assert r.status_code == 201, r.text
    key: str = r.json()["key"]
    return key


async def test_key_operations_are_recorded_without_secrets(
    client: httpx.AsyncClient, admin: dict[str, str], connection: AsyncConnection
) -> None:
    await create_orgs(client, admin, *STANDARD_TREE)
    actor = f"key:{key_id(admin['Authorization'].split()[1])}"
    start = await last_event_id(connection)
    made = await client_key(client, admin, ["responses:write"], org="KR", source="delivery-app")
    made_id, secret = key_id(made), made.split("_", 2)[2]
    assert (await client.delete(f"/v1/keys/{made_id}", headers=admin)).status_code == 200
    assert (await client.delete(f"/v1/keys/{made_id}", headers=admin)).status_code == 200
    events = await events_after(connection, start)
    assert brief(events) == [
        (
            actor,
            "key.create",
            made_id,
            "KR",
            {
                "name": "made-by-api",
                "scopes": ["responses:write"],
                "org": "KR",
                "source": "delivery-app",
            },
        ),
        (actor, "key.revoke", made_id, "KR", {"name": "made-by-api"}),
    ]
    secret_hash = await connection.scalar(
        text("SELECT secret_hash FROM api_keys WHERE id = :id"), {"id": made_id}
    )
    dump = await table_text(connection)
    for needle in (made, secret, bytes(secret_hash).hex(), base64.b64encode(secret_hash).decode()):
        assert needle not in dump


async def table_text(conn: AsyncConnection) -> str:
    """Every column of every audit row, as text."""
    rows = await conn.execute(text("SELECT to_jsonb(a)::text FROM audit_events a"))
    return "\n".join(row[0] for row in rows)


async def test_erasures_are_recorded_with_counts_only(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    connection: AsyncConnection,
    settings: Settings,
) -> None:
    await standard_setup(client, admin)
    ids = []
    for i, org in enumerate(["KR-DELIVERY-SEOUL", "KR-DELIVERY-BUSAN", "US-SERVICE"]):
        body = response_body(
            external_id=f"audit-{i}", org=org, customer={"ref": REF, "type": "end_user"}
        )
        r = await client.post("/v1/responses", json=body, headers=admin)
        assert r.status_code == 201, r.text
        ids.append(r.json()["id"])
    actor = f"key:{key_id(admin['Authorization'].split()[1])}"
    start = await last_event_id(connection)
    assert (await client.delete(f"/v1/responses/{ids[0]}", headers=admin)).status_code == 204
    assert_problem(await client.delete(f"/v1/responses/{ids[0]}", headers=admin), 404)
    r = await client.delete(f"/v1/customers/{REF}/responses", headers=admin)
    assert r.json() == {"deleted": 2}
    bound = bearer(await client_key(client, admin, ["admin"], org="KR"))
    bound_actor = f"key:{key_id(bound['Authorization'].split()[1])}"
    r = await client.delete(f"/v1/customers/{REF}/responses", headers=bound)
    assert r.json() == {"deleted": 0}
    events = [e for e in await events_after(connection, start) if e["action"] != "key.create"]
    assert brief(events) == [
        (actor, "response.erase", ids[0], "KR-DELIVERY-SEOUL", {"count": 1}),
        (actor, "customer.erase", None, None, {"count": 2}),
        (bound_actor, "customer.erase", None, "KR", {"count": 0}),
    ]
    pseudonym = pseudonymize(settings.pseudonym_key, REF)
    dump = await table_text(connection)
    for needle in (REF, pseudonym.hex(), base64.b64encode(pseudonym).decode()):
        assert needle not in dump


async def test_cli_style_operations_are_recorded_as_cli(
    make_key: KeyFactory, connection: AsyncConnection
) -> None:
    # The fixture issues keys the way `cx-survey keys create` does: without a creator.
    start = await last_event_id(connection)
    key = await make_key("indices:read")
    [event] = await events_after(connection, start)
    assert brief([event]) == [
        (
            "cli",
            "key.create",
            key_id(key),
            None,
            {"name": "test", "scopes": ["indices:read"], "org": None, "source": None},
        )
    ]
    assert event["request_id"] is None


# ---- GET /v1/audit ----------------------------------------------------------------------------


async def read_all(
    client: httpx.AsyncClient, headers: dict[str, str], limit: int = 500, **params: Any
) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {"limit": limit, **params}
        if cursor:
            query["cursor"] = cursor
        r = await client.get("/v1/audit", params=query, headers=headers)
        assert r.status_code == 200, r.text
        assert set(r.json()) == {"items", "next_cursor"}
        items += r.json()["items"]
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return items


async def test_audit_is_for_admins_only(
    client: httpx.AsyncClient, admin: dict[str, str], make_key: KeyFactory
) -> None:
    assert_problem(await client.get("/v1/audit"), 401)
    every_other_scope = [
        "orgs:write",
        "surveys:read",
        "surveys:write",
        "responses:read",
        "responses:write",
        "indices:read",
        "indices:write",
    ]
    other = bearer(await make_key(*every_other_scope))
    assert_problem(await client.get("/v1/audit", headers=other), 403, "forbidden")
    assert (await client.get("/v1/audit", headers=admin)).status_code == 200


async def test_audit_pages_newest_first(
    client: httpx.AsyncClient, admin: dict[str, str], connection: AsyncConnection
) -> None:
    await create_orgs(client, admin, *STANDARD_TREE)
    stored = await events_after(connection)
    everything = await read_all(client, admin)
    assert [e["id"] for e in everything] == [str(e["id"]) for e in reversed(stored)]
    assert set(everything[0]) == {
        "id",
        "at",
        "actor",
        "action",
        "target",
        "org",
        "details",
        "request_id",
    }
    paged = await read_all(client, admin, limit=2)
    assert paged == everything
    first = everything[0]
    assert first["action"] == "org.create"
    assert first["target"] == "US-SERVICE"
    assert first["org"] == "US-SERVICE"
    assert first["details"] == {"name": "Org US-SERVICE", "parent": "US", "kind": None}
    assert datetime.fromisoformat(first["at"]).tzinfo is not None

    r = await client.get("/v1/audit", params={"limit": 3}, headers=admin)
    assert len(r.json()["items"]) == 3
    assert r.json()["next_cursor"]

    only_keys = await read_all(client, admin, action="key.create")
    assert [e["action"] for e in only_keys] == ["key.create"]
    assert await read_all(client, admin, action="target.set") == []

    for bad in ({"action": "org.explode"}, {"limit": 501}, {"limit": 0}):
        assert_invalid_at(
            await client.get("/v1/audit", params=bad, headers=admin), ["query", next(iter(bad))]
        )
    for cursor in (
        "%%%",
        cursor_of({"a": 1}),
        cursor_of(["not a time", 1]),
        cursor_of(["2026-01-01T00:00:00", 1]),
    ):
        r = await client.get("/v1/audit", params={"cursor": cursor}, headers=admin)
        assert_invalid_at(r, ["query", "cursor"])


async def test_audit_time_filters_are_half_open(
    client: httpx.AsyncClient, admin: dict[str, str], connection: AsyncConnection
) -> None:
    for month in (1, 2, 3):
        await connection.execute(
            text(
                "INSERT INTO audit_events (at, actor, action, details)"
                " VALUES (:at, 'cli', 'responses.purge', '{}')"
            ),
            {"at": datetime(2026, month, 1, tzinfo=UTC)},
        )
    params = {"from": "2026-02-01T09:00:00+09:00", "to": "2026-03-01T00:00:00Z"}
    got = await read_all(client, admin, **params)
    assert [e["at"] for e in got] == ["2026-02-01T00:00:00Z"]
    got = await read_all(
        client, admin, **{"from": "2026-01-01T00:00:00Z", "to": "2026-03-01T00:00:00.000001Z"}
    )
    assert len(got) == 3
    got = await read_all(client, admin, **{"to": "2026-02-01T00:00:00Z"})
    assert len(got) == 1
    got = await read_all(client, admin, action="responses.purge", limit=1)
    assert [e["at"][:7] for e in got] == ["2026-03", "2026-02", "2026-01"]

    r = await client.get("/v1/audit", params={"from": "2026-02-01T00:00:00"}, headers=admin)
    assert_invalid_at(r, ["query", "from"])
    r = await client.get(
        "/v1/audit",
        params={"from": "2026-02-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"},
        headers=admin,
    )
    assert_invalid_at(r, ["query", "to"])


async def test_an_org_bound_admin_sees_its_subtree_only(
    client: httpx.AsyncClient, admin: dict[str, str], make_key: KeyFactory
) -> None:
    await standard_setup(client, admin)
    bound = bearer(await make_key("admin", org="KR"))
    # Moved from outside the subtree into it: the former parent is not shown.
    r = await client.patch("/v1/orgs/US-SERVICE", json={"parent": "KR"}, headers=admin)
    assert r.status_code == 200, r.text
    r = await client.put("/v1/orgs/US/targets/2026", json={"csi": 70}, headers=admin)
    assert r.status_code == 200, r.text

    seen = await read_all(client, bound)
    assert {e["org"] for e in seen} == {
        "KR",
        "KR-DELIVERY-SEOUL",
        "KR-DELIVERY-BUSAN",
        "US-SERVICE",
    }
    by_action = {(e["action"], e["target"]): e for e in seen}
    assert by_action["org.create", "KR"]["details"]["parent"] is None  # HQ lies above the key
    assert by_action["org.create", "KR-DELIVERY-SEOUL"]["details"]["parent"] == "KR"
    assert by_action["org.create", "US-SERVICE"]["details"]["parent"] is None
    assert by_action["org.move", "US-SERVICE"]["details"] == {
        "from": None,
        "to": "KR",
        "effective": today(),
    }
    # A key outside the subtree does not exist for this key: its id is not shown.
    unbound_id = admin["Authorization"].split("_")[1]
    assert by_action["org.move", "US-SERVICE"]["actor"] == "key"
    assert unbound_id not in str(seen)
    r = await client.put("/v1/orgs/KR/targets/2026", json={"csi": 75}, headers=bound)
    assert r.status_code == 200, r.text
    newest = (await client.get("/v1/audit", params={"limit": 1}, headers=bound)).json()["items"]
    assert newest[0]["actor"] == f"key:{key_id(bound['Authorization'].split()[1])}"
    assert ("key.create", None) not in {(e["action"], e["org"]) for e in seen}
    assert "survey.create" not in {e["action"] for e in seen}

    everything = await read_all(client, admin)
    unbound_view = {(e["action"], e["target"]): e for e in everything}
    assert unbound_view["org.move", "US-SERVICE"]["details"] == {
        "from": "US",
        "to": "KR",
        "effective": today(),
    }
    assert unbound_view["org.move", "US-SERVICE"]["actor"] == f"key:{unbound_id}"
    assert ("target.set", "US") in unbound_view
    assert "survey.create" in {e["action"] for e in everything}
    assert len(everything) > len(seen)
