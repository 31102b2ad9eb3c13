"""The one bulk write path for responses: the single POST, the batch, the import and the loader.

Rows go in with one `INSERT … SELECT FROM unnest(…) ON CONFLICT DO NOTHING` on the asyncpg
connection of the caller's transaction; idempotency rests on the unique (source, external_id).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from app.platform import clock
from app.platform.db import driver_connection
from app.responses.prepare import Prepared, tombstone_hash
from app.responses.schemas import ItemStatus
from app.webhooks import outbox

_INSERT = """
INSERT INTO responses (
    org_id, survey_version_id, stage, occurred_at, occurred_on, source, external_id, channel,
    customer_type, customer_pseudonym, answers, score, scale_min, scale_max,
    primary_type, fingerprint, segments)
SELECT org_id, survey_version_id, stage::stage, occurred_at, occurred_on, source, external_id,
       channel,
       customer_type::customer_type, customer_pseudonym, answers::jsonb, score, scale_min,
       scale_max, primary_type::question_type, fingerprint, segments::jsonb
FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::timestamptz[], $5::date[], $6::text[],
            $7::text[], $8::text[], $9::text[], $10::bytea[], $11::text[], $12::smallint[],
            $13::smallint[], $14::smallint[], $15::text[], $16::bytea[], $17::text[])
    AS t(org_id, survey_version_id, stage, occurred_at, occurred_on, source, external_id, channel,
         customer_type, customer_pseudonym, answers, score, scale_min, scale_max,
         primary_type, fingerprint, segments)
ON CONFLICT (source, external_id) DO NOTHING
RETURNING id, source, external_id, received_at
"""

_EXISTING = """
SELECT r.id, r.source, r.external_id, r.fingerprint
FROM responses r
JOIN unnest($1::text[], $2::text[]) AS k(source, external_id)
  ON r.source = k.source AND r.external_id = k.external_id
"""

# After the insert, one statement: rows we just inserted under a key that an erasure tombstoned
# meanwhile (the erasure deleted the earlier row and committed while our insert waited on it,
# after our first tombstone look) are deleted again; every other inserted row answers the
# pending invitation of its key, if there is one, opens a case where its survey's case rule says
# so, and queues the events of all that for the subscribed webhooks (the outbox). All parts see
# one snapshot, so the tombstone test is the same in each.
_AFTER_INSERT = """
WITH k AS (
    SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::text[], $4::text[])
        AS k(id, key_hash, source, external_id)
), kept AS (
    SELECT * FROM k WHERE NOT EXISTS (SELECT FROM tombstones t WHERE t.key_hash = k.key_hash)
), undone AS (
    DELETE FROM responses r
    USING k JOIN tombstones t ON t.key_hash = k.key_hash
    WHERE r.id = k.id
    RETURNING r.source, r.external_id
), answered AS (
    UPDATE invitations i SET answered_at = $5
    FROM kept k
    WHERE i.source = k.source AND i.external_id = k.external_id
      AND i.answered_at IS NULL AND i.cancelled_at IS NULL AND i.reason IS NULL
    RETURNING i.source, i.external_id, i.id, i.org_id, i.survey_version_id, k.id AS response_id
), opened AS (
    INSERT INTO cases (response_id, org_id, survey_version_id, stage, score, scale_min,
                       scale_max, status, opened_at, due_at)
    SELECT r.id, r.org_id, r.survey_version_id, r.stage, r.score, r.scale_min, r.scale_max,
           'open', $5, $5 + make_interval(hours => cr.sla_hours)
    FROM kept k
    JOIN responses r ON r.id = k.id
    JOIN survey_versions v ON v.id = r.survey_version_id
    JOIN case_rules cr ON cr.survey_id = v.survey_id
    WHERE r.score <= cr.at_most
      AND r.occurred_at >= $5 - make_interval(days => cr.max_age_days)
    RETURNING id, response_id, org_id, survey_version_id, stage, score, scale_min, scale_max,
              due_at
), fanned AS (
{fan_out}
    RETURNING 1
)
SELECT 'undone' AS kind, source, external_id, NULL::bigint AS invitation_id FROM undone
UNION ALL
SELECT 'answered', source, external_id, id FROM answered
UNION ALL
SELECT 'opened', NULL, NULL, response_id FROM opened
"""

# The events of the rows kept, for the outbox; nothing is built unless a webhook is enabled.
_EVENTS = """
    SELECT 'response.created' AS type, r.org_id, r.id AS response_id,
           jsonb_build_object('id', r.id::text, 'org', o.code, 'survey', s.code,
               'survey_version', v.version, 'stage', r.stage, 'occurred_at', r.occurred_at,
               'score', jsonb_build_object('raw', r.score, 'normalized',
                   100.0 * (r.score - r.scale_min) / (r.scale_max - r.scale_min))) AS data
    FROM kept k JOIN responses r ON r.id = k.id JOIN orgs o ON o.id = r.org_id
    JOIN survey_versions v ON v.id = r.survey_version_id JOIN surveys s ON s.id = v.survey_id
    WHERE EXISTS (SELECT FROM webhooks WHERE enabled)
    UNION ALL
    SELECT 'case.opened', c.org_id, c.response_id,
           jsonb_build_object('id', c.id::text, 'response_id', c.response_id::text,
               'org', o.code, 'survey', s.code, 'stage', c.stage, 'status', 'open',
               'due_at', c.due_at, 'score', jsonb_build_object('raw', c.score, 'normalized',
                   100.0 * (c.score - c.scale_min) / (c.scale_max - c.scale_min)))
    FROM opened c JOIN orgs o ON o.id = c.org_id
    JOIN survey_versions v ON v.id = c.survey_version_id JOIN surveys s ON s.id = v.survey_id
    WHERE EXISTS (SELECT FROM webhooks WHERE enabled)
    UNION ALL
    SELECT 'invitation.answered', a.org_id, a.response_id,
           jsonb_build_object('id', a.id::text, 'response_id', a.response_id::text,
               'org', o.code, 'survey', s.code)
    FROM answered a JOIN orgs o ON o.id = a.org_id
    JOIN survey_versions v ON v.id = a.survey_version_id JOIN surveys s ON s.id = v.survey_id
    WHERE EXISTS (SELECT FROM webhooks WHERE enabled)
