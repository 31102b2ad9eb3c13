"""The background fold: moves pending index deltas into the rollup, one process at a time."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from app.indices import store

logger = logging.getLogger("cx_survey.indices")


async def fold_once(engine: AsyncEngine) -> int:
    """Fold one chunk of pending deltas in its own transaction; how many were folded."""
    async with engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        try:
            async with raw.transaction():
                return await store.fold(raw)
        except Exception:
            # Raw asyncpg errors bypass SQLAlchemy's disconnect detection: never hand this
            # connection back to the pool, a dead one would fail every fold after it.
            await conn.invalidate()
            raise


async def fold_all(engine: AsyncEngine) -> int:
    """Fold until nothing is pending (or another process holds the fold)."""
    total = 0
    while (folded := await fold_once(engine)) > 0:
        total += folded
    return total


# A catch-up of this many delta rows or more ends with ANALYZE of the rollups and the deltas: the
# plans of the reads after a backfill must see the tables as they now are.
ANALYZE_AFTER_ROWS = store.FOLD_CHUNK  # a catch-up that needed more than one chunk


async def analyze_rollups(engine: AsyncEngine) -> None:
    """After a catch-up: the delta tables vacuumed (and analyzed), the rollups analyzed."""
    async with engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        # An import that ends vacuums and analyzes the same tables: not waited for (it would
        # hold this worker past its statement timeout), they are being done.
        await store.vacuum_deltas(raw, skip_locked=True)
        await store.analyze(
            raw,
            [
                t
                for t in store.STATISTICS_TABLES
                if t != "responses" and t not in store.DELTA_TABLES
            ],
            skip_locked=True,
        )


async def run(
    engine: AsyncEngine,
    *,
    interval: float,
    stop: asyncio.Event,
    analyze_after: int = ANALYZE_AFTER_ROWS,
) -> None:
    """Fold every `interval` seconds until `stop`; a backlog is folded chunk after chunk, and
    a large one is followed by fresh statistics."""
    failing = False
    caught_up = 0  # rows folded since the statistics were last refreshed
    while not stop.is_set():
        folded = 0
        doing = "index fold"
        try:
            folded = await fold_once(engine)
            caught_up += folded
            if folded < store.FOLD_CHUNK and caught_up >= analyze_after:
                doing = "vacuum and analyze of the index tables"
                await analyze_rollups(engine)
                logger.info("analyzed the index tables after folding %d rows", caught_up)
                caught_up = 0
        except Exception as exc:  # the database may be away; readers stay exact without the fold
            # One traceback per outage, then a line per attempt: not a traceback every second.
            logger.warning(
                "%s failed (%s: %s); retrying",
                doing,
                type(exc).__name__,
                exc,
                exc_info=not failing,
            )
            failing = True
        else:
            if failing:
                logger.info("index fold works again")
            failing = False
        if folded < store.FOLD_CHUNK:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
