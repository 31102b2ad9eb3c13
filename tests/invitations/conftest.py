"""Apps for the invitation tests: a controlled clock, a survey URL template, CORS, a public
rate limit that a test can reach."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker

from app.main import create_app
from app.platform import clock
from app.platform.config import Settings
from tests.factories import standard_setup

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
URL_TEMPLATE = "https://surveys.example.com/s/{token}"
ORIGIN = "https://shop.example.com"


class Clock:
    """The service clock, moved by the test."""

    def __init__(self) -> None:
        self.now = NOW

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def moment(monkeypatch: pytest.MonkeyPatch) -> Clock:
    state = Clock()
    monkeypatch.setattr(clock, "now", lambda: state.now)
    return state


AppFactory = Callable[..., Any]


@pytest.fixture
def make_app(settings: Settings, engine: AsyncEngine, connection: AsyncConnection) -> AppFactory:
    """An app in the test's transaction with settings changed as asked."""

    def make(**changes: Any) -> Any:
        changed = settings.model_copy(
            update={"survey_url_template": URL_TEMPLATE, "cors_origins": [ORIGIN], **changes}
        )
        application = create_app(changed, engine=engine)
        application.state.sessionmaker = async_sessionmaker(
            bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
        )
        return application

    return make


@pytest.fixture
async def inv_app(make_app: AppFactory) -> Any:
    return make_app()


@pytest.fixture
async def inv_client(inv_app: Any, moment: Clock) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=inv_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


@pytest.fixture
async def inv_admin(inv_client: httpx.AsyncClient, inv_app: Any) -> dict[str, str]:
    """An admin key, with the standard tree and the delivery survey set up."""
    headers = await issue(inv_app)
    await standard_setup(inv_client, headers)
    return headers


async def issue(
    app: Any, *scopes: str, org: str | None = None, source: str | None = None
) -> dict[str, str]:
    from app.keys.scopes import Scope
    from app.keys.service import create_key

    async with app.state.sessionmaker() as session, session.begin():
        issued = await create_key(
            session,
            name="t",
            scopes=[Scope(s) for s in scopes] or [Scope.admin],
            org_code=org,
            source=source,
        )
    return {"Authorization": f"Bearer {issued.secret_key}"}


def invitation_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "survey": "delivery-csat",
        "org": "KR-DELIVERY-SEOUL",
        "source": "delivery-app",
        "external_id": "order-1/delivery",
        "occurred_at": "2026-11-30T10:00:00+09:00",
        "customer": {"ref": "customer-42", "type": "end_user"},
        "channel": "mobile",
    }
    body.update(overrides)
    return body
