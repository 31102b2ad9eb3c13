"""The Idempotency-Key header: replay, reuse with another request, in flight, expiry, privacy."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import httpx
import hypothesis
import pytest
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.idempotency import service as idempotency
from app.idempotency.service import (
    HEADER_PATTERN,
    Claim,
    IdempotencyKeyInFlight,
    InvalidIdempotencyKey,
    Stored,
    fingerprint,
    parse_key,
)
from app.platform.db import create_sessionmaker
from app.responses import service as responses_service
from tests.conftest import KeyFactory, bearer
from tests.factories import response_body, standard_setup

PROBLEM = "application/problem+json"


def keyed(headers: dict[str, str], key: str) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key}


@pytest.fixture
async def writer(client: httpx.AsyncClient, admin: dict[str, str]) -> dict[str, str]:
    await standard_setup(client, admin)
    return admin


async def count(connection: AsyncConnection, sql: str, **params: Any) -> int:
    return int((await connection.execute(text(sql), params)).scalar_one())


async def test_a_replay_returns_the_first_answer_and_stores_nothing_new(
    client: httpx.AsyncClient, writer: dict[str, str], connection: AsyncConnection
) -> None:
    headers = keyed(writer, "order-123-first-try")
    first = await client.post("/v1/responses", json=response_body(), headers=headers)
    assert first.status_code == 201, first.text
    again = await client.post("/v1/responses", json=response_body(), headers=headers)
    assert again.status_code == 201  # the stored answer, not the 200 of a plain retry
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert await count(connection, "SELECT count(*) FROM responses") == 1


async def test_the_same_json_in_another_layout_is_the_same_request(
    client: httpx.AsyncClient, writer: dict[str, str]
) -> None:
    body = response_body()
    headers = {**keyed(writer, "k1"), "Content-Type": "application/json"}
    first = await client.post("/v1/responses", content=json.dumps(body), headers=headers)
    reordered = dict(reversed(list(body.items())))
    spaced = await client.post(
        "/v1/responses", content=json.dumps(reordered, indent=2), headers=headers
    )
    assert first.status_code == spaced.status_code == 201
    assert spaced.headers["idempotent-replayed"] == "true"


async def test_a_key_reused_for_another_request_is_422_and_changes_nothing(
    client: httpx.AsyncClient, writer: dict[str, str], connection: AsyncConnection
) -> None:
    headers = keyed(writer, "reused")
    assert (
        await client.post("/v1/responses", json=response_body(), headers=headers)
    ).status_code == 201
    other = response_body(external_id="order-124/delivery")
    refused = await client.post("/v1/responses", json=other, headers=headers)
    assert refused.status_code == 422
    assert refused.headers["content-type"] == PROBLEM
    assert refused.json()["type"].endswith("/idempotency-key-reused")
    elsewhere = await client.post(
        "/v1/orgs", json={"code": "NEW", "name": "New", "parent": None}, headers=headers
    )
    assert elsewhere.status_code == 422
    assert await count(connection, "SELECT count(*) FROM responses") == 1
    assert await count(connection, "SELECT count(*) FROM orgs WHERE code = 'NEW'") == 0


async def test_keys_belong_to_their_api_key(
    client: httpx.AsyncClient, writer: dict[str, str], make_key: KeyFactory
) -> None:
    other = bearer(await make_key("responses:write"))
    first = await client.post("/v1/responses", json=response_body(), headers=keyed(writer, "same"))
    second = await client.post("/v1/responses", json=response_body(), headers=keyed(other, "same"))
    assert first.status_code == 201
    assert second.status_code == 200  # ran: the plain duplicate answer, not a replay
    assert "idempotent-replayed" not in second.headers


async def test_quoted_and_bare_keys_are_the_same_key(
    client: httpx.AsyncClient, writer: dict[str, str]
) -> None:
    assert parse_key(['"abc"']) == parse_key(["abc"]) == "abc"
    first = await client.post("/v1/responses", json=response_body(), headers=keyed(writer, '"q-1"'))
    again = await client.post("/v1/responses", json=response_body(), headers=keyed(writer, "q-1"))
    assert first.status_code == again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"


@pytest.mark.parametrize(
    "value", ["", " ", "x" * 256, "clé", '"unclosed', " k", "k ", "k\t", "\xa0k", '""']
)
async def test_a_malformed_key_is_400_and_nothing_runs(
    client: httpx.AsyncClient, writer: dict[str, str], connection: AsyncConnection, value: str
) -> None:
    headers = [*writer.items(), ("Idempotency-Key", value.encode())]
    refused = await client.post("/v1/responses", json=response_body(), headers=headers)
    assert refused.status_code == 400, refused.text
    assert refused.json()["type"].endswith("/invalid-idempotency-key")
    assert await count(connection, "SELECT count(*) FROM responses") == 0


def _accepted(value: str) -> bool:
    try:
        parse_key([value])
    except InvalidIdempotencyKey:
        return False
    return True


@hypothesis.settings(deadline=None, max_examples=1000)
@hypothesis.given(
    st.one_of(
        st.text(alphabet=st.sampled_from('ab" \\\t\xa0~'), max_size=8),
        st.builds(
            "{}{}{}".format,
            st.sampled_from(["", '"', " "]),
            st.text(alphabet=st.sampled_from('a"\\ '), min_size=250, max_size=260),
            st.sampled_from(["", '"', " "]),
        ),
    )
)
def test_the_declared_header_pattern_admits_every_key_taken(value: str) -> None:
    # A fuzzer sends what the pattern refuses and expects a 4xx: nothing it refuses may be taken.
    declared = re.fullmatch(HEADER_PATTERN, value) is not None
    if _accepted(value):
        assert declared, value
    elif not (len(value) >= 2 and value[0] == value[-1] == '"'):
        assert not declared, value  # the bare form exactly; the quoted by its raw length only


async def test_two_keys_in_one_request_are_400(
    client: httpx.AsyncClient, writer: dict[str, str]
) -> None:
    headers = [*writer.items(), ("Idempotency-Key", "a"), ("Idempotency-Key", "b")]
    refused = await client.post("/v1/responses", json=response_body(), headers=headers)
    assert refused.status_code == 400


async def test_creating_a_key_refuses_the_header_and_creates_nothing(
    client: httpx.AsyncClient, admin: dict[str, str], connection: AsyncConnection
) -> None:
    before = await count(connection, "SELECT count(*) FROM api_keys")
    refused = await client.post(
        "/v1/keys", json={"name": "n", "scopes": ["admin"]}, headers=keyed(admin, "k")
    )
    assert refused.status_code == 400
    assert "secret" in refused.json()["detail"]
    assert await count(connection, "SELECT count(*) FROM api_keys") == before


async def test_refusals_that_say_something_are_replayed_and_transient_ones_are_not(
    client: httpx.AsyncClient, writer: dict[str, str], connection: AsyncConnection
) -> None:
    bad = response_body(answers={"overall": 9})
    first = await client.post("/v1/responses", json=bad, headers=keyed(writer, "bad"))
    assert first.status_code == 422
    again = await client.post("/v1/responses", json=bad, headers=keyed(writer, "bad"))
    assert again.status_code == 422
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    unknown = {"Authorization": "Bearer cx_000000000000_" + "x" * 43, "Idempotency-Key": "u"}
    for _ in range(2):
        assert (await client.post("/v1/responses", json=bad, headers=unknown)).status_code == 401
    assert await count(connection, "SELECT count(*) FROM idempotency_keys") == 1


async def test_a_revoked_key_cannot_replay(
    client: httpx.AsyncClient, writer: dict[str, str], make_key: KeyFactory
) -> None:
    key = await make_key("responses:write")
    headers = keyed(bearer(key), "before-revocation")
    assert (
        await client.post("/v1/responses", json=response_body(), headers=headers)
    ).status_code == 201
    key_id = key.split("_")[1]
    assert (await client.delete(f"/v1/keys/{key_id}", headers=writer)).status_code in {200, 204}
    assert (
        await client.post("/v1/responses", json=response_body(), headers=headers)
    ).status_code == 401


async def test_a_claim_in_flight_is_409_and_an_abandoned_one_is_taken_over(
    client: httpx.AsyncClient, writer: dict[str, str], connection: AsyncConnection
) -> None:
    key_id = (await connection.execute(text("SELECT id FROM api_keys"))).scalar_one()
    body = response_body()
    mine = fingerprint("POST", "/v1/responses", b"", httpx.Request("POST", "/", json=body).content)
    claim = (
        "INSERT INTO idempotency_keys (key_id, idempotency_key, fingerprint, token,"
        " locked_until, expires_at) VALUES (:k, :key, :f, gen_random_uuid(),"
        " now() + make_interval(secs => :lease), now() + interval '1 day')"
    )
    await connection.execute(text(claim), {"k": key_id, "key": "busy", "f": mine, "lease": 60})
    busy = await client.post("/v1/responses", json=body, headers=keyed(writer, "busy"))
    assert busy.status_code == 409
    assert busy.headers["retry-after"] == "1"
    assert busy.json()["type"].endswith("/idempotency-key-in-flight")
    await connection.execute(text(claim), {"k": key_id, "key": "dead", "f": mine, "lease": -1})
    taken = await client.post("/v1/responses", json=body, headers=keyed(writer, "dead"))
    assert taken.status_code == 201
    other = response_body(external_id="order-999/delivery")
    await connection.execute(text(claim), {"k": key_id, "key": "dead2", "f": mine, "lease": -1})
    assert (
        await client.post("/v1/responses", json=other, headers=keyed(writer, "dead2"))
    ).status_code == 422


async def test_an_expired_record_is_forgotten_and_swept(
    client: httpx.AsyncClient, writer: dict[str, str], connection: AsyncConnection
) -> None:
    headers = keyed(writer, "old")
    assert (
        await client.post("/v1/responses", json=response_body(), headers=headers)
    ).status_code == 201
    await connection.execute(
        text("UPDATE idempotency_keys SET expires_at = now() - interval '1 s'")
    )
    other = response_body(external_id="order-777/delivery")
    fresh = await client.post("/v1/responses", json=other, headers=headers)
    assert fresh.status_code == 201  # a new request under the old key: it ran
    assert "idempotent-replayed" not in fresh.headers


async def test_erasing_a_response_deletes_the_answers_that_show_it(
    client: httpx.AsyncClient, writer: dict[str, str], connection: AsyncConnection
) -> None:
    single = await client.post("/v1/responses", json=response_body(), headers=keyed(writer, "one"))
    items = [response_body(external_id=f"b-{i}") for i in range(3)]
    batch = await client.post(
        "/v1/responses/batch", json={"items": items}, headers=keyed(writer, "many")
    )
    assert batch.status_code == 200
    stored = await count(
        connection, "SELECT count(*) FROM idempotency_keys WHERE response_ids IS NOT NULL"
    )
    assert stored == 2
    assert (
        await client.delete(f"/v1/responses/{single.json()['id']}", headers=writer)
    ).status_code == 204
    batch_id = batch.json()["results"][1]["id"]
    assert (await client.delete(f"/v1/responses/{batch_id}", headers=writer)).status_code == 204
    assert await count(connection, "SELECT count(*) FROM idempotency_keys") == 0
    replay = await client.post("/v1/responses", json=response_body(), headers=keyed(writer, "one"))
    assert replay.status_code == 410  # it runs again and meets the tombstone


async def test_sweep_deletes_only_expired_records(
    committed_client: httpx.AsyncClient, committed_admin: dict[str, str], engine: AsyncEngine
) -> None:
    await standard_setup(committed_client, committed_admin)
    for i in range(5):
        body = response_body(external_id=f"s-{i}")
        r = await committed_client.post(
            "/v1/responses", json=body, headers=keyed(committed_admin, f"s-{i}")
        )
        assert r.status_code == 201
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE idempotency_keys SET expires_at = now() - interval '1 s'"
                " WHERE idempotency_key IN ('s-0', 's-1', 's-2')"
            )
        )
    assert await idempotency.sweep(create_sessionmaker(engine), batch=2) == 3
    async with engine.connect() as conn:
        left = (
            (await conn.execute(text("SELECT idempotency_key FROM idempotency_keys ORDER BY 1")))
            .scalars()
            .all()
        )
    assert left == ["s-3", "s-4"]


async def test_concurrent_requests_with_one_key_run_once(
    committed_app: Any,
    committed_client: httpx.AsyncClient,
    committed_admin: dict[str, str],
    engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await standard_setup(committed_client, committed_admin)
    gate, inside = asyncio.Event(), asyncio.Event()
    original = responses_service.post_responses

    async def held(*args: Any, **kwargs: Any) -> Any:
        inside.set()
        await gate.wait()
        return await original(*args, **kwargs)

    monkeypatch.setattr(responses_service, "post_responses", held)
    headers = keyed(committed_admin, "concurrent")
    first = asyncio.create_task(
        committed_client.post("/v1/responses", json=response_body(), headers=headers)
    )
    await asyncio.wait_for(inside.wait(), 30)
    second = await committed_client.post("/v1/responses", json=response_body(), headers=headers)
    assert second.status_code == 409
    gate.set()
    assert (await first).status_code == 201
    third = await committed_client.post("/v1/responses", json=response_body(), headers=headers)
    assert third.status_code == 201
    assert third.headers["idempotent-replayed"] == "true"
    async with engine.connect() as conn:
        stored = (await conn.execute(text("SELECT count(*) FROM responses"))).scalar_one()
    assert stored == 1


async def test_a_request_whose_lease_ran_out_cannot_settle_the_claim_that_replaced_it(
    app: Any, writer: dict[str, str], connection: AsyncConnection, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_id = (await connection.execute(text("SELECT id FROM api_keys"))).scalar_one()
    request = Claim(key_id, "slow", b"f" * 32)
    async with app.state.sessionmaker() as session, session.begin():
        monkeypatch.setattr(idempotency, "LEASE_SECONDS", -1)  # A's lease is over at once
        first = await idempotency.claim(session, claim=request, ttl_seconds=3600)
        monkeypatch.setattr(idempotency, "LEASE_SECONDS", 60)
        second = await idempotency.claim(session, claim=request, ttl_seconds=3600)
        assert isinstance(first, Claim)
        assert isinstance(second, Claim)
        assert first.token != second.token
        await idempotency.release(session, claim=first)  # A ends late, with a 5xx
        with pytest.raises(IdempotencyKeyInFlight):  # B still holds the key
            await idempotency.claim(session, claim=request, ttl_seconds=3600)
        late = Stored(201, [(b"content-type", b"application/json")], b'{"from": "A"}')
        await idempotency.store(session, claim=first, answer=late, path="/v1/orgs")
        mine = Stored(201, [(b"content-type", b"application/json")], b'{"from": "B"}')
        await idempotency.store(session, claim=second, answer=mine, path="/v1/orgs")
        replay = await idempotency.claim(session, claim=request, ttl_seconds=3600)
    assert isinstance(replay, Stored)
    assert replay.body == b'{"from": "B"}'


async def test_an_answer_whose_response_was_erased_before_it_was_stored_is_not_kept(
    app: Any,
    client: httpx.AsyncClient,
    writer: dict[str, str],
    connection: AsyncConnection,
) -> None:
    created = await client.post("/v1/responses", json=response_body(), headers=writer)
    key_id = (await connection.execute(text("SELECT id FROM api_keys"))).scalar_one()
    request = Claim(key_id, "race", b"r" * 32)
    async with app.state.sessionmaker() as session, session.begin():
        held = await idempotency.claim(session, claim=request, ttl_seconds=3600)
    assert isinstance(held, Claim)
    # The erasure lands between the request's commit and the storing of its answer.
    erased = await client.delete(f"/v1/responses/{created.json()['id']}", headers=writer)
    assert erased.status_code == 204
    answer = Stored(201, [(b"content-type", b"application/json")], created.content)
    async with app.state.sessionmaker() as session, session.begin():
        await idempotency.store(session, claim=held, answer=answer, path="/v1/responses")
    assert await count(connection, "SELECT count(*) FROM idempotency_keys") == 0


async def test_authentication_is_judged_before_the_header(client: httpx.AsyncClient) -> None:
    unknown = {"Authorization": "Bearer cx_000000000000_" + "x" * 43}
    for path in ("/v1/responses", "/v1/keys"):
        refused = await client.post(path, json={}, headers={**unknown, "Idempotency-Key": ""})
        assert refused.status_code == 401, (path, refused.text)
