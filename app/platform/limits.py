"""Request size limits (bodies beyond them are refused with 413 before they are read whole)."""

from __future__ import annotations

MAX_BODY_BYTES = 1024 * 1024  # any request body: 1 MiB
MAX_BATCH_BODY_BYTES = 10 * 1024 * 1024  # POST /v1/responses/batch: 1,000 items
# A body declared over its limit by at most this much is read away before the 413, so that
# clients that send everything before reading get the answer instead of a reset connection.
DRAIN_MAX_BYTES = 16 * 1024 * 1024
DRAIN_SECONDS = 10.0
