"""Writing events into the outbox, in the transaction of the change: one delivery per event and
subscribed webhook (enabled, of the event's type, whose org subtree holds the event's org)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from app.webhooks.models import EventType

# `{events}`: a query of (type, org_id, response_id, data jsonb) rows; `{now}`: the placeholder
# of the event's time. An event without an org (evaluation.closed) reaches unlimited webhooks.
FAN_OUT = """
INSERT INTO webhook_deliveries (webhook_id, msg_id, event_type, response_id, payload,
                                next_attempt_at, created_at)
SELECT w.id, 'msg_' || replace(gen_random_uuid()::text, '-', ''), e.type, e.response_id,
       convert_to(jsonb_build_object('type', e.type, 'timestamp', {now}::timestamptz,
                                     'data', e.data)::text, 'UTF8'),
       {now}, {now}
FROM ({events}) AS e
LEFT JOIN orgs o ON o.id = e.org_id
JOIN webhooks w ON w.enabled AND e.type = ANY(w.events)
 AND (w.org_id IS NULL OR w.org_id = ANY(o.path))
"""

_ONE = FAN_OUT.format(
    now="$5",
    events="SELECT $1::text AS type, $2::bigint AS org_id, $3::bigint AS response_id,"
    " $4::jsonb AS data",
)


async def enqueue(
    conn: Any,
    *,
    event: EventType,
    org_id: int | None,
    data: dict[str, Any],
    now: datetime,
    response_id: int | None = None,
) -> None:
    """Queue `event` for every webhook that subscribes to it (on the caller's connection, so in
    its transaction: the event exists iff the change commits)."""
    await conn.execute(_ONE, event.value, org_id, response_id, orjson.dumps(data).decode(), now)
