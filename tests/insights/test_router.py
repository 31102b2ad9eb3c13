"""Pain points and drivers over HTTP against brute-force computations over the responses posted:
versions that change a question's options and add questions, filters, include_descendants,
suppression, org-bound keys, bad input."""

from __future__ import annotations

import itertools
import random
from fractions import Fraction
from typing import Any

import httpx
import numpy as np
import pytest

from app.indices import store
from app.platform.db import driver_connection
from tests.conftest import KeyFactory, bearer
from tests.factories import STANDARD_TREE, create_orgs, response_body
from tests.indices.test_router import fold_all
from tests.insights.test_drivers_math import reference

V1 = {
    "code": "repair",
    "title": "Repair",
    "stage": "after_service",
    "primary": "overall",
    "questions": [
        {"key": "overall", "type": "csat", "prompt": "Overall?"},
        {
            "key": "reason",
            "type": "choice",
            "prompt": "Why?",
            "options": ["late", "damaged", "kind"],
            "required": False,
        },
        {
            "key": "speed",
            "type": "rating",
            "prompt": "Speed?",
            "scale": {"min": 1, "max": 10},
            "required": False,
        },
        {"key": "comment", "type": "text", "prompt": "More?", "required": False},
    ],
}
V2 = {
    **V1,
    "questions": [
        {"key": "overall", "type": "csat", "prompt": "Overall?"},
        {
            "key": "reason",
            "type": "choice",
            "prompt": "Why?",
            "options": ["late", "damaged", "kind", "rude"],
            "required": False,
        },
        {
            "key": "speed",
            "type": "rating",
            "prompt": "Speed?",
            "scale": {"min": 0, "max": 5},
            "required": False,
        },
        {"key": "staff", "type": "ces", "prompt": "Easy?", "required": False},
        {
            "key": "via",
            "type": "choice",
            "prompt": "How?",
            "options": ["app", "web"],
            "required": False,
        },
    ],
}
SCALES = {
    1: {"overall": (1, 5), "speed": (1, 10)},
    2: {"overall": (1, 5), "speed": (0, 5), "staff": (1, 7)},
}
OPTIONS = {
    1: {"reason": ["late", "damaged", "kind"]},
    2: {"reason": ["late", "damaged", "kind", "rude"], "via": ["app", "web"]},
}


async def _world(
    client: httpx.AsyncClient, admin: dict[str, str], seed: int
) -> list[dict[str, Any]]:
    await create_orgs(client, admin, *STANDARD_TREE)
    assert (await client.post("/v1/surveys", json=V1, headers=admin)).status_code == 201
    rng = random.Random(seed)
    posted = []
    for i in range(120):
        if i == 60:
            assert (
                await client.put("/v1/surveys/repair", json=V2, headers=admin)
            ).status_code == 201
        version = 1 if i < 60 else rng.choice([1, 2])
        answers: dict[str, Any] = {"overall": rng.randint(1, 5)}
        for key, options in OPTIONS[version].items():
            if rng.random() < 0.8:
                answers[key] = rng.choice(options)
        for key, (low, high) in SCALES[version].items():
            if key != "overall" and rng.random() < 0.85:
                answers[key] = rng.randint(low, high)
        body = response_body(
            survey="repair",
            survey_version=version,
            org=rng.choice(["KR-DELIVERY-SEOUL", "KR-DELIVERY-BUSAN", "US-SERVICE", "KR"]),
            external_id=f"r-{i}",
            occurred_at=f"2026-10-{1 + i % 28:02d}T10:00:00Z",
            customer={"type": rng.choice(["end_user", "business_partner"])},
            answers=answers,
        )
        r = await client.post("/v1/responses", json=body, headers=admin)
        assert r.status_code == 201, r.text
        posted.append({**body, "version": version})
    return posted


UNDER = {
    "HQ": {"HQ", "KR", "US", "KR-DELIVERY-SEOUL", "KR-DELIVERY-BUSAN", "US-SERVICE"},
    "KR": {"KR", "KR-DELIVERY-SEOUL", "KR-DELIVERY-BUSAN"},
}
# After KR-DELIVERY-BUSAN moves under US (the current tree).
MOVED = {**UNDER, "KR": {"KR", "KR-DELIVERY-SEOUL"}}
# Windows: a whole month (rollup and pending deltas), and days inside it (raw responses).
WINDOWS = (("period=2026-10", range(1, 32)), ("from=2026-10-08&to=2026-10-20", range(8, 20)))


