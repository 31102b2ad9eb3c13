"""How the rollups are stored: room on every page for the fold's in-place updates."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.indices import store
from app.indices.models import ROLLUP_FILLFACTOR
from app.platform.db import Base


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
