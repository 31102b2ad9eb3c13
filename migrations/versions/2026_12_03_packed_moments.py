"""Packed moments: one row per (org, tree, version, month, answered set) with every term.

moment_deltas and moment_rollup had a row per term (i, j) of each answered set, eight or more
per response and org on the path: more than half of the fold's work. Both now hold the terms
of a set in one `totals bigint[]`, ordered by (i, j); the statement trigger appends one row per
(org, version, month, set) and statement, summed element by element. The existing rows are
packed here (pending deltas summed per key first). The trigger's moment facts are this
revision's copy of app.indices.store.moment_facts; the other families' SQL is revision
3b7e91c0d2f4's, loaded from its file, so the downgrade restores that function exactly.

Revision ID: 8c5a2f7d3e61
Revises: 4d2b8e6f1a93
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from alembic import op

revision: str = "8c5a2f7d3e61"
down_revision: str | None = "4d2b8e6f1a93"
branch_labels = None
depends_on = None


def _insight_revision() -> ModuleType:
    path = Path(__file__).with_name("2026_12_02_insight_rollups.py")
    spec = importlib.util.spec_from_file_location("insight_rollups_3b7e91c0d2f4", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MONTH = "date_trunc('month', x.occurred_on)::date"


def packed_moment_facts(relation: str) -> str:
    return f"""WITH q AS (
        SELECT v.id AS vid, e.value ->> 'key' AS key, (e.value -> 'scale' ->> 'min')::bigint AS lo,
               (row_number() OVER (PARTITION BY v.id ORDER BY e.ord) - 1)::smallint AS p
        FROM survey_versions v
        CROSS JOIN LATERAL jsonb_array_elements(v.questions) WITH ORDINALITY AS e(value, ord)
        WHERE e.value ->> 'type' IN ('csat', 'nps', 'ces', 'rating')
    ), a AS (
        SELECT x.id AS rid, x.org_id, x.survey_version_id, {MONTH} AS month, q.p,
               (x.answers ->> q.key)::bigint - q.lo AS d
        FROM {relation} AS x JOIN q ON q.vid = x.survey_version_id
        WHERE jsonb_typeof(x.answers -> q.key) = 'number'
    ), s AS (
        SELECT rid, org_id, survey_version_id, month,
               string_agg(p::text, ',' ORDER BY p) AS answered, array_agg(d ORDER BY p) AS ds
        FROM a GROUP BY 1, 2, 3, 4
    ), c AS (
        SELECT a.rid, array_agg(a.d * b.d ORDER BY a.p, b.p) AS products
        FROM a JOIN a AS b ON b.rid = a.rid AND b.p >= a.p GROUP BY a.rid
    )
    SELECT s.org_id, s.survey_version_id, s.month, s.answered,
           ARRAY[1::bigint] || s.ds || c.products AS totals
    FROM s JOIN c USING (rid)"""


KEY = "org_id, survey_version_id, month, answered"


def _moment_insert(table: str, sign: str) -> str:
    """One packed row per changed response (few share a key within a statement: the fold sums
    them), negated for removed rows."""
    totals = (
        "f.totals"
        if not sign
        else "ARRAY(SELECT -e.v FROM unnest(f.totals) WITH ORDINALITY AS e(v, t) ORDER BY e.t)"
    )
    return (
        f"INSERT INTO moment_deltas ({KEY}, totals)"
        f" SELECT f.org_id, f.survey_version_id, f.month, f.answered, {totals}"
        f" FROM ({packed_moment_facts(table)}) f;"
    )


def _function(old: ModuleType) -> str:
    def part(table: str, sign: str) -> str:
        index = f"INSERT INTO index_deltas ({old.INDEX_COLUMNS}) {old._index_sums(table, sign)};"
        others = []
        for deltas, _, key, sums, facts in old.FAMILIES:
            if deltas == "moment_deltas":
                continue
            keys = ", ".join(key)
            totals = ", ".join(f"{sign}sum({c})" for c in sums)
            others.append(
                f"INSERT INTO {deltas} (org_id, {keys}, {', '.join(sums)})"
                f" SELECT org_id, {keys}, {totals} FROM ({facts(table)}) f"
                f" GROUP BY org_id, {keys};"
            )
        return "\n        ".join([index, *others, _moment_insert(table, sign)])

    return f"""
CREATE OR REPLACE FUNCTION responses_index_delta() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        {part("old_rows", "-")}
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        {part("new_rows", "")}
    END IF;
    RETURN NULL;