def _in_scope(
    posted: list[dict[str, Any]],
    org: str,
    *,
    types: set[str] | None,
    descendants: bool,
    under: dict[str, set[str]] = UNDER,
    days: range = range(1, 32),
) -> list[dict[str, Any]]:
    orgs = under[org] if descendants else {org}
    return [
        p
        for p in posted
        if p["org"] in orgs
        and (types is None or p["customer"]["type"] in types)
        and int(p["occurred_at"][8:10]) in days
    ]


async def settle(app: Any, client: httpx.AsyncClient, admin: dict[str, str], state: str) -> Any:
    """Leave the responses pending as deltas, rebuild the rollups, fold them, or fold them and
    then move KR-DELIVERY-BUSAN under US (the move carries the folded sums); the tree of org
    sets the insights must then see."""
    if state == "pending":
        return UNDER
    if state == "rebuilt":  # the rollups recomputed from the responses
        async with app.state.sessionmaker() as session, session.begin():
            await store.rebuild(await driver_connection(session))
        return UNDER
    assert await fold_all(app) > 0
    if state == "folded":
        return UNDER
    r = await client.patch("/v1/orgs/KR-DELIVERY-BUSAN", json={"parent": "US"}, headers=admin)
    assert r.status_code == 200, r.text
    return MOVED


def _brute_pain(
    chosen: list[dict[str, Any]], low_below: int, min_n: int
) -> tuple[int, int, list[dict[str, Any]]]:
    def low(p: dict[str, Any]) -> bool:
        return Fraction(100 * (p["answers"]["overall"] - 1), 4) < low_below

    questions: dict[str, set[str]] = {}
    for p in chosen:
        for key, options in OPTIONS[p["version"]].items():
            questions.setdefault(key, set()).update(options)
    items = []
    for key, options in questions.items():
        answered = [p for p in chosen if key in p["answers"]]
        low_answered = [p for p in answered if low(p)]
        if len(low_answered) < min_n:
            continue
        for option in options:
            low_n = sum(1 for p in low_answered if p["answers"][key] == option)
            all_n = sum(1 for p in answered if p["answers"][key] == option)
            low_share = 100 * low_n / len(low_answered)
            all_share = 100 * all_n / len(answered)
            items.append({
                "survey": "repair", "question": key, "option": option, "low_n": low_n,
                "low_share": low_share, "all_n": all_n, "all_share": all_share,
                "lift": low_share / all_share if all_share else None,
            })  # fmt: skip
    items.sort(key=lambda i: (-i["low_n"], i["survey"], i["question"], i["option"]))
    return len(chosen), sum(1 for p in chosen if low(p)), items


