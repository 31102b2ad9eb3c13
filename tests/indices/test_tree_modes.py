"""Every tree mode against a brute force: random trees, random dated moves (and removals of
placements), random responses, folds at random moments and a clock that crosses a move's day.

The oracle knows nothing of the engine: it keeps each org's placements as the contract states
them, walks parents day by day, and recomputes every index from the raw scores it posted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncConnection

from app.indices import store
from app.platform import clock
from app.platform.db import driver_connection
from tests.indices.brute import Placements, Raw, assert_close, brute_index

CODES = [f"O{i}" for i in range(7)]
SURVEYS = {
    "delivery": {"code": "d-csat", "type": "csat", "scale": (1, 5)},
    "purchase": {"code": "p-nps", "type": "nps", "scale": (0, 10)},
}
FIRST_DAY = date(2025, 10, 1)
DAYS = 120  # responses from 2025-10-01 to 2026-01-28
MOVE_DAYS = [
    date(2025, 9, 15),
    date(2025, 11, 1),
    date(2025, 11, 17),
    date(2025, 12, 1),
    date(2026, 1, 1),
    date(2026, 1, 20),
    date(2026, 2, 15),  # after the first "today": a planned move
]
TODAY = date(2026, 2, 10)
LATER = date(2026, 2, 20)  # the clock moves here: the planned move takes effect by itself
WINDOWS: list[dict[str, str]] = [
    {"period": "2025-Q4"},
    {"period": "2026-01"},
    {"from": "2025-11-10", "to": "2026-01-20"},
    {"from": "2025-12-05", "to": "2025-12-25"},
]
MIN_N = 5


@dataclass
class Model(Placements):
    """The tree and the responses as the contract defines them."""

    responses: list[tuple[str, date, Raw]] = field(default_factory=list)

    def tree_day(self, mode: str, response_day: date, today: date) -> date:
        if mode == "current":
            return today
        if mode == "history":
            return response_day
        return date.fromisoformat(mode)

    def select(
        self, org: str, lo: date, hi: date, mode: str, today: date, descendants: bool = True
    ) -> list[Raw]:
        out = []
        for owner, day, raw in self.responses:
            if not lo <= day < hi:
                continue
            if descendants:
                chain = self.chain(owner, self.tree_day(mode, day, today))
                assert chain is not None
                if org not in chain:
                    continue
            elif owner != org:
                continue
            out.append(raw)
        return out


def _window(params: dict[str, str]) -> tuple[tuple[date, date], tuple[date, date]]:
    """The window and its previous, from the contract's rules (written out, not imported)."""
    if "period" in params:
        label = params["period"]
        if "-Q" in label:
            year, q = int(label[:4]), int(label[-1])
            lo = date(year, 3 * q - 2, 1)
            hi = date(year + (q == 4), 1 if q == 4 else 3 * q + 1, 1)
            plo = date(year - (q == 1), 10 if q == 1 else 3 * q - 5, 1)
        else:
            year, month = int(label[:4]), int(label[5:])
            lo = date(year, month, 1)
            hi = date(year + (month == 12), month % 12 + 1, 1)
            plo = date(year - (month == 1), (month - 2) % 12 + 1, 1)
        return (lo, hi), (plo, lo)
    lo, hi = date.fromisoformat(params["from"]), date.fromisoformat(params["to"])
    return (lo, hi), (lo - (hi - lo), lo)


def _compare(
    body: dict[str, Any],
    model: Model,
    org: str,
    params: dict[str, str],
    mode: str,
    today: date,
    descendants: bool,
) -> None:
    (lo, hi), (plo, phi) = _window(params)
    current = brute_index(
        model.select(org, lo, hi, mode, today, descendants), weights={}, min_n=MIN_N
    )
    previous = brute_index(
        model.select(org, plo, phi, mode, today, descendants), weights={}, min_n=MIN_N
    )
    where = f"{org} {params} tree={mode} descendants={descendants}"
    assert body["tree"] == mode, where
    assert_close(body, {k: v for k, v in current.items() if k != "se"}, where)
    assert_close(body["previous"], {"n": previous["n"], "csi": previous["csi"]}, where)
    if current["csi"] is None or previous["csi"] is None:
        assert body["delta"] is None, where
    else:
        assert abs(body["delta"] - (current["csi"] - previous["csi"])) <= 1e-9, where


