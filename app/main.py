"""The ASGI application: create_app() wires settings, database, routers and error handling."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.audit.router import router as audit_router
from app.cases.router import router as cases_router
from app.evaluations.router import router as evaluations_router
from app.executives.router import router as executives_router
from app.idempotency import service as idempotency
from app.idempotency.middleware import Idempotency
from app.indices import worker as fold_worker
from app.indices.router import router as indices_router
from app.insights.router import router as insights_router
from app.invitations.router import public_router as public_invitations_router
from app.invitations.router import router as invitations_router
from app.keys import cache as keys
from app.keys.router import router as keys_router
from app.orgs.router import router as orgs_router
from app.platform import health, metrics
from app.platform.config import Settings, get_settings
from app.platform.db import create_engine, create_sessionmaker
from app.platform.errors import register_error_handlers
from app.platform.logs import RequestContext, install_request_ids
from app.platform.meta import check_reporting_timezone
from app.platform.middleware import BodyLimit, JsonOnly
from app.platform.openapi import complete, operation_id
from app.platform.ratelimit import build_limiter
from app.responses.coalescer import Coalescer
from app.responses.direct import DirectPost
from app.responses.erasure import router as erasure_router
from app.responses.router import router as responses_router
from app.stages.router import router as stages_router
from app.surveys.router import router as surveys_router
from app.tasks.router import router as tasks_router
from app.ui import router as ui
from app.webhooks import worker as webhook_worker
from app.webhooks.router import router as webhooks_router

logger = logging.getLogger("cx_survey")


SWEEP_INTERVAL_SECONDS = 600.0


async def _sweep_idempotency(
    sessionmaker: async_sessionmaker[AsyncSession], *, stop: asyncio.Event
) -> None:
    """Delete expired Idempotency-Key records now and then (every worker; the deletes are cheap
    and skip what another worker deleted)."""
    while not stop.is_set():
        try:
            await idempotency.sweep(sessionmaker)
        except Exception as error:  # the database may be away; the next round tries again
            logger.warning("idempotency sweep failed: %s", type(error).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SWEEP_INTERVAL_SECONDS)


def create_app(settings: Settings | None = None, *, engine: AsyncEngine | None = None) -> FastAPI:
    """Build the application; `engine` lets tests hand in their own database."""
    settings = settings or get_settings()
    install_request_ids()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_engine = engine is None
        if own_engine:
            from app.platform.migrate import resolve_database_url

            url = await asyncio.to_thread(resolve_database_url, settings)
            app.state.engine = create_engine(settings, url)
        else:
            app.state.engine = engine
        app.state.sessionmaker = create_sessionmaker(app.state.engine)
        async with app.state.engine.begin() as conn:
            await check_reporting_timezone(conn, settings.reporting_timezone)
        stop = asyncio.Event()
        folder = None
        if settings.fold_interval_seconds > 0:
            folder = asyncio.create_task(
                fold_worker.run(
                    app.state.engine, interval=settings.fold_interval_seconds, stop=stop
                )
            )
        sweeper = asyncio.create_task(_sweep_idempotency(app.state.sessionmaker, stop=stop))
        listener = asyncio.create_task(keys.listen(app.state.keys, app.state.engine, stop=stop))
        sender = None
        if settings.webhook_poll_seconds > 0:
            sender = asyncio.create_task(webhook_worker.run(app.state.engine, settings, stop=stop))
        try:
            yield
        finally:
            stop.set()
            if folder is not None:
                await folder
            await sweeper
            await listener
            if sender is not None:
                await sender
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await app.state.coalescer.close()
            await app.state.limiter.close()
            await app.state.public_limiter.close()
            if own_engine:
                await app.state.engine.dispose()

    app = FastAPI(
        title="cx-survey",
        version="1.0.0",
        summary="Customer-journey surveys and org-hierarchy satisfaction indices.",
        lifespan=lifespan,
        # A body without Content-Type is read as JSON; other types are refused by JsonOnly.
        strict_content_type=False,
        generate_unique_id_function=operation_id,
    )
    app.state.settings = settings
    if engine is not None:
        app.state.engine = engine
        app.state.sessionmaker = create_sessionmaker(engine)
    app.state.keys = keys.KeyCache()
    app.state.coalescer = Coalescer(app.state)
    app.state.limiter = build_limiter(settings)
    app.state.public_limiter = build_limiter(settings, public=True)
    metrics.POOL_CAPACITY.set(settings.db_pool_size + settings.db_max_overflow)
    app.add_middleware(DirectPost)  # innermost: the single POSTs its route would accept
    app.add_middleware(Idempotency)  # sees bodies already checked for size and type
    app.add_middleware(JsonOnly)
    app.add_middleware(BodyLimit)
    app.add_middleware(RequestContext)  # outermost of ours: every line of a request has its id
    if settings.cors_origins:  # added last = outermost, so that every answer carries CORS headers
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"],
            expose_headers=["Location", "Retry-After", "X-Request-ID"],
            max_age=600,
        )
    register_error_handlers(app)
    for router in (
        health.router,
        stages_router,
        orgs_router,
        surveys_router,
        responses_router,
        indices_router,
        insights_router,
        executives_router,
        tasks_router,
        evaluations_router,
        invitations_router,
        public_invitations_router,
        cases_router,
        webhooks_router,
        erasure_router,
        keys_router,
        audit_router,
    ):
        app.include_router(router)
    ui.install(app)
    app.openapi = lambda: complete(app, min_n_floor=settings.min_n_floor)  # type: ignore[method-assign]
    return app
