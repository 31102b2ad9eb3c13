"""Customer refs: kept only as keyed pseudonyms, never stored raw nor returned; erasure.

The scan looks at every column of every table the database holds (found in pg_catalog, not
listed here), so that a table added later is covered without touching this file.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.indices import worker
from app.platform.config import DEV_PSEUDONYM_KEY, Settings
from tests.conftest import KeyFactory, bearer
from tests.factories import response_body, standard_setup
from tests.responses.conftest import assert_invalid_at, assert_problem, list_all

# Long and distinctive, so that a hit in the scan can only be the ref itself.
REF_SINGLE = "ref-single-4b1d7e-kim.minji@example.com"
REF_BATCH = "ref-batch-90c2aa-고객 번호 42"
REF_BATCH_OTHER = "ref-batch-other-61f0e3/acct?x=1&y=%20"
REF_INVALID = "ref-invalid-item-d4e8f1"
REF_CONFLICT = "ref-conflicting-retry-73ab90"
REF_ERASED_ONE = "ref-erased-by-id-5e2c14"
REF_ERASED_CUSTOMER = "ref-erased-customer-a8f3b6/7 #tag"
ALL_REFS = (
    REF_SINGLE,
    REF_BATCH,
    REF_BATCH_OTHER,
    REF_INVALID,
    REF_CONFLICT,
    REF_ERASED_ONE,
    REF_ERASED_CUSTOMER,
)
# Posted in answers: a value the scan must find, or the scan proves nothing.
STORED_MARKER = "stored-comment-marker-0f9e8d"


def pseudonym(key: str, ref: str) -> bytes:
    """The keyed pseudonym of a ref: HMAC-SHA256 under the pseudonym key."""
    return hmac.new(key.encode(), ref.encode(), hashlib.sha256).digest()


def tombstone_key(source: str, external_id: str) -> bytes:
    return hashlib.sha256(f"{source}\x00{external_id}".encode()).digest()


def with_ref(ref: str | None, external_id: str, **overrides: Any) -> dict[str, Any]:
    customer = {"type": "end_user"} if ref is None else {"ref": ref, "type": "end_user"}
    return response_body(external_id=external_id, customer=customer, **overrides)


def customer_path(ref: str) -> str:
    return f"/v1/customers/{quote(ref, safe='')}/responses"


# --- the scan -----------------------------------------------------------------------------------

# Type categories that can hold text or bytes: string, user-defined (json, jsonb, bytea, ...),
# array, enum, composite, unknown. Numbers, dates, booleans and intervals cannot.
_COLUMNS = """
SELECT n.nspname AS schema_name, c.relname AS table_name, a.attname AS column_name,
       t.typname AS type_name
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
WHERE c.relkind IN ('r', 'p', 'm') AND a.attnum > 0 AND NOT a.attisdropped
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'
  AND t.typcategory IN ('S', 'U', 'A', 'E', 'C', 'X')
