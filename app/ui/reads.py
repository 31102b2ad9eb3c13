"""What the pages show, read through the API's own route functions.

A page passes the same arguments the API would parse from the same query, and gets back the
answer the API would send, as JSON values. There is no second implementation of any number.
FastAPI's dependencies do not run here, so scopes are checked by the caller (`Panel`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from typing import Any

from fastapi import Response
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.cases import router as cases_api
from app.evaluations import router as evaluations_api
from app.indices import router as indices_api
from app.indices import service as indices
from app.indices.periods import Granularity, Window, add_months
from app.insights import router as insights_api
from app.invitations import router as invitations_api
from app.keys.service import Principal
from app.orgs import router as orgs_api
from app.orgs.models import Org
from app.platform.config import Settings

Json = dict[str, Any]
TREND_MONTHS = 24
PAIN_POINTS_SHOWN = 5


def as_json(answer: Any) -> Json:
    """An answer as the API's client receives it."""
    if isinstance(answer, bytes):
        return dict(json.loads(answer))
    if isinstance(answer, Response):
        return dict(json.loads(bytes(answer.body)))
    if isinstance(answer, BaseModel):
        return answer.model_dump(mode="json", by_alias=True)
    raise TypeError(f"not an API answer: {type(answer).__name__}")


@dataclass(frozen=True)
class Query:
    """The state of a view, as its URL holds it (API parameter names and values)."""

    period: str | None = None
    start: str | None = None  # from
    end: str | None = None  # to
    tree: str | None = None
    stages: str | None = None
    channel: str | None = None
    customer_type: str | None = None

    def window_args(self) -> dict[str, str | None]:
        """The window as the route functions take it."""
        return {"period": self.period, "start": self.start, "end": self.end}

    def window(self) -> Window:
        return indices.parse_window(self.period, self.start, self.end)

    def api_params(self, **more: str | None) -> dict[str, str]:
        """The API query string of this view (what a client would send for the same numbers)."""
        params = {
            "period": self.period,
            "from": self.start,
            "to": self.end,
            "tree": self.tree,
            "stages": self.stages,
            "channel": self.channel,
            "customer_type": self.customer_type,
            **more,
        }
        return {k: v for k, v in params.items() if v is not None}


@dataclass
class Reader:
    """The reads of one page: one session, one caller."""

    session: AsyncSession
    principal: Principal
    settings: Settings

    async def _scope(self, q: Query, *, children: bool = False) -> indices.Scope:
        base = await indices_api.base_scope(
            self.settings,
            stages=q.stages,
            channel=q.channel,
            customer_type=q.customer_type,
            segment=None,
            include_descendants=True,
            min_n=None,
        )
        if children:
            return await indices_api.children_scope(base, tree=q.tree)
        return await indices_api.index_scope(base, tree=q.tree)

    async def org(self, code: str, *, as_of: str | None = None) -> Json:
        """`GET /v1/orgs/{code}?as_of=`."""
        return as_json(await orgs_api.get_org(code, self.session, self.principal, as_of=as_of))

    async def roots(self) -> list[Json]:
        """The orgs a tree view starts from: the key's own org, or every root."""
        if self.principal.org_code is not None:
            return [await self.org(self.principal.org_code)]
        rows = await self.session.execute(
            select(Org.code, Org.name).where(Org.parent_id.is_(None)).order_by(Org.code)
        )
        return [{"code": row.code, "name": row.name} for row in rows]

    async def index(self, code: str, q: Query) -> Json:
        """`GET /v1/orgs/{code}/index`."""
        return as_json(
            await indices_api.get_index(
                code,
                self.session,
                self.principal,
                await self._scope(q),
                **q.window_args(),
            )
        )

    async def children(self, code: str, q: Query) -> Json:
        """`GET /v1/orgs/{code}/index/children` (history is not a tree of children: current)."""
        tree = None if q.tree == "history" else q.tree
        child_query = Query(**{**q.__dict__, "tree": tree})
        return as_json(
            await indices_api.get_children_index(
                code,
                self.session,
                self.principal,
                await self._scope(child_query, children=True),
                **q.window_args(),
            )
        )

    async def trend(self, code: str, q: Query) -> tuple[Json, Query]:
        """`GET /v1/orgs/{code}/index/series?granularity=month`: the 24 months that end with
        the window's last month; and the query that asks for them."""
        window = q.window()
        month = date(window.end.year, window.end.month, 1)
        end = month if window.end == month else add_months(month, 1)
        start = add_months(end, -TREND_MONTHS)
        series_query = Query(
            start=start.isoformat(),
            end=end.isoformat(),
            tree=q.tree,
            stages=q.stages,
            channel=q.channel,
            customer_type=q.customer_type,
        )
        answer = await indices_api.get_index_series(
            code,
            self.session,
            self.principal,
            await self._scope(q),
            granularity=Granularity.month,
            start=start.isoformat(),
            end=end.isoformat(),
        )
        return as_json(answer), series_query

    async def targets(self, code: str) -> Json:
        """`GET /v1/orgs/{code}/targets`."""
        return as_json(await indices_api.list_targets(code, self.session, self.principal))

    async def pain_points(self, code: str, q: Query) -> Json:
        """`GET /v1/orgs/{code}/pain-points`."""
        return as_json(
            await insights_api.get_pain_points(
                code,
                self.session,
                self.principal,
                await self._scope(q),
                **q.window_args(),
                low_below=50,
            )
        )

    async def case_stats(self, code: str, q: Query) -> Json:
        """`GET /v1/orgs/{code}/cases/stats` (the window and tree; cases take no filters)."""
        return as_json(
            await cases_api.get_case_stats(
                code,
                self.session,
                self.principal,
                self.settings,
                **q.window_args(),
                tree=q.tree,
            )
        )

    async def invitation_stats(self, code: str, q: Query) -> Json:
        """`GET /v1/orgs/{code}/invitations/stats`."""
        return as_json(
            await invitations_api.get_invitation_stats(
                code,
                self.session,
                self.principal,
                self.settings,
                **q.window_args(),
                tree=q.tree,
                stages=q.stages,
                channel=q.channel,
                customer_type=q.customer_type,
                include_descendants=True,
            )
        )

    async def evaluation(self, period: str) -> Json:
        """`GET /v1/evaluations/{period}`."""
        return as_json(
            await evaluations_api.get_evaluation(
                period, self.session, self.principal, self.settings
            )
        )