"""
_AFTER_INSERT = _AFTER_INSERT.replace("{fan_out}", outbox.FAN_OUT.format(now="$5", events=_EVENTS))


@dataclass(frozen=True, slots=True)
class Stored:
    """What became of one item: its status and, where a row stands for it, that row's id."""

    status: ItemStatus
    id: int | None = None
    received_at: datetime | None = None
    invitation_id: int | None = None  # the invitation this new response answered


def _columns(rows: Sequence[Prepared]) -> list[list[Any]]:
    return [
        [r.org_id for r in rows],
        [r.survey_version_id for r in rows],
        [r.stage.value for r in rows],
        [r.occurred_at for r in rows],
        [r.occurred_on for r in rows],
        [r.source for r in rows],
        [r.external_id for r in rows],
        [r.channel for r in rows],
        [r.customer_type.value for r in rows],
        [r.pseudonym for r in rows],
        [orjson.dumps(r.answers).decode() for r in rows],
        [r.score for r in rows],
        [r.scale_min for r in rows],
        [r.scale_max for r in rows],
        [r.primary_type.value for r in rows],
        [r.fingerprint for r in rows],
        [orjson.dumps(r.segments).decode() if r.segments else None for r in rows],
    ]


REPLAN_ROWS = 500  # more than a group commit carries (MAX_ITEMS), a batch's or an import's


async def store(
    session: AsyncSession, items: Sequence[Prepared], *, gone: set[bytes]
) -> list[Stored]:
    """Store valid items idempotently; one result per item, in item order.

    An item that repeats an earlier item of the same call is judged against that item.
    `gone`: the tombstoned key hashes among the items' keys, as Catalog.load found them in the
    same round trip as the references (a later erasure is caught after the insert).
    """
    firsts: dict[tuple[str, str], Prepared] = {}
    for item in items:
        firsts.setdefault(item.key, item)
    if not firsts:
        return []
    conn = await driver_connection(session)

    hashes = {key: tombstone_hash(*key) for key in firsts}
    outcome: dict[tuple[str, str], Stored] = {
        key: Stored(ItemStatus.gone) for key, h in hashes.items() if h in gone
    }
    # A fixed order keeps concurrent writers of overlapping keys from deadlocking.
    todo = sorted((item for key, item in firsts.items() if key not in outcome), key=lambda i: i.key)
    conflicting: dict[tuple[str, str], bytes] = {}  # fingerprints of rows stored before
    if todo:
        if len(todo) >= REPLAN_ROWS:
            # The triggers' statements keep the plans they got first in this session; plans
            # made for the few rows of single posts nest loops over a batch's transition
            # table (bench/run_replan.py: a 1,000-row insert after single-row ones 1,422 ms, 74 ms
            # replanned).
            await conn.execute("DISCARD PLANS")
        for row in await conn.fetch(_INSERT, *_columns(todo)):
            key = (row["source"], row["external_id"])
            outcome[key] = Stored(ItemStatus.created, row["id"], row["received_at"])
        created = [key for key, result in outcome.items() if result.status is ItemStatus.created]
        if created:
            after = await conn.fetch(
                _AFTER_INSERT,
                [outcome[key].id for key in created],
                [hashes[key] for key in created],
                [key[0] for key in created],
                [key[1] for key in created],
                clock.now(),
            )
            for row in after:
                key = (row["source"], row["external_id"])
                if row["kind"] == "answered":
                    outcome[key] = replace(outcome[key], invitation_id=row["invitation_id"])
                elif row["kind"] == "undone":
                    outcome[key] = Stored(ItemStatus.gone)
        missing = [item for item in todo if item.key not in outcome]
        if missing:
            rows = await conn.fetch(
                _EXISTING, [i.source for i in missing], [i.external_id for i in missing]
            )
            stored = {(r["source"], r["external_id"]): r for r in rows}
            for item in missing:
                row = stored.get(item.key)
                if row is None:  # erased between our insert and this read
                    outcome[item.key] = Stored(ItemStatus.gone)
                    continue
                conflicting[item.key] = bytes(row["fingerprint"])
                same = conflicting[item.key] == item.fingerprint
                status = ItemStatus.duplicate if same else ItemStatus.conflict
                outcome[item.key] = Stored(status, row["id"])

    results = []
    for item in items:
        first = firsts[item.key]
        result = outcome[item.key]
        if item is not first and result.status is not ItemStatus.gone:
            # Judged against the row its key holds: the first item's, unless that one
            # conflicted with a row stored before.
            held = conflicting.get(item.key, first.fingerprint)
            same = item.fingerprint == held
            result = Stored(ItemStatus.duplicate if same else ItemStatus.conflict, result.id)
        results.append(result)
    return results