operation = st.one_of(
    st.tuples(st.just("move"), st.integers(0, 6), st.integers(-1, 6), st.sampled_from(MOVE_DAYS)),
    st.tuples(st.just("unmove"), st.integers(0, 6), st.integers(0, 20), st.just(None)),
    st.tuples(st.just("fold"), st.just(0), st.just(0), st.just(None)),
)
response = st.tuples(
    st.integers(0, 6), st.integers(0, DAYS - 1), st.sampled_from(sorted(SURVEYS)), st.integers()
)


async def _fold(app: Any) -> None:
    async with app.state.sessionmaker() as session, session.begin():
        conn = await driver_connection(session)
        while await store.fold(conn) > 0:
            pass


def _at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    parents=st.lists(st.integers(-1, 6), min_size=7, max_size=7),
    before=st.lists(response, min_size=20, max_size=60),
    operations=st.lists(operation, max_size=10),
    after=st.lists(response, max_size=20),
    fixed_day=st.sampled_from(MOVE_DAYS),
)
async def test_every_tree_mode_matches_the_brute_force(
    app: Any,
    client: httpx.AsyncClient,
    connection: AsyncConnection,
    monkeypatch: pytest.MonkeyPatch,
    parents: list[int],
    before: list[tuple[int, int, str, int]],
    operations: list[tuple[str, int, int, date | None]],
    after: list[tuple[int, int, str, int]],
    fixed_day: date,
) -> None:
    savepoint = await connection.begin_nested()
    try:
        await _scenario(app, client, monkeypatch, parents, before, operations, after, fixed_day)
    finally:
        await savepoint.rollback()


