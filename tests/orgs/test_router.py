"""The org tree through HTTP: create, read, list, nest, rename and move, and who may see what."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from tests.conftest import KeyFactory, bearer
from tests.factories import STANDARD_TREE, create_orgs, cursor_of

PROBLEM_BASE = "https://cx-survey.dev/problems/"


def assert_problem(
    r: httpx.Response, status: int, slug: str | None = None, *, loc: list[Any] | None = None
) -> dict[str, Any]:
    """An RFC 9457 problem of this status (and kind); with `loc`, a validation error there."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    assert body["title"]
    assert body["type"].startswith(PROBLEM_BASE)
    if slug is not None:
        assert body["type"] == PROBLEM_BASE + slug
    if loc is not None:
        assert loc in [e["loc"] for e in body["errors"]], body
        assert all(isinstance(e["msg"], str) and e["msg"] for e in body["errors"])
    return body


def org(code: str, parent: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"code": code, "name": f"Org {code}", "parent": parent, **extra}


async def walk(
    client: httpx.AsyncClient, headers: dict[str, str], **params: Any
) -> list[list[str]]:
    """The codes of every page of GET /v1/orgs, following next_cursor to the end."""
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        query = {**params, "cursor": cursor} if cursor else params
        r = await client.get("/v1/orgs", params=query, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        pages.append([item["code"] for item in body["items"]])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 50, "pagination does not end"


@pytest.fixture
async def tree(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    """HQ ─┬─ KR ─┬─ KR-DELIVERY-SEOUL / KR-DELIVERY-BUSAN; └─ US ─── US-SERVICE."""
    await create_orgs(client, admin, *STANDARD_TREE)


# --- create ---------------------------------------------------------------------------------


async def test_create_root_and_child(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    r = await client.post("/v1/orgs", json=org("HQ", kind="group"), headers=admin)
    assert r.status_code == 201, r.text
    assert r.headers["location"] == "/v1/orgs/HQ"
    assert r.json() == {
        "code": "HQ",
        "name": "Org HQ",
        "parent": None,
        "kind": "group",
        "path": ["HQ"],
    }

    r = await client.post("/v1/orgs", json=org("KR", "HQ"), headers=admin)
    assert r.status_code == 201, r.text
    assert r.headers["location"] == "/v1/orgs/KR"
    assert r.json() == {
        "code": "KR",
        "name": "Org KR",
        "parent": "HQ",
        "kind": None,
        "path": ["HQ", "KR"],
    }

    r = await client.get(r.headers["location"], headers=admin)
    assert r.status_code == 200
    assert r.json()["path"] == ["HQ", "KR"]


async def test_parent_may_be_left_out_for_a_root(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    r = await client.post("/v1/orgs", json={"code": "ROOT", "name": "Root"}, headers=admin)
    assert r.status_code == 201, r.text
    assert r.json()["parent"] is None
    assert r.json()["path"] == ["ROOT"]


async def test_several_roots_are_allowed(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    for code in ("HQ", "PARTNERS", "INTERNAL"):
        r = await client.post("/v1/orgs", json=org(code), headers=admin)
        assert r.status_code == 201, r.text
    r = await client.get("/v1/orgs", headers=admin)
    assert r.status_code == 200
    items = r.json()["items"]
    assert [i["code"] for i in items] == ["HQ", "INTERNAL", "PARTNERS"]
    assert all(i["parent"] is None and i["path"] == [i["code"]] for i in items)


async def test_name_is_stripped(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    r = await client.post("/v1/orgs", json={"code": "HQ", "name": "  Head office  "}, headers=admin)
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "Head office"


async def test_duplicate_code_is_409(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    await create_orgs(client, admin, ("HQ", None), ("KR", "HQ"))
    r = await client.post("/v1/orgs", json=org("KR", None), headers=admin)
    body = assert_problem(r, 409, "duplicate-org")
    assert "KR" in body["detail"]
    # Nothing changed: KR is still under HQ with its original name.
    r = await client.get("/v1/orgs/KR", headers=admin)
    assert r.json()["parent"] == "HQ"


async def test_unknown_parent_is_422(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    r = await client.post("/v1/orgs", json=org("KR", "NOPE"), headers=admin)
    body = assert_problem(r, 422, "validation-error", loc=["body", "parent"])
    assert "NOPE" in body["detail"]
    r = await client.get("/v1/orgs/KR", headers=admin)
    assert_problem(r, 404)


@pytest.mark.parametrize(
    ("code", "why"),
    [
        ("-x", "leading dash"),
        (".x", "leading dot"),
        ("_x", "leading underscore"),
        ("a b", "space"),
        ("a/b", "slash"),
        ("ü", "non-ascii"),
        ("", "empty"),
        ("a" * 65, "65 characters"),
        ("x\n", "trailing newline"),
    ],
)
async def test_bad_code_is_422(
    client: httpx.AsyncClient, admin: dict[str, str], code: str, why: str
) -> None:
    r = await client.post("/v1/orgs", json=org(code), headers=admin)
    assert_problem(r, 422, "validation-error", loc=["body", "code"])


async def test_code_edge_cases_are_accepted(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    for code in ("a" * 64, "0", "A.b_c-D", "9-"):
        r = await client.post("/v1/orgs", json=org(code), headers=admin)
        assert r.status_code == 201, (code, r.text)
        assert r.json()["code"] == code


async def test_codes_are_case_sensitive(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    r = await client.post("/v1/orgs", json=org("hq"), headers=admin)
    assert r.status_code == 201, r.text
    r = await client.post("/v1/orgs", json=org("HQ"), headers=admin)
    assert r.status_code == 201, r.text
    r = await client.post("/v1/orgs", json=org("child", "HQ"), headers=admin)
    assert r.status_code == 201, r.text

    assert (await client.get("/v1/orgs/hq", headers=admin)).json()["path"] == ["hq"]
    assert (await client.get("/v1/orgs/child", headers=admin)).json()["path"] == ["HQ", "child"]
    assert_problem(await client.get("/v1/orgs/Hq", headers=admin), 404)
    r = await client.get("/v1/orgs", params={"parent": "hq"}, headers=admin)
    assert r.json()["items"] == []


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"code": "HQ"}, ["body", "name"]),
        ({"code": "HQ", "name": ""}, ["body", "name"]),
        ({"code": "HQ", "name": "   "}, ["body", "name"]),
        ({"code": "HQ", "name": "x" * 201}, ["body", "name"]),
        ({"code": "HQ", "name": None}, ["body", "name"]),
        ({"name": "Head office"}, ["body", "code"]),
        ({"code": "HQ", "name": "H", "colour": "red"}, ["body", "colour"]),
        ({"code": "HQ", "name": "H", "parent": "a b"}, ["body", "parent"]),
        ({"code": "HQ", "name": "H", "kind": ""}, ["body", "kind"]),
        ({"code": "HQ", "name": "H", "kind": "k" * 65}, ["body", "kind"]),
        ({"code": 12, "name": "H"}, ["body", "code"]),
    ],
)
async def test_invalid_create_bodies_are_422(
    client: httpx.AsyncClient, admin: dict[str, str], body: dict[str, Any], loc: list[Any]
) -> None:
    r = await client.post("/v1/orgs", json=body, headers=admin)
    assert_problem(r, 422, "validation-error", loc=loc)
    r = await client.get("/v1/orgs", headers=admin)
    assert r.json()["items"] == []


async def test_malformed_json_is_400(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    r = await client.post(
        "/v1/orgs",
        content=b'{"code": "HQ", ',
        headers={**admin, "Content-Type": "application/json"},
    )
    assert_problem(r, 400, "malformed-request")


async def test_form_body_is_415(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    r = await client.post("/v1/orgs", data={"code": "HQ", "name": "H"}, headers=admin)
    assert_problem(r, 415, "unsupported-media-type")


# --- read -----------------------------------------------------------------------------------


async def test_get_org_with_path(
    client: httpx.AsyncClient, admin: dict[str, str], tree: None
) -> None:
    r = await client.get("/v1/orgs/KR-DELIVERY-SEOUL", headers=admin)
    assert r.status_code == 200
    assert r.json() == {
        "code": "KR-DELIVERY-SEOUL",
        "name": "Org KR-DELIVERY-SEOUL",
        "parent": "KR",
        "kind": None,
        "path": ["HQ", "KR", "KR-DELIVERY-SEOUL"],
    }
    r = await client.get("/v1/orgs/HQ", headers=admin)
    assert r.json()["parent"] is None
    assert r.json()["path"] == ["HQ"]


@pytest.mark.parametrize("code", ["NOPE", "kr", "a%20b", "-x", "%00", "KR%00", "%FF", "x" * 300])
async def test_get_unknown_org_is_404(
    client: httpx.AsyncClient, admin: dict[str, str], tree: None, code: str
) -> None:
    r = await client.get(f"/v1/orgs/{code}", headers=admin)
    assert_problem(r, 404, "not-found")
    r = await client.get(f"/v1/orgs/{code}/subtree", headers=admin)
    assert_problem(r, 404, "not-found")
    r = await client.patch(f"/v1/orgs/{code}", json={"name": "x"}, headers=admin)
    assert_problem(r, 404, "not-found")


async def test_list_all_ordered_by_code(
    client: httpx.AsyncClient, admin: dict[str, str], tree: None
) -> None:
    r = await client.get("/v1/orgs", headers=admin)
    assert r.status_code == 200
    body = r.json()
    assert body["next_cursor"] is None
    assert [i["code"] for i in body["items"]] == sorted(code for code, _ in STANDARD_TREE)
    by_code = {i["code"]: i for i in body["items"]}
    assert by_code["US-SERVICE"]["path"] == ["HQ", "US", "US-SERVICE"]
    assert by_code["KR"]["parent"] == "HQ"


async def test_list_children_of_parent(
    client: httpx.AsyncClient, admin: dict[str, str], tree: None
) -> None:
    r = await client.get("/v1/orgs", params={"parent": "HQ"}, headers=admin)
    assert r.status_code == 200
    assert [i["code"] for i in r.json()["items"]] == ["KR", "US"]
    r = await client.get("/v1/orgs", params={"parent": "KR"}, headers=admin)
    assert [i["code"] for i in r.json()["items"]] == ["KR-DELIVERY-BUSAN", "KR-DELIVERY-SEOUL"]
    r = await client.get("/v1/orgs", params={"parent": "US-SERVICE"}, headers=admin)
    assert r.json() == {"items": [], "next_cursor": None}


@pytest.mark.parametrize("parent", ["NOPE", "hq"])
async def test_list_unknown_parent_is_422(
    client: httpx.AsyncClient, admin: dict[str, str], tree: None, parent: str
) -> None:
    r = await client.get("/v1/orgs", params={"parent": parent}, headers=admin)
    assert_problem(r, 422, "validation-error", loc=["query", "parent"])


async def test_list_is_paginated(
    client: httpx.AsyncClient, admin: dict[str, str], tree: None
) -> None:
    pages = await walk(client, admin, limit=2)
    assert [len(p) for p in pages] == [2, 2, 2]
    assert [c for p in pages for c in p] == sorted(code for code, _ in STANDARD_TREE)

    pages = await walk(client, admin, limit=4)
    assert [len(p) for p in pages] == [4, 2]

    # A page that ends exactly at the last org says so: no cursor to an empty page.
    r = await client.get("/v1/orgs", params={"limit": 6}, headers=admin)
    assert len(r.json()["items"]) == 6
    assert r.json()["next_cursor"] is None


async def test_children_list_is_paginated(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    children = [f"C{i:02d}" for i in range(7)]
    await create_orgs(client, admin, ("HQ", None), *((c, "HQ") for c in children))
    await create_orgs(client, admin, ("OTHER", None), ("C99", "OTHER"))
    pages = await walk(client, admin, parent="HQ", limit=3)
    assert pages == [children[:3], children[3:6], children[6:]]


async def test_pagination_default_limit_is_50(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    await create_orgs(client, admin, *((f"O{i:03d}", None) for i in range(51)))
    r = await client.get("/v1/orgs", headers=admin)
    body = r.json()
    assert len(body["items"]) == 50
    assert body["next_cursor"] is not None
    r = await client.get("/v1/orgs", params={"cursor": body["next_cursor"]}, headers=admin)
    assert [i["code"] for i in r.json()["items"]] == ["O050"]
    assert r.json()["next_cursor"] is None
    r = await client.get("/v1/orgs", params={"limit": 500}, headers=admin)
    assert len(r.json()["items"]) == 51


@pytest.mark.parametrize("limit", ["501", "0", "-1", "ten"])
async def test_bad_limit_is_422(
    client: httpx.AsyncClient, admin: dict[str, str], tree: None, limit: str
) -> None:
    r = await client.get("/v1/orgs", params={"limit": limit}, headers=admin)
    assert_problem(r, 422, "validation-error", loc=["query", "limit"])


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!",
        "%%%",
        "not-base64-at-all",
        cursor_of({"a": 1}),
        cursor_of("KR"),
        cursor_of(["\u0000"]),
        cursor_of(["KR\u0000"]),
        cursor_of([{"code": "KR"}]),
        cursor_of([12]),
        cursor_of(["KR", "US"]),
        "x" * 513,
    ],
)
async def test_garbage_cursor_is_422(
    client: httpx.AsyncClient, admin: dict[str, str], tree: None, cursor: str
) -> None:
    r = await client.get("/v1/orgs", params={"cursor": cursor}, headers=admin)
    assert_problem(r, 422, "validation-error", loc=["query", "cursor"])


async def test_subtree_is_nested(
    client: httpx.AsyncClient, admin: dict[str, str], tree: None
) -> None:
    r = await client.get("/v1/orgs/HQ/subtree", headers=admin)
    assert r.status_code == 200
    assert r.json() == {
        "code": "HQ",
        "name": "Org HQ",
        "kind": None,
        "children": [
            {
                "code": "KR",
                "name": "Org KR",
                "kind": None,
                "children": [
                    {
                        "code": "KR-DELIVERY-BUSAN",
                        "name": "Org KR-DELIVERY-BUSAN",
                        "kind": None,
                        "children": [],
                    },
                    {
                        "code": "KR-DELIVERY-SEOUL",
                        "name": "Org KR-DELIVERY-SEOUL",
                        "kind": None,
                        "children": [],
                    },
                ],
            },
            {
                "code": "US",
                "name": "Org US",
                "kind": None,
                "children": [
                    {"code": "US-SERVICE", "name": "Org US-SERVICE", "kind": None, "children": []}
                ],
            },
        ],
    }
    r = await client.get("/v1/orgs/US-SERVICE/subtree", headers=admin)
    assert r.json() == {
        "code": "US-SERVICE",
        "name": "Org US-SERVICE",
        "kind": None,
        "children": [],
    }


async def test_subtree_of_another_root_is_separate(
    client: httpx.AsyncClient, admin: dict[str, str], tree: None
) -> None:
    await create_orgs(client, admin, ("PARTNERS", None), ("P1", "PARTNERS"))
    r = await client.get("/v1/orgs/PARTNERS/subtree", headers=admin)
    assert r.json()["children"] == [{"code": "P1", "name": "Org P1", "kind": None, "children": []}]
    r = await client.get("/v1/orgs/HQ/subtree", headers=admin)
    assert [c["code"] for c in r.json()["children"]] == ["KR", "US"]


# --- patch ----------------------------------------------------------------------------------


async def test_rename(client: httpx.AsyncClient, admin: dict[str, str], tree: None) -> None:
    r = await client.patch("/v1/orgs/KR", json={"name": "Korea"}, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "code": "KR",
        "name": "Korea",
        "parent": "HQ",
        "kind": None,
        "path": ["HQ", "KR"],
    }
    assert (await client.get("/v1/orgs/KR", headers=admin)).json()["name"] == "Korea"
    # The children did not move.
    r = await client.get("/v1/orgs", params={"parent": "KR"}, headers=admin)
    assert len(r.json()["items"]) == 2


async def test_patch_kind_and_empty_patch(
    client: httpx.AsyncClient, admin: dict[str, str], tree: None
) -> None:
    r = await client.patch("/v1/orgs/KR", json={"kind": "subsidiary"}, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["kind"] == "subsidiary"
    assert r.json()["name"] == "Org KR"
    r = await client.patch("/v1/orgs/KR", json={"kind": None}, headers=admin)
    assert r.json()["kind"] is None
    r = await client.patch("/v1/orgs/KR", json={}, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "code": "KR",
        "name": "Org KR",
        "parent": "HQ",
        "kind": None,
        "path": ["HQ", "KR"],
    }


async def test_move_reparents_the_whole_subtree(
    client: httpx.AsyncClient, admin: dict[str, str], tree: None
) -> None:
    await create_orgs(client, admin, ("SEOUL-TEAM", "KR-DELIVERY-SEOUL"))
    r = await client.patch("/v1/orgs/KR", json={"parent": "US-SERVICE"}, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["parent"] == "US-SERVICE"
    assert r.json()["path"] == ["HQ", "US", "US-SERVICE", "KR"]

    expected = {
        "HQ": ["HQ"],
        "US": ["HQ", "US"],
        "US-SERVICE": ["HQ", "US", "US-SERVICE"],
        "KR": ["HQ", "US", "US-SERVICE", "KR"],
        "KR-DELIVERY-SEOUL": ["HQ", "US", "US-SERVICE", "KR", "KR-DELIVERY-SEOUL"],
        "KR-DELIVERY-BUSAN": ["HQ", "US", "US-SERVICE", "KR", "KR-DELIVERY-BUSAN"],
        "SEOUL-TEAM": ["HQ", "US", "US-SERVICE", "KR", "KR-DELIVERY-SEOUL", "SEOUL-TEAM"],
    }
    r = await client.get("/v1/orgs", headers=admin)
    assert {i["code"]: i["path"] for i in r.json()["items"]} == expected
    for code, path in expected.items():
        r = await client.get(f"/v1/orgs/{code}", headers=admin)
        assert r.json()["path"] == path

    r = await client.get("/v1/orgs", params={"parent": "HQ"}, headers=admin)
    assert [i["code"] for i in r.json()["items"]] == ["US"]
    r = await client.get("/v1/orgs", params={"parent": "US-SERVICE"}, headers=admin)
    assert [i["code"] for i in r.json()["items"]] == ["KR"]
    r = await client.get("/v1/orgs/US/subtree", headers=admin)
    kr = r.json()["children"][0]["children"][0]
    assert kr["code"] == "KR"
    assert [c["code"] for c in kr["children"]] == ["KR-DELIVERY-BUSAN", "KR-DELIVERY-SEOUL"]
    assert kr["children"][1]["children"][0]["code"] == "SEOUL-TEAM"


async def test_move_up_and_to_another_root(
    client: httpx.AsyncClient, admin: dict[str, str], tree: None
) -> None:
    await create_orgs(client, admin, ("PARTNERS", None))
    r = await client.patch("/v1/orgs/US", json={"parent": "PARTNERS"}, headers=admin)
    assert r.status_code == 200, r.text
    r = await client.get("/v1/orgs/US-SERVICE", headers=admin)
    assert r.json()["path"] == ["PARTNERS", "US", "US-SERVICE"]
    r = await client.get("/v1/orgs/HQ/subtree", headers=admin)
    assert [c["code"] for c in r.json()["children"]] == ["KR"]

    # A move up, to its grandparent.
    r = await client.patch("/v1/orgs/KR-DELIVERY-SEOUL", json={"parent": "HQ"}, headers=admin)
    assert r.json()["path"] == ["HQ", "KR-DELIVERY-SEOUL"]


async def test_move_and_rename_together(
    client: httpx.AsyncClient, admin: dict[str, str], tree: None
) -> None:
    r = await client.patch(
        "/v1/orgs/KR-DELIVERY-BUSAN", json={"name": "Busan", "parent": "US"}, headers=admin
    )
    assert r.status_code == 200, r.text
    assert r.json() == {
        "code": "KR-DELIVERY-BUSAN",
        "name": "Busan",
        "parent": "US",
        "kind": None,
        "path": ["HQ", "US", "KR-DELIVERY-BUSAN"],
    }


async def test_move_to_same_parent_changes_nothing(
    client: httpx.AsyncClient, admin: dict[str, str], tree: None
) -> None:
    r = await client.patch("/v1/orgs/KR", json={"parent": "HQ"}, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["path"] == ["HQ", "KR"]
    r = await client.get("/v1/orgs/KR-DELIVERY-SEOUL", headers=admin)
    assert r.json()["path"] == ["HQ", "KR", "KR-DELIVERY-SEOUL"]


async def test_parent_null_makes_a_root(
    client: httpx.AsyncClient, admin: dict[str, str], tree: None
) -> None:
    r = await client.patch("/v1/orgs/KR", json={"parent": None}, headers=admin)
    assert r.status_code == 200, r.text
    assert r.json()["parent"] is None
    assert r.json()["path"] == ["KR"]
    r = await client.get("/v1/orgs/KR-DELIVERY-SEOUL", headers=admin)
    assert r.json()["path"] == ["KR", "KR-DELIVERY-SEOUL"]
    r = await client.get("/v1/orgs/HQ/subtree", headers=admin)
    assert [c["code"] for c in r.json()["children"]] == ["US"]
    # A root moves back under another org, with its subtree.
    r = await client.patch("/v1/orgs/KR", json={"parent": "US"}, headers=admin)
    assert r.json()["path"] == ["HQ", "US", "KR"]
    r = await client.get("/v1/orgs/KR-DELIVERY-BUSAN", headers=admin)
    assert r.json()["path"] == ["HQ", "US", "KR", "KR-DELIVERY-BUSAN"]


async def test_rename_leaves_parent_alone(
    client: httpx.AsyncClient, admin: dict[str, str], tree: None
) -> None:
    r = await client.patch("/v1/orgs/KR-DELIVERY-SEOUL", json={"name": "Seoul"}, headers=admin)
    assert r.json()["parent"] == "KR"


@pytest.mark.parametrize(
    ("code", "parent"),
    [
        ("KR", "KR-DELIVERY-SEOUL"),
        ("HQ", "US-SERVICE"),
        ("HQ", "KR"),
        ("KR", "KR"),
        ("KR-DELIVERY-SEOUL", "KR-DELIVERY-SEOUL"),
    ],
)
async def test_move_under_itself_or_descendant_is_409(
    client: httpx.AsyncClient, admin: dict[str, str], tree: None, code: str, parent: str
) -> None:
    before = (await client.get("/v1/orgs", headers=admin)).json()
    r = await client.patch(f"/v1/orgs/{code}", json={"parent": parent}, headers=admin)
    assert_problem(r, 409, "org-cycle")
    assert (await client.get("/v1/orgs", headers=admin)).json() == before


async def test_failed_move_keeps_the_rename_out(
    client: httpx.AsyncClient, admin: dict[str, str], tree: None
) -> None:
    r = await client.patch(
        "/v1/orgs/KR", json={"name": "Korea", "parent": "KR-DELIVERY-SEOUL"}, headers=admin
    )
    assert_problem(r, 409, "org-cycle")
    assert (await client.get("/v1/orgs/KR", headers=admin)).json()["name"] == "Org KR"


async def test_patch_unknown_parent_is_422(
    client: httpx.AsyncClient, admin: dict[str, str], tree: None
) -> None:
    r = await client.patch("/v1/orgs/KR", json={"parent": "NOPE"}, headers=admin)
    assert_problem(r, 422, "validation-error", loc=["body", "parent"])
    assert (await client.get("/v1/orgs/KR", headers=admin)).json()["path"] == ["HQ", "KR"]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"name": None}, ["body", "name"]),
        ({"name": ""}, ["body", "name"]),
        ({"name": "   "}, ["body", "name"]),
        # The declared maxLength holds for what is sent, before the spaces are stripped.
        ({"name": "a" * 200 + " "}, ["body", "name"]),
        ({"parent": "a b"}, ["body", "parent"]),
        ({"code": "NEW"}, ["body", "code"]),
        ({"colour": "red"}, ["body", "colour"]),
    ],
)
async def test_invalid_patch_is_422(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    tree: None,
    body: dict[str, Any],
    loc: list[Any],
) -> None:
    r = await client.patch("/v1/orgs/KR", json=body, headers=admin)
    assert_problem(r, 422, "validation-error", loc=loc)
    assert (await client.get("/v1/orgs/KR", headers=admin)).json()["name"] == "Org KR"


async def test_patch_unknown_org_is_404(
    client: httpx.AsyncClient, admin: dict[str, str], tree: None
) -> None:
    r = await client.patch("/v1/orgs/NOPE", json={"name": "x"}, headers=admin)
    assert_problem(r, 404, "not-found")


async def test_unsupported_method_is_405(
    client: httpx.AsyncClient, admin: dict[str, str], tree: None
) -> None:
    r = await client.delete("/v1/orgs/KR", headers=admin)
    assert_problem(r, 405)


# --- auth -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url", "body"),
    [
        ("GET", "/v1/orgs", None),
        ("GET", "/v1/orgs/HQ", None),
        ("GET", "/v1/orgs/HQ/subtree", None),
        ("POST", "/v1/orgs", {"code": "X", "name": "X"}),
        ("PATCH", "/v1/orgs/HQ", {"name": "X"}),
    ],
)
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer cx_000000000000_nope"},
        {"Authorization": "Bearer not-a-key"},
    ],
    ids=["missing", "empty", "basic", "unknown", "malformed"],
)
async def test_without_a_valid_key_is_401(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    tree: None,
    method: str,
    url: str,
    body: dict[str, Any] | None,
    headers: dict[str, str],
) -> None:
    r = await client.request(method, url, json=body, headers=headers)
    assert_problem(r, 401, "unauthenticated")
    assert r.headers["www-authenticate"].startswith("Bearer")
    # Nothing was written.
    assert (await client.get("/v1/orgs/HQ", headers=admin)).json()["name"] == "Org HQ"
    assert_problem(await client.get("/v1/orgs/X", headers=admin), 404)


async def test_revoked_key_is_401(
    client: httpx.AsyncClient, admin: dict[str, str], make_key: KeyFactory, tree: None
) -> None:
    key = await make_key("orgs:write")
    key_id = key.split("_")[1]
    assert (await client.get("/v1/orgs", headers=bearer(key))).status_code == 200
    r = await client.delete(f"/v1/keys/{key_id}", headers=admin)
    assert r.status_code == 200, r.text
    r = await client.get("/v1/orgs", headers=bearer(key))
    assert_problem(r, 401, "unauthenticated")
    assert r.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("scope", ["surveys:read", "surveys:write", "responses:write"])
async def test_writes_need_orgs_write(
    client: httpx.AsyncClient, admin: dict[str, str], make_key: KeyFactory, tree: None, scope: str
) -> None:
    headers = bearer(await make_key(scope))
    r = await client.post("/v1/orgs", json=org("NEW", "HQ"), headers=headers)
    assert_problem(r, 403, "forbidden")
    r = await client.patch("/v1/orgs/KR", json={"name": "Korea"}, headers=headers)
    assert_problem(r, 403, "forbidden")
    assert_problem(await client.get("/v1/orgs/NEW", headers=admin), 404)
    assert (await client.get("/v1/orgs/KR", headers=admin)).json()["name"] == "Org KR"


@pytest.mark.parametrize("scope", ["surveys:read", "indices:read", "responses:write"])
async def test_any_valid_key_can_read(
    client: httpx.AsyncClient, make_key: KeyFactory, tree: None, scope: str
) -> None:
    headers = bearer(await make_key(scope))
    r = await client.get("/v1/orgs", headers=headers)
    assert r.status_code == 200
    assert len(r.json()["items"]) == len(STANDARD_TREE)
    assert (await client.get("/v1/orgs/KR", headers=headers)).status_code == 200
    assert (await client.get("/v1/orgs/KR/subtree", headers=headers)).status_code == 200
    r = await client.get("/v1/orgs", params={"parent": "KR"}, headers=headers)
    assert r.status_code == 200


async def test_orgs_write_key_can_write(
    client: httpx.AsyncClient, make_key: KeyFactory, tree: None
) -> None:
    headers = bearer(await make_key("orgs:write"))
    r = await client.post("/v1/orgs", json=org("NEW"), headers=headers)
    assert r.status_code == 201, r.text
    r = await client.patch("/v1/orgs/NEW", json={"parent": "KR"}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["path"] == ["HQ", "KR", "NEW"]


# --- org-bound keys -------------------------------------------------------------------------


OUTSIDE_CODE = re.compile(r"(?<![A-Za-z0-9._-])(HQ|US|US-SERVICE)(?![A-Za-z0-9._-])")


def assert_no_outside_codes(r: httpx.Response) -> None:
    """The key bound to KR is never told a code above or beside its subtree."""
    assert OUTSIDE_CODE.search(r.text) is None, r.text


@pytest.fixture
async def kr(client: httpx.AsyncClient, make_key: KeyFactory, tree: None) -> dict[str, str]:
    """Headers of an orgs:write key bound to KR."""
    return bearer(await make_key("orgs:write", org="KR"))


async def test_bound_key_sees_its_org_as_a_root(
    client: httpx.AsyncClient, kr: dict[str, str]
) -> None:
    r = await client.get("/v1/orgs/KR", headers=kr)
    assert r.status_code == 200
    assert r.json() == {
        "code": "KR",
        "name": "Org KR",
        "parent": None,
        "kind": None,
        "path": ["KR"],
    }
    assert_no_outside_codes(r)
    r = await client.get("/v1/orgs/KR-DELIVERY-SEOUL", headers=kr)
    assert r.status_code == 200
    assert r.json()["parent"] == "KR"
    assert r.json()["path"] == ["KR", "KR-DELIVERY-SEOUL"]


@pytest.mark.parametrize("code", ["US", "US-SERVICE", "HQ"])
async def test_bound_key_outside_subtree_is_404(
    client: httpx.AsyncClient, kr: dict[str, str], code: str
) -> None:
    r = await client.get(f"/v1/orgs/{code}", headers=kr)
    body = assert_problem(r, 404, "not-found")
    # Exactly as if it did not exist.
    unknown = (await client.get("/v1/orgs/NOPE", headers=kr)).json()
    assert body == {**unknown, "detail": unknown["detail"].replace("NOPE", code)}
    r = await client.get(f"/v1/orgs/{code}/subtree", headers=kr)
    assert_problem(r, 404, "not-found")
    r = await client.patch(f"/v1/orgs/{code}", json={"name": "x"}, headers=kr)
    assert_problem(r, 404, "not-found")


async def test_bound_key_lists_only_its_subtree(
    client: httpx.AsyncClient, kr: dict[str, str]
) -> None:
    r = await client.get("/v1/orgs", headers=kr)
    assert r.status_code == 200
    items = r.json()["items"]
    assert [i["code"] for i in items] == ["KR", "KR-DELIVERY-BUSAN", "KR-DELIVERY-SEOUL"]
    assert items[0]["parent"] is None
    assert all(i["path"][0] == "KR" for i in items)
    assert_no_outside_codes(r)
    pages = await walk(client, kr, limit=1)
    assert pages == [["KR"], ["KR-DELIVERY-BUSAN"], ["KR-DELIVERY-SEOUL"]]

    r = await client.get("/v1/orgs", params={"parent": "KR"}, headers=kr)
    assert [i["code"] for i in r.json()["items"]] == ["KR-DELIVERY-BUSAN", "KR-DELIVERY-SEOUL"]
    for parent in ("HQ", "US"):
        r = await client.get("/v1/orgs", params={"parent": parent}, headers=kr)
        assert_problem(r, 422, "validation-error", loc=["query", "parent"])


async def test_bound_key_subtree(client: httpx.AsyncClient, kr: dict[str, str]) -> None:
    r = await client.get("/v1/orgs/KR/subtree", headers=kr)
    assert r.status_code == 200
    assert r.json()["code"] == "KR"
    assert [c["code"] for c in r.json()["children"]] == ["KR-DELIVERY-BUSAN", "KR-DELIVERY-SEOUL"]
    assert_no_outside_codes(r)


async def test_bound_key_creates_inside_its_subtree(
    client: httpx.AsyncClient, admin: dict[str, str], kr: dict[str, str]
) -> None:
    r = await client.post("/v1/orgs", json=org("KR-TEAM", "KR-DELIVERY-SEOUL"), headers=kr)
    assert r.status_code == 201, r.text
    assert r.json()["path"] == ["KR", "KR-DELIVERY-SEOUL", "KR-TEAM"]
    assert_no_outside_codes(r)
    r = await client.get("/v1/orgs/KR-TEAM", headers=admin)
    assert r.json()["path"] == ["HQ", "KR", "KR-DELIVERY-SEOUL", "KR-TEAM"]


@pytest.mark.parametrize("parent", ["US", "HQ", "US-SERVICE"])
async def test_bound_key_cannot_create_outside(
    client: httpx.AsyncClient, admin: dict[str, str], kr: dict[str, str], parent: str
) -> None:
    r = await client.post("/v1/orgs", json=org("KR-NEW", parent), headers=kr)
    body = assert_problem(r, 422, "validation-error", loc=["body", "parent"])
    # The same answer as for a parent that does not exist at all.
    r = await client.post("/v1/orgs", json=org("KR-NEW", "NOPE"), headers=kr)
    unknown = assert_problem(r, 422, "validation-error", loc=["body", "parent"])
    assert json.dumps(body) == json.dumps(unknown).replace("NOPE", parent)
    assert_problem(await client.get("/v1/orgs/KR-NEW", headers=admin), 404)


async def test_bound_key_cannot_create_a_root(
    client: httpx.AsyncClient, admin: dict[str, str], kr: dict[str, str]
) -> None:
    r = await client.post("/v1/orgs", json=org("KR-ROOT"), headers=kr)
    assert_problem(r, 403, "forbidden")
    assert_no_outside_codes(r)
    assert_problem(await client.get("/v1/orgs/KR-ROOT", headers=admin), 404)


async def test_bound_key_moves_inside_its_subtree(
    client: httpx.AsyncClient, admin: dict[str, str], kr: dict[str, str]
) -> None:
    r = await client.patch(
        "/v1/orgs/KR-DELIVERY-BUSAN", json={"parent": "KR-DELIVERY-SEOUL"}, headers=kr
    )
    assert r.status_code == 200, r.text
    assert r.json()["path"] == ["KR", "KR-DELIVERY-SEOUL", "KR-DELIVERY-BUSAN"]
    assert_no_outside_codes(r)
    r = await client.get("/v1/orgs/KR-DELIVERY-BUSAN", headers=admin)
    assert r.json()["path"] == ["HQ", "KR", "KR-DELIVERY-SEOUL", "KR-DELIVERY-BUSAN"]
    r = await client.patch("/v1/orgs/KR", json={"name": "Korea"}, headers=kr)
    assert r.status_code == 200, r.text
    assert r.json()["parent"] is None


async def test_bound_key_cannot_move_outside(
    client: httpx.AsyncClient, admin: dict[str, str], kr: dict[str, str]
) -> None:
    r = await client.patch("/v1/orgs/KR-DELIVERY-SEOUL", json={"parent": "US"}, headers=kr)
    assert_problem(r, 422, "validation-error", loc=["body", "parent"])
    r = await client.patch("/v1/orgs/KR-DELIVERY-SEOUL", json={"parent": None}, headers=kr)
    assert_problem(r, 403, "forbidden")
    assert_no_outside_codes(r)
    r = await client.patch("/v1/orgs/KR", json={"parent": "KR-DELIVERY-SEOUL"}, headers=kr)
    assert_problem(r, 403, "forbidden")
    r = await client.patch("/v1/orgs/KR", json={"parent": None}, headers=kr)
    assert_problem(r, 403, "forbidden")
    r = await client.patch(
        "/v1/orgs/KR-DELIVERY-SEOUL", json={"parent": "KR-DELIVERY-SEOUL"}, headers=kr
    )
    assert_problem(r, 409, "org-cycle")
    assert_no_outside_codes(r)
    r = await client.get("/v1/orgs", headers=admin)
    assert {i["code"]: i["path"] for i in r.json()["items"]}["KR-DELIVERY-SEOUL"] == [
        "HQ",
        "KR",
        "KR-DELIVERY-SEOUL",
    ]
    assert (await client.get("/v1/orgs/KR", headers=admin)).json()["path"] == ["HQ", "KR"]


async def test_bound_key_without_orgs_write_reads_only(
    client: httpx.AsyncClient, make_key: KeyFactory, tree: None
) -> None:
    headers = bearer(await make_key("indices:read", org="US"))
    r = await client.get("/v1/orgs", headers=headers)
    assert [i["code"] for i in r.json()["items"]] == ["US", "US-SERVICE"]
    r = await client.post("/v1/orgs", json=org("US-NEW", "US"), headers=headers)
    assert_problem(r, 403, "forbidden")


async def test_bound_key_follows_a_move_of_its_org(
    client: httpx.AsyncClient, admin: dict[str, str], kr: dict[str, str]
) -> None:
    r = await client.patch("/v1/orgs/KR", json={"parent": "US-SERVICE"}, headers=admin)
    assert r.status_code == 200, r.text
    r = await client.get("/v1/orgs/KR-DELIVERY-SEOUL", headers=kr)
    assert r.json()["path"] == ["KR", "KR-DELIVERY-SEOUL"]
    r = await client.get("/v1/orgs", headers=kr)
    assert [i["code"] for i in r.json()["items"]] == [
        "KR",
        "KR-DELIVERY-BUSAN",
        "KR-DELIVERY-SEOUL",
    ]
    assert_no_outside_codes(r)
    assert_problem(await client.get("/v1/orgs/US-SERVICE", headers=kr), 404)
