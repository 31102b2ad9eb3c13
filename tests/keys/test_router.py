"""Keys over HTTP (admin): issue once, list without secrets, revoke; org-bound admins."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.keys.scopes import Scope
from tests.conftest import KeyFactory, bearer
from tests.factories import standard_setup

KEY_RE = re.compile(r"^cx_([0-9a-f]{12})_(\S+)$")
PROBLEM = "application/problem+json"


def split_key(key: str) -> tuple[str, str]:
    match = KEY_RE.match(key)
    assert match is not None, key
    return match.group(1), match.group(2)


async def issue(client: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    body.setdefault("name", "touchpoint")
    body.setdefault("scopes", ["responses:write"])
    r = await client.post("/v1/keys", json=body, headers=headers)
    assert r.status_code == 201, r.text
    issued: dict[str, Any] = r.json()
    return issued


def assert_problem(r: httpx.Response, status: int, slug: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    body = r.json()
    assert body["status"] == status
    assert body["type"].endswith("/" + slug)
    assert body["title"]
    assert body["detail"]


async def test_create_returns_the_whole_key_once(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    await standard_setup(client, admin)
    r = await client.post(
        "/v1/keys",
        json={
            "name": "delivery app",
            "scopes": ["responses:write", "indices:read", "responses:write"],
            "org": "KR",
            "source": "delivery-app",
        },
        headers=admin,
    )
    assert r.status_code == 201, r.text
    body = r.json()
    key_id, secret = split_key(body["key"])
    assert body["id"] == key_id
    assert len(secret) >= 40  # 256 random bits, url-safe base64
    assert body["name"] == "delivery app"
    assert body["scopes"] == ["indices:read", "responses:write"]
    assert body["org"] == "KR"
    assert body["source"] == "delivery-app"
    assert body["created_at"]
    assert body["revoked_at"] is None

    # The new key works, with exactly its binding: it sees KR, not HQ.
    assert (await client.get("/v1/orgs/KR", headers=bearer(body["key"]))).status_code == 200
    assert (await client.get("/v1/orgs/HQ", headers=bearer(body["key"]))).status_code == 404

    # Two keys never share id or secret.
    other = await issue(client, admin)
    assert split_key(other["key"])[0] != key_id
    assert split_key(other["key"])[1] != secret


async def test_only_a_hash_of_the_secret_is_stored(
    client: httpx.AsyncClient, admin: dict[str, str], connection: AsyncConnection
) -> None:
    issued = await issue(client, admin, name="hash-check")
    key_id, secret = split_key(issued["key"])

    row = (
        (await connection.execute(text("SELECT * FROM api_keys WHERE id = :id"), {"id": key_id}))
        .mappings()
        .one()
    )
    assert bytes(row["secret_hash"]) == hashlib.sha256(secret.encode()).digest()
    for column, value in row.items():
        rendered = value.hex() if isinstance(value, bytes | memoryview) else str(value)
        raw = bytes(value) if isinstance(value, bytes | memoryview) else str(value).encode()
        assert secret not in rendered, column
        assert secret.encode() not in raw, column
        assert issued["key"] not in rendered, column

    # No column of any key row holds the secret in any form, whatever it is called.
    dump = await connection.scalar(text("SELECT string_agg(t::text, '|') FROM api_keys t"))
    assert dump is not None
    assert secret not in dump
    assert secret.encode().hex() not in dump


async def test_list_shows_keys_without_secrets(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    await standard_setup(client, admin)
    first = await issue(client, admin, name="web shop", scopes=["surveys:read"])
    second = await issue(
        client, admin, name="rental", scopes=["responses:write"], org="US", source="rental-sys"
    )
    r = await client.get("/v1/keys", headers=admin)
    assert r.status_code == 200, r.text
    items = {item["id"]: item for item in r.json()["items"]}
    assert items[first["id"]] == {k: v for k, v in first.items() if k != "key"}
    assert items[second["id"]]["org"] == "US"
    assert items[second["id"]]["source"] == "rental-sys"
    assert items[second["id"]]["scopes"] == ["responses:write"]
    for item in items.values():
        assert "key" not in item
        assert "secret" not in item
        assert "secret_hash" not in item
    for issued in (first, second):
        assert split_key(issued["key"])[1] not in r.text


async def test_revoke_refuses_the_key_afterwards(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    issued = await issue(client, admin, scopes=["surveys:read"])
    headers = bearer(issued["key"])
    assert (await client.get("/v1/surveys", headers=headers)).status_code == 200

    r = await client.delete(f"/v1/keys/{issued['id']}", headers=admin)
    assert r.status_code == 200, r.text
    revoked = r.json()
    assert revoked["id"] == issued["id"]
    assert revoked["revoked_at"] is not None
    assert "key" not in revoked

    after = await client.get("/v1/surveys", headers=headers)
    assert_problem(after, 401, "unauthenticated")
    assert after.headers["www-authenticate"].startswith("Bearer")

    # The list shows the revocation; revoking again keeps the first time.
    listed = {i["id"]: i for i in (await client.get("/v1/keys", headers=admin)).json()["items"]}
    assert listed[issued["id"]]["revoked_at"] == revoked["revoked_at"]
    again = await client.delete(f"/v1/keys/{issued['id']}", headers=admin)
    assert again.status_code == 200
    assert again.json()["revoked_at"] == revoked["revoked_at"]


async def test_revoke_unknown_id_is_404(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    r = await client.delete("/v1/keys/000000000000", headers=admin)
    assert_problem(r, 404, "not-found")


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"name": "x", "scopes": ["everything"]}, ["body", "scopes", 0]),
        ({"name": "x", "scopes": ["responses:write", "orgs:read"]}, ["body", "scopes", 1]),
        ({"name": "x", "scopes": []}, ["body", "scopes"]),
        ({"name": "x"}, ["body", "scopes"]),
        ({"scopes": ["admin"]}, ["body", "name"]),
        ({"name": "x", "scopes": ["admin"], "org": "NOPE"}, ["body", "org"]),
        ({"name": "x", "scopes": ["admin"], "org": "bad code!"}, ["body", "org"]),
        ({"name": "x", "scopes": ["admin"], "extra": 1}, ["body", "extra"]),
        ({"name": "x", "scopes": ["admin"], "rate": 0}, ["body", "rate"]),
        ({"name": "x", "scopes": ["admin"], "rate": -5}, ["body", "rate"]),
        ({"name": "x", "scopes": ["admin"], "rate": "100"}, ["body", "rate"]),
        ({"name": "x", "scopes": ["admin"], "burst": 0}, ["body", "burst"]),
        ({"name": "x", "scopes": ["admin"], "burst": 1.5}, ["body", "burst"]),
    ],
)
async def test_invalid_key_bodies_are_422_and_create_nothing(
    client: httpx.AsyncClient, admin: dict[str, str], body: dict[str, Any], loc: list[Any]
) -> None:
    before = (await client.get("/v1/keys", headers=admin)).json()["items"]
    r = await client.post("/v1/keys", json=body, headers=admin)
    assert_problem(r, 422, "validation-error")
    assert loc in [e["loc"] for e in r.json()["errors"]]
    assert (await client.get("/v1/keys", headers=admin)).json()["items"] == before


@pytest.mark.parametrize("scope", [s for s in Scope if s is not Scope.admin])
async def test_keys_need_admin(
    client: httpx.AsyncClient, admin: dict[str, str], make_key: KeyFactory, scope: Scope
) -> None:
    victim = await issue(client, admin)
    headers = bearer(await make_key(scope.value))
    for r in (
        await client.post("/v1/keys", json={"name": "mine", "scopes": ["admin"]}, headers=headers),
        await client.get("/v1/keys", headers=headers),
        await client.delete(f"/v1/keys/{victim['id']}", headers=headers),
    ):
        assert_problem(r, 403, "forbidden")
    listed = {i["id"]: i for i in (await client.get("/v1/keys", headers=admin)).json()["items"]}
    assert listed[victim["id"]]["revoked_at"] is None
    assert not [i for i in listed.values() if i["name"] == "mine"]


async def test_org_bound_admin_manages_only_its_subtree(
    client: httpx.AsyncClient, admin: dict[str, str], make_key: KeyFactory
) -> None:
    await standard_setup(client, admin)
    outside_us = await issue(client, admin, name="us", org="US")
    outside_root = await issue(client, admin, name="root")
    inside = await issue(client, admin, name="seoul", org="KR-DELIVERY-SEOUL")
    kr_admin = bearer(await make_key("admin", org="KR"))

    # New keys of a KR admin are bound inside KR: by default to KR itself.
    default = await issue(client, kr_admin, name="kr default")
    assert default["org"] == "KR"
    busan = await issue(client, kr_admin, name="busan", org="KR-DELIVERY-BUSAN")
    assert busan["org"] == "KR-DELIVERY-BUSAN"
    missing = await client.post(
        "/v1/keys", json={"name": "escape", "scopes": ["admin"], "org": "NOPE"}, headers=kr_admin
    )
    assert_problem(missing, 422, "validation-error")
    for code in ("US", "HQ", "US-SERVICE"):
        r = await client.post(
            "/v1/keys", json={"name": "escape", "scopes": ["admin"], "org": code}, headers=kr_admin
        )
        # Exactly as if the org did not exist.
        assert_problem(r, 422, "validation-error")
        assert r.json()["errors"] == [
            {**e, "msg": e["msg"].replace("NOPE", code)} for e in missing.json()["errors"]
        ]

    # It lists only the keys inside its subtree.
    r = await client.get("/v1/keys", headers=kr_admin)
    assert r.status_code == 200, r.text
    listed = {i["id"] for i in r.json()["items"]}
    assert {inside["id"], default["id"], busan["id"]} <= listed
    assert outside_us["id"] not in listed
    assert outside_root["id"] not in listed
    assert all(i["org"].startswith("KR") for i in r.json()["items"])

    # It cannot revoke keys outside (they do not exist for it), but can inside.
    for outside in (outside_us, outside_root):
        assert_problem(
            await client.delete(f"/v1/keys/{outside['id']}", headers=kr_admin), 404, "not-found"
        )
    r = await client.delete(f"/v1/keys/{inside['id']}", headers=kr_admin)
    assert r.status_code == 200, r.text
    assert r.json()["revoked_at"] is not None

    everything = {i["id"]: i for i in (await client.get("/v1/keys", headers=admin)).json()["items"]}
    assert everything[outside_us["id"]]["revoked_at"] is None
    assert everything[outside_root["id"]]["revoked_at"] is None
    assert everything[inside["id"]]["revoked_at"] is not None