async def _scenario(
    app: Any,
    client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    parents: list[int],
    before: list[tuple[int, int, str, int]],
    operations: list[tuple[str, int, int, date | None]],
    after: list[tuple[int, int, str, int]],
    fixed_day: date,
) -> None:
    today = TODAY
    monkeypatch.setattr(clock, "now", lambda: _at(today))
    app.state.tree_synced_for = None
    from app.keys.scopes import Scope
    from app.keys.service import create_key

    async with app.state.sessionmaker() as session, session.begin():
        issued = await create_key(session, name="t", scopes=[Scope.admin])
    admin = {"Authorization": f"Bearer {issued.secret_key}"}
    # A random forest: every org hangs under an earlier one, or is a root.
    model = Model(created={})
    for i, code in enumerate(CODES):
        parent = CODES[parents[i] % i] if i and parents[i] >= 0 else None
        model.created[code] = parent
        r = await client.post(
            "/v1/orgs", json={"code": code, "name": code, "parent": parent}, headers=admin
        )
        assert r.status_code == 201, r.text
    for stage, survey in SURVEYS.items():
        body = {
            "code": survey["code"],
            "title": stage,
            "stage": stage,
            "primary": "q",
            "questions": [{"key": "q", "type": survey["type"], "prompt": "?"}],
        }
        assert (await client.post("/v1/surveys", json=body, headers=admin)).status_code == 201
    serial = 0

    async def post(items: list[tuple[int, int, str, int]]) -> None:
        nonlocal serial
        bodies = []
        for org_i, offset, stage, seed in items:
            lo, hi = SURVEYS[stage]["scale"]  # type: ignore[misc]
            value = lo + seed % (hi - lo + 1)
            day = FIRST_DAY + timedelta(days=offset)
            serial += 1
            bodies.append(
                {
                    "survey": SURVEYS[stage]["code"],
                    "org": CODES[org_i],
                    "occurred_at": f"{day}T{seed % 24:02d}:30:00+00:00",
                    "source": "s",
                    "external_id": f"r{serial}",
                    "customer": {"ref": "c", "type": "end_user"},
                    "answers": {"q": value},
                }
            )
            model.responses.append(
                (
                    CODES[org_i],
                    day,
                    Raw(
                        stage=stage, v=value, scale_min=lo, scale_max=hi, is_nps=stage == "purchase"
                    ),
                )
            )
        if bodies:
            r = await client.post("/v1/responses/batch", json={"items": bodies}, headers=admin)
            assert r.json()["counts"]["created"] == len(bodies), r.text

    await post(before)
    for kind, org_i, other, day in operations:
        code = CODES[org_i]
        if kind == "fold":
            await _fold(app)
        elif kind == "move":
            assert day is not None
            parent = CODES[other] if other >= 0 else None
            r = await client.patch(
                f"/v1/orgs/{code}",
                json={"parent": parent, "effective": day.isoformat()},
                headers=admin,
            )
            if model.parent_on(code, day) == parent:
                assert r.status_code == 200, r.text
                continue
            trial = {k: dict(v) for k, v in model.moves.items()}
            trial.setdefault(code, {})[day] = parent
            candidate = Model(model.created, trial, model.responses)
            if candidate.acyclic():
                assert r.status_code == 200, r.text
                model.moves = trial
            else:
                assert r.status_code == 409, r.text
        else:
            dated = sorted(model.moves.get(code, {}))
            if not dated:
                r = await client.delete(f"/v1/orgs/{code}/history/2025-01-01", headers=admin)
                assert r.status_code == 404, r.text
                continue
            removed = dated[other % len(dated)]
            r = await client.delete(f"/v1/orgs/{code}/history/{removed}", headers=admin)
            trial = {k: dict(v) for k, v in model.moves.items()}
            del trial[code][removed]
            if Model(model.created, trial, model.responses).acyclic():
                assert r.status_code == 204, r.text
                model.moves = trial
            else:
                assert r.status_code == 409, r.text
    await post(after)
    history = await client.get(f"/v1/orgs/{CODES[1]}/history", headers=admin)
    assert history.json()["items"] == [
        {"effective": None, "parent": model.created[CODES[1]]},
        *(
            {"effective": d.isoformat(), "parent": p}
            for d, p in sorted(model.moves.get(CODES[1], {}).items())
        ),
    ]

    async def check(today: date) -> None:
        for code in CODES:
            r = await client.get(f"/v1/orgs/{code}", headers=admin)
            chain = model.chain(code, today)
            assert chain is not None
            assert r.json()["path"] == chain[::-1], (code, today)
            for mode in ("current", "history", fixed_day.isoformat()):
                for params in WINDOWS:
                    r = await client.get(
                        f"/v1/orgs/{code}/index",
                        headers=admin,
                        params={**params, "tree": mode, "min_n": MIN_N},
                    )
                    assert r.status_code == 200, r.text
                    _compare(r.json(), model, code, params, mode, today, True)
        r = await client.get(
            f"/v1/orgs/{CODES[0]}/index",
            headers=admin,
            params={
                "period": "2025-Q4",
                "tree": "history",
                "include_descendants": "false",
                "min_n": MIN_N,
            },
        )
        _compare(r.json(), model, CODES[0], {"period": "2025-Q4"}, "history", today, False)
        # Children of each org in a dated tree, and a history series.
        for code in CODES:
            r = await client.get(
                f"/v1/orgs/{code}/index/children",
                headers=admin,
                params={
                    "from": "2025-11-10",
                    "to": "2026-01-20",
                    "tree": fixed_day.isoformat(),
                    "min_n": MIN_N,
                },
            )
            kids = sorted(c for c in CODES if model.parent_on(c, fixed_day) == code)
            items = {i["org"]: i for i in r.json()["items"]}
            assert sorted(items) == kids
            for kid in kids:
                expected = brute_index(
                    model.select(
                        kid, date(2025, 11, 10), date(2026, 1, 20), fixed_day.isoformat(), today
                    ),
                    weights={},
                    min_n=MIN_N,
                )
                assert_close(items[kid], {"n": expected["n"], "csi": expected["csi"]}, kid)
        r = await client.get(
            f"/v1/orgs/{CODES[1]}/index/series",
            headers=admin,
            params={
                "granularity": "month",
                "from": "2025-09-01",
                "to": "2026-03-01",
                "tree": "history",
                "min_n": MIN_N,
            },
        )
        assert r.json()["tree"] == "history"
        for item in r.json()["items"]:
            lo, hi = date.fromisoformat(item["from"]), date.fromisoformat(item["to"])
            expected = brute_index(
                model.select(CODES[1], lo, hi, "history", today), weights={}, min_n=MIN_N
            )
            assert_close(
                item, {k: v for k, v in expected.items() if k not in ("se",)}, item["period"]
            )

    await check(today)
    # Midnight passes (twice): the planned move takes effect without any call.
    today = LATER
    await check(today)
    await _fold(app)
    await check(today)
