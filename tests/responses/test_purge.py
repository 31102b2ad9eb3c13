"""Retention purge: responses before the cutoff go (tombstones stay, indices follow), the rest stay;
expired idempotency records go; one audit event. The service runs on a frozen clock; the command
runs end to end on a database of its own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.platform.migrate import upgrade
from app.responses.retention import purge, retention_cutoff
from tests.conftest import bearer
from tests.factories import response_body, standard_setup
from tests.responses.conftest import assert_problem
from tests.scratch import api, cli_env, cx_survey, scratch_database

UTC_ZONE = ZoneInfo("UTC")
SEOUL = ZoneInfo("Asia/Seoul")


@pytest.mark.parametrize(
    ("now", "months", "zone", "cutoff"),
    [
        ("2026-06-15T08:00:00+00:00", 3, UTC_ZONE, "2026-03-15T00:00:00+00:00"),
        ("2026-05-31T23:59:59+00:00", 3, UTC_ZONE, "2026-02-28T00:00:00+00:00"),
        ("2028-05-31T12:00:00+00:00", 3, UTC_ZONE, "2028-02-29T00:00:00+00:00"),
        ("2026-01-10T00:00:00+00:00", 1, UTC_ZONE, "2025-12-10T00:00:00+00:00"),
        ("2026-03-31T00:00:00+00:00", 25, UTC_ZONE, "2024-02-29T00:00:00+00:00"),
        # 20:00 UTC on 30 November is already 1 December in Seoul.
        ("2026-11-30T20:00:00+00:00", 1, SEOUL, "2026-11-01T00:00:00+09:00"),
    ],
)
def test_the_cutoff_is_local_midnight_n_calendar_months_back(
    now: str, months: int, zone: ZoneInfo, cutoff: str
) -> None:
    got = retention_cutoff(datetime.fromisoformat(now), months, zone)
    assert got == datetime.fromisoformat(cutoff)
    assert got.astimezone(zone).utcoffset() == datetime.fromisoformat(cutoff).utcoffset()


FROZEN_NOW = datetime(2026, 6, 15, 8, 0, tzinfo=UTC)  # cutoff at 3 months: 2026-03-15T00:00Z
GOING = {
    "old-2025": "2025-12-31T23:00:00Z",
    "old-jan": "2026-01-10T12:00:00Z",
    "old-feb": "2026-02-01T00:00:00Z",
    "just-before": "2026-03-14T23:59:59.999999Z",
    "before-in-seoul-time": "2026-03-15T08:59:59+09:00",
}
STAYING = {
    "at-cutoff": "2026-03-15T00:00:00Z",
    "after-cutoff": "2026-03-15T00:00:00.000001Z",
    "recent": "2026-06-01T00:00:00Z",
}


async def post_all(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, dict[str, Any]]:
    bodies = {}
    for external_id, occurred_at in {**GOING, **STAYING}.items():
        body = response_body(external_id=external_id, occurred_at=occurred_at)
        r = await client.post("/v1/responses", json=body, headers=headers)
        assert r.status_code == 201, r.text
        bodies[external_id] = body
    return bodies


async def index_n(client: httpx.AsyncClient, headers: dict[str, str], period: str) -> int:
    r = await client.get("/v1/orgs/HQ/index", params={"period": period}, headers=headers)
    assert r.status_code == 200, r.text
    n: int = r.json()["n"]
    return n


async def add_idempotency_record(
    conn: AsyncConnection, key_id: str, name: str, expires: datetime
) -> None:
    await conn.execute(
        text(
            "INSERT INTO idempotency_keys"
            " (key_id, idempotency_key, fingerprint, token, locked_until, expires_at)"
            " VALUES (:key_id, :name, :fp, gen_random_uuid(), :expires, :expires)"
        ),
        {"key_id": key_id, "name": name, "fp": b"\0" * 32, "expires": expires},
    )


async def test_purge_deletes_before_the_cutoff_and_keeps_the_rest(
    app: Any,
    client: httpx.AsyncClient,
    admin: dict[str, str],
    connection: AsyncConnection,
) -> None:
    await standard_setup(client, admin)
    bodies = await post_all(client, admin)
    admin_key_id = admin["Authorization"].split("_")[1]
    await add_idempotency_record(
        connection, admin_key_id, "expired", FROZEN_NOW - timedelta(seconds=1)
    )
    await add_idempotency_record(connection, admin_key_id, "live", FROZEN_NOW + timedelta(hours=1))
    assert await index_n(client, admin, "2026-Q1") == 6
    assert await index_n(client, admin, "2025") == 1
    assert await index_n(client, admin, "2026-Q2") == 1

    dry = await purge(app.state.sessionmaker, months=3, now=FROZEN_NOW, zone=UTC_ZONE, dry_run=True)
    assert (dry.responses, dry.idempotency_records, dry.dry_run) == (5, 1, True)
    assert await index_n(client, admin, "2026-Q1") == 6
    events_before = await connection.scalar(text("SELECT count(*) FROM audit_events"))

    result = await purge(
        app.state.sessionmaker, months=3, now=FROZEN_NOW, zone=UTC_ZONE, batch_size=2
    )
    assert result.cutoff == datetime(2026, 3, 15, tzinfo=UTC)
    assert (result.responses, result.idempotency_records, result.dry_run) == (5, 1, False)

    left = await connection.execute(text("SELECT external_id FROM responses ORDER BY occurred_at"))
    assert [row[0] for row in left] == list(STAYING)
    reasons = await connection.execute(
        text("SELECT reason, count(*) FROM tombstones GROUP BY reason")
    )
    assert dict(reasons.all()) == {"purged": 5}
    names = await connection.execute(text("SELECT idempotency_key FROM idempotency_keys"))
    assert [row[0] for row in names] == ["live"]

    # Indices follow at once.
    assert await index_n(client, admin, "2026-Q1") == 2
    assert await index_n(client, admin, "2025") == 0
    assert await index_n(client, admin, "2026-Q2") == 1

    # A purged response posted again is gone (410); a kept one is a duplicate (200).
    for external_id in GOING:
        r = await client.post("/v1/responses", json=bodies[external_id], headers=admin)
        assert_problem(r, 410, "response-erased")
    r = await client.post("/v1/responses", json=bodies["at-cutoff"], headers=admin)
    assert r.status_code == 200, r.text

    # Exactly one audit event, by the command line, with the count over all batches.
    events = await connection.execute(
        text(
            "SELECT actor, action, target, org_id, details FROM audit_events ORDER BY id OFFSET :n"
        ),
        {"n": events_before},
    )
    assert [tuple(row) for row in events] == [
        (
            "cli",
            "responses.purge",
            None,
            None,
            {"months": 3, "cutoff": "2026-03-15T00:00:00+00:00", "count": 5},
        )
    ]

    # A second run finds nothing more, and says so in an event of its own.
    again = await purge(app.state.sessionmaker, months=3, now=FROZEN_NOW, zone=UTC_ZONE)
    assert (again.responses, again.idempotency_records) == (0, 0)
    counts = await connection.execute(
        text(
            "SELECT details->>'count' FROM audit_events"
            " WHERE action = 'responses.purge' ORDER BY id"
        )
    )
    assert [row[0] for row in counts] == ["5", "0"]


async def test_purge_refuses_nonsense(app: Any) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        await purge(app.state.sessionmaker, months=0, now=FROZEN_NOW, zone=UTC_ZONE)
    with pytest.raises(ValueError, match="at least 1"):
        await purge(app.state.sessionmaker, months=1, now=FROZEN_NOW, zone=UTC_ZONE, batch_size=0)


# ---- the command -----------------------------------------------------------------------------


async def test_the_purge_command(server_url: str, tmp_path: Path) -> None:
    async with scratch_database(server_url) as db:
        await upgrade(db)
        env = cli_env(db)

        refused = await cx_survey("purge", env=env, cwd=tmp_path)
        assert refused.code == 2
        assert "CX_RETENTION_MONTHS" in refused.said
        refused = await cx_survey("purge", "--months", "0", env=env, cwd=tmp_path)
        assert refused.code == 2

        created = await cx_survey(
            "keys", "create", "--name", "ops", "--scope", "admin", env=env, cwd=tmp_path
        )
        assert created.code == 0, created.stderr
        admin = bearer(created.stdout.strip())
        recent = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        old = response_body(external_id="old", occurred_at="2020-01-01T00:00:00Z")
        new = response_body(external_id="new", occurred_at=recent)
        async with api(db) as client:
            await standard_setup(client, admin)
            for body in (old, new):
                assert (
                    await client.post("/v1/responses", json=body, headers=admin)
                ).status_code == 201
            assert await index_n(client, admin, "2020") == 1

        with_retention = cli_env(db, retention_months="12")
        dry = await cx_survey("purge", "--dry-run", env=with_retention, cwd=tmp_path)
        assert dry.code == 0, dry.stderr
        assert dry.stdout.startswith("would purge 1 responses that occurred before ")
        assert "(12 months), 0 expired idempotency records" in dry.stdout

        done = await cx_survey("purge", env=with_retention, cwd=tmp_path)
        assert done.code == 0, done.stderr
        assert done.stdout.startswith("purged 1 responses that occurred before ")
        # --months wins over the setting; nothing is left to purge.
        again = await cx_survey("purge", "--months", "1", env=with_retention, cwd=tmp_path)
        assert again.code == 0, again.stderr
        assert again.stdout.startswith("purged 0 responses")

        async with api(db) as client:
            assert_problem(
                await client.post("/v1/responses", json=old, headers=admin), 410, "response-erased"
            )
            assert (await client.post("/v1/responses", json=new, headers=admin)).status_code == 200
            assert await index_n(client, admin, "2020") == 0
            r = await client.get("/v1/audit", params={"action": "responses.purge"}, headers=admin)
            assert r.status_code == 200, r.text
            events = r.json()["items"]
            assert [
                (e["actor"], e["details"]["months"], e["details"]["count"]) for e in events
            ] == [
                ("cli", 1, 0),
                ("cli", 12, 1),
            ]
            assert all(e["request_id"] is None and e["org"] is None for e in events)
