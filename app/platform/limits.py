"""Request size limits (bodies beyond them are refused with 413 before they are read whole)."""

from __future__ import annotations

MAX_BODY_BYTES = 1024 * 1024  # any request body: 1 MiB
MAX_BATCH_BODY_BYTES = 10 * 1024 * 1024  # POST /v1/responses/batch: 1,000 items
# A body over its limit is read away (and dropped) before the 413, so that clients that send
# everything before reading get the answer instead of a reset connection; like nginx's lingering
# close, for a bounded time whatever its size: at most DRAIN_SECONDS in all, and no more than
# DRAIN_IDLE_SECONDS waiting for the next bytes.
DRAIN_SECONDS = 10.0
DRAIN_IDLE_SECONDS = 2.0
