"""How the rollups are stored: room on every page for the fold's in-place updates."""

from __future__ import annotations

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.indices import store
from app.indices.models import ROLLUP_FILLFACTOR
from app.platform.db import Base
from tests.factories import response_body, standard_setup, survey_body


async def test_every_rollup_leaves_room_for_hot_updates(connection: AsyncConnection) -> None:
    tables = [rollup.table for rollup in store.ROLLUPS]
    assert len(set(tables)) == 7
    rows = await connection.execute(
        text("SELECT relname, reloptions FROM pg_class WHERE relname = ANY(:t) AND relkind = 'r'"),
        {"t": tables},
    )
    options = dict(rows.all())
    assert options == {t: [f"fillfactor={ROLLUP_FILLFACTOR}"] for t in tables}
    # the models say the same, so that a schema made from them would too
    for table in tables:
        assert Base.metadata.tables[table].dialect_options["postgresql"]["with"] == {
            "fillfactor": ROLLUP_FILLFACTOR
        }


async def test_a_rollup_row_updated_by_folds_stays_on_its_page(
    connection: AsyncConnection,
) -> None:
    """An update with room on its page is a HOT one: the row's new version stays on the page
    (its ctid's block), and no index entry is added. On full pages (fillfactor 100) the new
    versions go to other pages."""
    raw = (await connection.get_raw_connection()).driver_connection
    await raw.execute(
        "INSERT INTO index_rollup_stage (org_id, tree, stage, month, scale_min, scale_max,"
        " n, sum_d, sum_d2, top2, nps_n, promoters, detractors)"
        " SELECT g, false, 'delivery', date '2026-01-01', 1, 5, 1, 1, 1, 0, 0, 0, 0"
        " FROM generate_series(-2000, -1) g"
    )
    before = await raw.fetch(
        "SELECT org_id, (ctid::text::point)[0] AS block FROM index_rollup_stage WHERE org_id < 0"
    )
    # a tenth of the rows, as a fold updates the few rows its deltas touch
    await raw.execute(
        "UPDATE index_rollup_stage SET n = n + 1 WHERE org_id < 0 AND org_id % 10 = 0"
    )
    after = await raw.fetch(
        "SELECT org_id, (ctid::text::point)[0] AS block FROM index_rollup_stage WHERE org_id < 0"
    )
    assert dict(after) == dict(before)
    assert len(before) == 2000
    assert len({row["block"] for row in before}) > 10


async def test_a_longer_moment_delta_than_the_chunk_was_read_with_waits_for_the_next_round(
    client: httpx.AsyncClient, admin: dict[str, str], connection: AsyncConnection
) -> None:
    """The fold reads the longest packed array of the chunk, then sums by position up to it.
    A delta that commits in between with a longer array (another survey) must not lose its
    last terms: the statement leaves it pending, and the next round folds it whole."""
    await standard_setup(client, admin)
    two = survey_body(
        code="delivery-two",
        primary="overall",
        questions=[
            {"key": "overall", "type": "csat", "prompt": "Overall?"},
            {"key": "speed", "type": "csat", "prompt": "Speed?"},
        ],
    )
    assert (await client.post("/v1/surveys", json=two, headers=admin)).status_code == 201
    items = [response_body(external_id=f"one-{n}") for n in range(3)] + [
        response_body(
            survey="delivery-two", external_id=f"two-{n}", answers={"overall": 5, "speed": 2}
        )
        for n in range(2)
    ]
    r = await client.post("/v1/responses/batch", json={"items": items}, headers=admin)
    assert r.json()["counts"]["created"] == 5
    raw = (await connection.get_raw_connection()).driver_connection
    lengths = sorted(r[0] for r in await raw.fetch("SELECT cardinality(totals) FROM moment_deltas"))
    assert lengths == [3, 3, 3, 6, 6]  # 1 + 1 + 1 terms, and 1 + 2 + 3
    # as if the chunk had been read before the longer ones committed
    (count, _) = await raw.fetchrow(store._fold_family(store.MOMENTS, terms=3))
    assert count == 3
    left = [r[0] for r in await raw.fetch("SELECT cardinality(totals) FROM moment_deltas")]
    assert left == [6, 6]
    await store.fold(raw)
    assert await raw.fetchval("SELECT count(*) FROM moment_deltas") == 0
    # every term of the two longer responses is in the rollup: n = 2, Σd = (4+4, 1+1), …
    totals = await raw.fetchval(
        "SELECT totals FROM moment_rollup WHERE NOT tree AND cardinality(totals) = 6"
    )
    assert totals == [2, 8, 2, 32, 8, 2]