ORDER BY 1, 2, a.attnum
"""


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class Needle:
    """What to look for: its text forms in text-like columns, its bytes in bytea columns."""

    texts: list[str]
    data: bytes
    found_in: set[str] = field(default_factory=set)


def ref_needle(ref: str) -> Needle:
    # raw, as JSON escapes it, and hex-encoded
    escaped = json.dumps(ref)[1:-1]
    return Needle(texts=sorted({ref, escaped, ref.encode().hex()}), data=ref.encode())


def bytes_needle(data: bytes) -> Needle:
    return Needle(texts=[data.hex(), base64.b64encode(data).decode()], data=data)


async def text_columns(conn: AsyncConnection) -> list[tuple[str, str, str, str]]:
    """(schema, table, column, type) of every column that can hold a string or bytes."""
    rows = await conn.execute(text(_COLUMNS))
    return [(r.schema_name, r.table_name, r.column_name, r.type_name) for r in rows]


async def scan(conn: AsyncConnection, needles: dict[str, Needle]) -> dict[str, set[str]]:
    """For each needle, the columns (schema.table.column) where some value contains it."""
    columns = await text_columns(conn)
    labels = list(needles)
    for schema, table, column, type_name in columns:
        # identifiers come from the catalog and are quoted; the needles are bound parameters
        relation = f"{_ident(schema)}.{_ident(table)}"
        col = f"t.{_ident(column)}"
        if type_name == "bytea":
            query = (
                f"SELECT DISTINCT k.label FROM {relation} t,"
                " unnest(CAST(:labels AS text[]), CAST(:data AS bytea[])) AS k(label, needle)"
                f" WHERE position(k.needle IN {col}) > 0"
            )
            params: dict[str, Any] = {
                "labels": labels,
                "data": [needles[label].data for label in labels],
            }
        else:
            pairs = [(label, form) for label in labels for form in needles[label].texts]
            query = (
                f"SELECT DISTINCT k.label FROM {relation} t,"
                " unnest(CAST(:labels AS text[]), CAST(:forms AS text[])) AS k(label, needle)"
                f" WHERE strpos({col}::text, k.needle) > 0"
            )
            params = {"labels": [p[0] for p in pairs], "forms": [p[1] for p in pairs]}
        for (label,) in await conn.execute(text(query), params):
            needles[label].found_in.add(f"{schema}.{table}.{column}")
    return {label: needle.found_in for label, needle in needles.items()}


# --- set-up -------------------------------------------------------------------------------------


async def post(client: httpx.AsyncClient, headers: dict[str, str], body: Any) -> httpx.Response:
    return await client.post("/v1/responses", json=body, headers=headers)


async def batch(client: httpx.AsyncClient, headers: dict[str, str], items: list[Any]) -> Any:
    r = await client.post("/v1/responses/batch", json={"items": items}, headers=headers)
    assert r.status_code == 200, r.text
    return r.json()


async def post_every_kind(client: httpx.AsyncClient, headers: dict[str, str]) -> list[str]:
    """Responses with refs posted every way, two erasures among them; every body the API sent."""
    seen: list[str] = []

    async def keep(r: httpx.Response, status: int) -> httpx.Response:
        assert r.status_code == status, r.text
        seen.append(r.text)
        return r

    comment = {"overall": 4, "comment": STORED_MARKER}
    await keep(await post(client, headers, with_ref(REF_SINGLE, "single", answers=comment)), 201)
    await keep(await post(client, headers, with_ref(REF_SINGLE, "single", answers=comment)), 200)
    await keep(await post(client, headers, with_ref(REF_CONFLICT, "single", answers=comment)), 409)
    await keep(
        await post(client, headers, with_ref(REF_INVALID, "invalid", answers={"overall": 9})), 422
    )
    body = await batch(
        client,
        headers,
        [
            with_ref(REF_BATCH, "batch-1"),
            with_ref(REF_BATCH, "batch-2", answers={"overall": 2}),
            with_ref(REF_BATCH_OTHER, "batch-3", channel="web"),
            with_ref(REF_INVALID, "batch-invalid", answers={"overall": 0}),
            with_ref(REF_CONFLICT, "batch-1"),
            with_ref(None, "batch-anonymous"),
            with_ref(REF_ERASED_CUSTOMER, "customer-1"),
        ],
    )
    seen.append(json.dumps(body))
    assert [x["status"] for x in body["results"]] == [
        "created",
        "created",
        "created",
        "invalid",
        "conflict",
        "created",
        "created",
    ]
    # the same customer through another source, in a single post
    await keep(
        await post(
            client, headers, with_ref(REF_ERASED_CUSTOMER, "customer-2", source="call-centre")
        ),
        201,
    )
    one = await keep(await post(client, headers, with_ref(REF_ERASED_ONE, "erased-one")), 201)

    await keep(await client.delete(f"/v1/responses/{one.json()['id']}", headers=headers), 204)
    erased = await keep(
        await client.delete(customer_path(REF_ERASED_CUSTOMER), headers=headers), 200
    )
    assert erased.json() == {"deleted": 2}
    await keep(await post(client, headers, with_ref(REF_ERASED_ONE, "erased-one")), 410)
    for listed in await list_all(client, headers):
        got = await keep(await client.get(f"/v1/responses/{listed['id']}", headers=headers), 200)
        assert got.json() == listed
    return seen


# --- nothing raw, anywhere ----------------------------------------------------------------------


async def test_no_table_holds_a_raw_ref_nor_an_erased_pseudonym(
    committed_client: httpx.AsyncClient,
    committed_admin: dict[str, str],
    engine: AsyncEngine,
    settings: Settings,
) -> None:
    await standard_setup(committed_client, committed_admin)
    await post_every_kind(committed_client, committed_admin)
    await worker.fold_all(engine)  # the index tables too, not only pending deltas

    key = settings.pseudonym_key
    needles = {ref: ref_needle(ref) for ref in ALL_REFS}
    needles |= {
        "marker": ref_needle(STORED_MARKER),
        "external id": ref_needle("batch-anonymous"),
        "pseudonym of a live ref": bytes_needle(pseudonym(key, REF_BATCH)),
        "pseudonym erased by customer": bytes_needle(pseudonym(key, REF_ERASED_CUSTOMER)),
        "pseudonym erased by id": bytes_needle(pseudonym(key, REF_ERASED_ONE)),
    }
    async with engine.connect() as conn:
        columns = {(table, column) for _, table, column, _ in await text_columns(conn)}
        found = await scan(conn, needles)

    # The scan sees the tables and the kinds of column that matter, and finds what is there.
    assert {
        ("responses", "answers"),
        ("responses", "external_id"),
        ("responses", "customer_pseudonym"),
        ("tombstones", "key_hash"),
        ("api_keys", "name"),
    } <= columns
    assert found["marker"] == {"public.responses.answers"}
    assert found["external id"] == {"public.responses.external_id"}
    assert found["pseudonym of a live ref"] == {"public.responses.customer_pseudonym"}

    for ref in ALL_REFS:
        assert found[ref] == set(), f"the raw ref {ref!r} is stored in {found[ref]}"
    # An erased customer leaves nothing that links back to them, tombstones included.
    assert found["pseudonym erased by customer"] == set()
    assert found["pseudonym erased by id"] == set()


async def test_the_api_never_returns_a_ref(
    client: httpx.AsyncClient, setup: dict[str, str], settings: Settings
) -> None:
    seen = await post_every_kind(client, setup)
    forbidden = [*ALL_REFS, *(json.dumps(ref)[1:-1] for ref in ALL_REFS)]
    forbidden += [pseudonym(settings.pseudonym_key, ref).hex() for ref in ALL_REFS]
    for body in seen:
        for secret in forbidden:
            assert secret not in body
    for stored in await list_all(client, setup):
        # the contract's output: the customer's type, and nothing else about them
        assert stored["customer"] == {"type": "end_user"}


# --- the pseudonym ------------------------------------------------------------------------------


async def test_the_stored_pseudonym_is_the_keyed_hmac_of_the_ref(
    client: httpx.AsyncClient,
    setup: dict[str, str],
    connection: AsyncConnection,
    settings: Settings,
) -> None:
    posted = {
        ("delivery-app", "a"): REF_SINGLE,
        ("call-centre", "b"): REF_SINGLE,
        ("delivery-app", "c"): REF_BATCH,
        ("delivery-app", "d"): None,
    }
    for (source, external_id), ref in list(posted.items())[:2]:
        r = await post(client, setup, with_ref(ref, external_id, source=source))
        assert r.status_code == 201, r.text
    body = await batch(
        client,
        setup,
        [
            with_ref(ref, external_id, source=source)
            for (source, external_id), ref in list(posted.items())[2:]
        ],
    )
    assert body["counts"]["created"] == 2

    rows = await connection.execute(
        text("SELECT source, external_id, customer_pseudonym FROM responses")
    )
    stored = {(r.source, r.external_id): r.customer_pseudonym for r in rows}
    assert set(stored) == set(posted)
    for key, ref in posted.items():
        if ref is None:
            assert stored[key] is None
            continue
        assert bytes(stored[key]) == pseudonym(settings.pseudonym_key, ref)
        # keyed with the configured key: neither a bare hash nor the development default
        assert bytes(stored[key]) != hashlib.sha256(ref.encode()).digest()
        assert bytes(stored[key]) != pseudonym(DEV_PSEUDONYM_KEY, ref)
    # one customer, one pseudonym, whichever source or path posted them
    assert stored[("delivery-app", "a")] == stored[("call-centre", "b")]
    assert stored[("delivery-app", "a")] != stored[("delivery-app", "c")]


# --- erasure ------------------------------------------------------------------------------------


async def tombstones(connection: AsyncConnection) -> list[dict[str, Any]]:
    rows = await connection.execute(text("SELECT * FROM tombstones"))
    return [dict(row) for row in rows.mappings()]


async def test_erasing_one_response_leaves_a_tombstone_and_refuses_it_again(
    client: httpx.AsyncClient, setup: dict[str, str], connection: AsyncConnection
) -> None:
    body = with_ref(REF_ERASED_ONE, "erase-me")
    first = await post(client, setup, body)
    kept = await post(client, setup, with_ref(REF_ERASED_ONE, "keep-me"))
    assert (first.status_code, kept.status_code) == (201, 201)
    response_id = first.json()["id"]

    r = await client.delete(f"/v1/responses/{response_id}", headers=setup)
    assert r.status_code == 204, r.text
    assert r.content == b""
    assert_problem(await client.get(f"/v1/responses/{response_id}", headers=setup), 404)
    assert_problem(await client.delete(f"/v1/responses/{response_id}", headers=setup), 404)
    assert [x["external_id"] for x in await list_all(client, setup)] == ["keep-me"]

    # posting it again, with the same content or not, singly or in a batch → gone
    assert_problem(await post(client, setup, body), 410, "response-erased")
    changed = with_ref(None, "erase-me", answers={"overall": 1})
    assert_problem(await post(client, setup, changed), 410, "response-erased")
    result = await batch(client, setup, [body, changed])
    assert [x["status"] for x in result["results"]] == ["gone", "gone"]
    assert all(x.get("id") is None for x in result["results"])
    assert [x["external_id"] for x in await list_all(client, setup)] == ["keep-me"]

    # the same external id under another source is another response
    other = await post(client, setup, with_ref(None, "erase-me", source="web-shop"))
    assert other.status_code == 201, other.text

    (tombstone,) = await tombstones(connection)
    assert bytes(tombstone["key_hash"]) == tombstone_key("delivery-app", "erase-me")


@pytest.mark.parametrize(
    "ref",
    [
        "customer-42",
        "kim.minji@example.com",
        "고객 번호 42",
        "acct/7/user",
        "50% off?x=1&y=2#frag",
        "a+b c",
    ],
)
async def test_erasing_a_customer_removes_all_of_theirs_and_only_theirs(
    client: httpx.AsyncClient,
    setup: dict[str, str],
    connection: AsyncConnection,
    settings: Settings,
    ref: str,
) -> None:
    theirs = [
        with_ref(ref, "t-1"),
        with_ref(ref, "t-2", source="call-centre", answers={"overall": 1}),
    ]
    others = [with_ref(f"{ref}-not", "o-1"), with_ref(None, "o-2"), with_ref(ref[:-1], "o-3")]
    r = await post(client, setup, theirs[0])
    assert r.status_code == 201, r.text
    body = await batch(client, setup, [theirs[1], *others])
    assert body["counts"]["created"] == 4

    r = await client.delete(customer_path(ref), headers=setup)
    assert r.status_code == 200, r.text
    assert r.json() == {"deleted": 2}
    assert sorted(x["external_id"] for x in await list_all(client, setup)) == ["o-1", "o-2", "o-3"]
    again = await client.delete(customer_path(ref), headers=setup)
    assert again.json() == {"deleted": 0}

    for item in theirs:
        assert_problem(await post(client, setup, item), 410, "response-erased")
    result = await batch(client, setup, theirs)
    assert [x["status"] for x in result["results"]] == ["gone", "gone"]

    stones = await tombstones(connection)
    assert sorted(bytes(t["key_hash"]) for t in stones) == sorted(
        tombstone_key(item["source"], item["external_id"]) for item in theirs
    )
    # a tombstone holds nothing that names the customer
    secret = pseudonym(settings.pseudonym_key, ref)
    for stone in stones:
        for value in stone.values():
            if isinstance(value, bytes | memoryview):
                assert secret not in bytes(value)
                assert ref.encode() not in bytes(value)
            else:
                assert ref not in str(value)
                assert secret.hex() not in str(value)


async def test_customer_erasure_needs_admin(
    client: httpx.AsyncClient, setup: dict[str, str], make_key: KeyFactory
) -> None:
    r = await post(client, setup, with_ref(REF_SINGLE, "x"))
    assert r.status_code == 201
    writer = bearer(await make_key("responses:write", "responses:read"))
    assert_problem(await client.delete(customer_path(REF_SINGLE), headers=writer), 403)
    assert_problem(await client.delete(f"/v1/responses/{r.json()['id']}", headers=writer), 403)
    assert_problem(await client.delete(customer_path(REF_SINGLE)), 401)
    assert len(await list_all(client, setup)) == 1


@pytest.mark.parametrize("ref", ["", "r" * 257])
async def test_customer_erasure_refuses_an_impossible_ref(
    client: httpx.AsyncClient, setup: dict[str, str], ref: str
) -> None:
    r = await client.delete(customer_path(ref), headers=setup)
    assert_invalid_at(r, ["path", "ref"])
