"""An app whose default min_n is small, so that few responses decide suppression either way."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker

from app.keys.scopes import Scope
from app.keys.service import create_key
from app.main import create_app
from app.platform.config import Settings

MIN_N = 3


@pytest.fixture
async def eval_app(settings: Settings, engine: AsyncEngine, connection: AsyncConnection) -> Any:
    small = settings.model_copy(update={"min_n_default": MIN_N, "min_n_floor": 2})
    application = create_app(small, engine=engine)
    application.state.sessionmaker = async_sessionmaker(
        bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
    )
    return application


@pytest.fixture
async def eval_client(eval_app: Any) -> Any:
    transport = httpx.ASGITransport(app=eval_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def issue(app: Any, *scopes: str, org: str | None = None) -> dict[str, str]:
    """Headers of a key issued inside the test's transaction."""
    async with app.state.sessionmaker() as session, session.begin():
        issued = await create_key(
            session, name="t", scopes=[Scope(s) for s in scopes] or [Scope.admin], org_code=org
        )
    return {"Authorization": f"Bearer {issued.secret_key}"}