@pytest.mark.parametrize(
    ("seed", "state"), [(1, "pending"), (2, "folded"), (3, "moved"), (4, "rebuilt")]
)
@pytest.mark.parametrize("summing", ["positional", "unnested"])
async def test_pain_points_and_drivers_equal_brute_force(
    app: Any,
    client: httpx.AsyncClient,
    admin: dict[str, str],
    seed: int,
    state: str,
    summing: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The fold sums the packed moments position by position when they are short enough,
    # else element by element: both ways give the brute force's numbers.
    monkeypatch.setattr(store, "POSITIONAL_TERMS", 10**6 if summing == "positional" else 0)
    posted = await _world(client, admin, seed)
    under = await settle(app, client, admin, state)
    weighed = 0
    for (org, query, types, descendants), (window, days) in itertools.product(
        (
            ("HQ", "", None, True),
            ("KR", "&customer_type=end_user", {"end_user"}, True),
            ("KR", "&include_descendants=false", None, False),
            ("KR", "", None, True),
        ),
        WINDOWS,
    ):
        chosen = _in_scope(
            posted, org, types=types, descendants=descendants, under=under, days=days
        )
        for low_below in (50, 60):
            r = await client.get(
                f"/v1/orgs/{org}/pain-points?{window}&min_n=5&low_below={low_below}{query}",
                headers=admin,
            )
            assert r.status_code == 200, r.text
            got = r.json()
            n, low_n, items = _brute_pain(chosen, low_below, 5)
            assert (got["n"], got["low_n"]) == (n, low_n), (org, query)
            assert len(got["items"]) == len(items)
            for g, e in zip(got["items"], items, strict=True):
                assert {k: g[k] for k in ("survey", "question", "option", "low_n", "all_n")} == {
                    k: e[k] for k in ("survey", "question", "option", "low_n", "all_n")
                }
                for k in ("low_share", "all_share", "lift"):
                    assert g[k] == pytest.approx(e[k], abs=1e-9)

        r = await client.get(
            f"/v1/orgs/{org}/drivers?survey=repair&{window}&min_n=5{query}", headers=admin
        )
        assert r.status_code == 200, r.text
        got = r.json()
        needed = ("overall", "speed", "staff")
        rows = [
            p
            for p in chosen
            if all(k in p["answers"] and k in SCALES[p["version"]] for k in needed)
        ]

        def norm(p: dict[str, Any], key: str) -> float:
            low, high = SCALES[p["version"]][key]
            return 100 * (p["answers"][key] - low) / (high - low)

        y = np.array([norm(p, "overall") for p in rows])
        x = np.array([[norm(p, "speed"), norm(p, "staff")] for p in rows]).reshape(len(rows), 2)
        assert got["n"] == len(rows)
        if len(rows) < 5:
            assert got["suppressed"] is True
            continue
        r2, r_values, weights = reference(y, x)
        assert got["suppressed"] is False
        assert got["r2"] == pytest.approx(r2, abs=1e-9)
        by_question = {i["question"]: i for i in got["items"]}
        assert set(by_question) == {"speed", "staff"}
        for key, r_value, weight in zip(("speed", "staff"), r_values, weights, strict=True):
            assert by_question[key]["r"] == pytest.approx(r_value, abs=1e-9)
            assert by_question[key]["importance"] == pytest.approx(weight, abs=1e-9)
            assert by_question[key]["n"] == len(rows)
        importances = [i["importance"] for i in got["items"]]
        assert importances == sorted(importances, reverse=True)
        weighed += 1
    assert weighed >= 3  # the comparison was not vacuous


async def test_suppression_bad_input_and_bound_keys(
    client: httpx.AsyncClient, admin: dict[str, str], make_key: KeyFactory
) -> None:
    await _world(client, admin, 3)
    r = await client.get("/v1/orgs/HQ/pain-points?period=2026-10&min_n=1000", headers=admin)
    assert r.json()["items"] == []
    r = await client.get(
        "/v1/orgs/HQ/drivers?survey=repair&period=2026-10&min_n=1000", headers=admin
    )
    got = r.json()
    assert got["suppressed"] is True
    assert got["r2"] is None
    assert all(i["r"] is None and i["importance"] is None for i in got["items"])
    for url, field in (
        ("/v1/orgs/HQ/drivers?period=2026-10", "survey"),
        ("/v1/orgs/HQ/drivers?period=2026-10&survey=nope", "survey"),
        ("/v1/orgs/HQ/pain-points?period=2026-10&low_below=101", "low_below"),
        ("/v1/orgs/HQ/pain-points", "from"),
        ("/v1/orgs/HQ/pain-points?period=2026-10&min_n=1", "min_n"),
        ("/v1/orgs/HQ/pain-points?period=2026-10&stages=nowhere", "stages"),
    ):
        r = await client.get(url, headers=admin)
        assert r.status_code == 422, (url, r.text)
        assert r.json()["errors"][0]["loc"] == ["query", field], (url, r.json())
    us = bearer(await make_key("insights:read", org="US"))
    assert (
        await client.get("/v1/orgs/KR/pain-points?period=2026-10", headers=us)
    ).status_code == 404
    r = await client.get("/v1/orgs/US/pain-points?period=2026-10&min_n=5", headers=us)
    assert r.status_code == 200
    reader = bearer(await make_key("indices:read"))
    assert (
        await client.get("/v1/orgs/HQ/pain-points?period=2026-10", headers=reader)
    ).status_code == 403
    # A survey without other rating questions: no items, not an error.
    r = await client.get("/v1/orgs/HQ/drivers?survey=delivery-csat&period=2026-10", headers=admin)
    assert r.status_code == 422  # not created in this world: unknown