END $$ SET jit = off
"""


def upgrade() -> None:
    # The rollup: one row per set, its terms in (i, j) order (every set holds all its terms).
    op.execute(
        "CREATE TABLE moment_rollup_packed (org_id bigint NOT NULL, tree boolean NOT NULL,"
        " survey_version_id bigint NOT NULL, month date NOT NULL, answered text NOT NULL,"
        " totals bigint[] NOT NULL)"
    )
    op.execute(
        "INSERT INTO moment_rollup_packed"
        " SELECT org_id, tree, survey_version_id, month, answered,"
        " array_agg(total ORDER BY i, j) FROM moment_rollup"
        " GROUP BY org_id, tree, survey_version_id, month, answered"
    )
    op.execute("DROP TABLE moment_rollup")
    op.execute("ALTER TABLE moment_rollup_packed RENAME TO moment_rollup")
    op.execute(
        "ALTER TABLE moment_rollup ADD CONSTRAINT pk_moment_rollup"
        " PRIMARY KEY (org_id, tree, survey_version_id, month, answered)"
    )
    # Pending deltas: summed per key and term, then packed.
    op.execute(
        "CREATE TEMPORARY TABLE pending_moments ON COMMIT DROP AS"
        f" SELECT {KEY}, array_agg(total ORDER BY i, j) AS totals FROM ("
        f"SELECT {KEY}, i, j, sum(total)::bigint AS total FROM moment_deltas"
        f" GROUP BY {KEY}, i, j) t GROUP BY {KEY}"
    )
    op.execute("TRUNCATE moment_deltas")
    op.execute("ALTER TABLE moment_deltas DROP COLUMN i, DROP COLUMN j, DROP COLUMN total")
    op.execute("ALTER TABLE moment_deltas ADD COLUMN totals bigint[] NOT NULL")
    op.execute(f"INSERT INTO moment_deltas ({KEY}, totals) SELECT * FROM pending_moments")
    op.execute(_function(_insight_revision()))
    op.execute("ANALYZE moment_rollup, moment_deltas")


def _unpacked(table: str, columns: str) -> str:
    """SELECT of `columns` of the packed `table` (alias r) with each term as (i, j, total)."""
    return f"""
        SELECT {columns}, t.i, t.j, r.totals[t.n] FROM {table} r
        CROSS JOIN LATERAL (SELECT ARRAY[0] || ARRAY(
            SELECT p.v::int + 1
            FROM unnest(string_to_array(r.answered, ',')) WITH ORDINALITY AS p(v, o) ORDER BY p.o
        ) AS numbers) s
        CROSS JOIN LATERAL (
            SELECT a.v AS i, b.v AS j, row_number() OVER (ORDER BY a.v, b.v) AS n
            FROM unnest(s.numbers) AS a(v), unnest(s.numbers) AS b(v) WHERE a.v <= b.v
        ) t"""


def downgrade() -> None:
    old = _insight_revision()
    op.execute(
        "CREATE TABLE moment_rollup_terms (org_id bigint NOT NULL, tree boolean NOT NULL,"
        " survey_version_id bigint NOT NULL, month date NOT NULL, answered text NOT NULL,"
        " i smallint NOT NULL, j smallint NOT NULL, total bigint NOT NULL)"
    )
    columns = "r.org_id, r.tree, r.survey_version_id, r.month, r.answered"
    op.execute(f"INSERT INTO moment_rollup_terms {_unpacked('moment_rollup', columns)}")
    op.execute("DROP TABLE moment_rollup")
    op.execute("ALTER TABLE moment_rollup_terms RENAME TO moment_rollup")
    op.execute(
        "ALTER TABLE moment_rollup ADD CONSTRAINT pk_moment_rollup"
        " PRIMARY KEY (org_id, tree, survey_version_id, month, answered, i, j)"
    )
    columns = "r.org_id, r.survey_version_id, r.month, r.answered"
    op.execute(
        "CREATE TEMPORARY TABLE pending_moments ON COMMIT DROP AS"
        f" {_unpacked('moment_deltas', columns)}"
    )
    op.execute("TRUNCATE moment_deltas")
    op.execute("ALTER TABLE moment_deltas DROP COLUMN totals")
    op.execute(
        "ALTER TABLE moment_deltas ADD COLUMN i smallint NOT NULL,"
        " ADD COLUMN j smallint NOT NULL, ADD COLUMN total bigint NOT NULL"
    )
    op.execute(f"INSERT INTO moment_deltas ({KEY}, i, j, total) SELECT * FROM pending_moments")
    op.execute(old._function(with_families=True))
    op.execute("ANALYZE moment_rollup, moment_deltas")
