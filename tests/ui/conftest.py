"""Dashboard fixtures: a data set with every panel's kind of number, and signing in."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.factories import response_body, standard_setup

YEAR = 2026
REASONS = ("late", "damaged", "kind", "other")


def _score(org: str, month: int, i: int) -> int:
    """A CSAT answer that varies by org, month and item (deterministic)."""
    lean = {"KR-DELIVERY-SEOUL": 1, "KR-DELIVERY-BUSAN": 0, "US-SERVICE": -1}[org]
    return max(1, min(5, 3 + lean + ((month * 7 + i * 3) % 5) - 2))


async def seed(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    """The standard tree and survey; 23 months of responses (Seoul and Busan above min_n for
    the year, US-SERVICE below it); targets; a case rule with a resolved case; invitations, one
    answered; two executives with purviews, targets and tasks for the year."""
    await standard_setup(client, admin)
    r = await client.put(
        "/v1/surveys/delivery-csat/case-rule",
        json={"at_most": 2, "sla_hours": 48, "max_age_days": 3650},
        headers=admin,
    )
    assert r.status_code in (200, 201), r.text
    items = []
    per_month = {"KR-DELIVERY-SEOUL": 20, "KR-DELIVERY-BUSAN": 14}
    for k in range(23):  # 2025-01 .. 2026-11
        year, month = YEAR - 1 + k // 12, k % 12 + 1
        for org, count in per_month.items():
            for i in range(count):
                score = _score(org, month, i)
                items.append(
                    response_body(
                        org=org,
                        external_id=f"{org}/{year}-{month:02d}/{i}",
                        occurred_at=f"{year}-{month:02d}-{1 + i:02d}T10:00:00+09:00",
                        customer={"ref": f"c-{org}-{k}-{i}", "type": "end_user"},
                        channel="mobile" if i % 2 else "web",
                        answers={"overall": score, "reason": REASONS[(score + i) % 4]},
                    )
                )
    for i in range(3):
        items.append(
            response_body(
                org="US-SERVICE",
                external_id=f"US/{i}",
                occurred_at=f"{YEAR}-03-0{i + 1}T10:00:00-05:00",
                customer={"ref": f"us-{i}", "type": "end_user"},
                answers={"overall": 4},
            )
        )
    for start in range(0, len(items), 500):
        r = await client.post(
            "/v1/responses/batch", json={"items": items[start : start + 500]}, headers=admin
        )
        assert r.status_code == 200, r.text
        assert r.json()["counts"]["created"] == len(items[start : start + 500]), r.text
    for org, period, csi in (("KR", str(YEAR), 70.0), ("HQ", f"{YEAR}-Q3", 60.0)):
        r = await client.put(f"/v1/orgs/{org}/targets/{period}", json={"csi": csi}, headers=admin)
        assert r.status_code in (200, 201), r.text
    cases = (await client.get("/v1/cases?limit=1", headers=admin)).json()["items"]
    r = await client.patch(
        f"/v1/cases/{cases[0]['id']}",
        json={"status": "resolved", "root_cause": "late driver"},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    for i in range(3):
        r = await client.post(
            "/v1/invitations",
            json={
                "survey": "delivery-csat",
                "org": "KR-DELIVERY-SEOUL",
                "source": "delivery-app",
                "external_id": f"inv-{i}",
                "occurred_at": f"{YEAR}-06-0{i + 1}T10:00:00+09:00",
                "customer": {"ref": f"inv-customer-{i}", "type": "end_user"},
            },
            headers=admin,
        )
        assert r.status_code == 201, r.text
        if i == 0:
            answered = await client.post(
                f"/v1/public/invitations/{r.json()['token']}/response",
                json={"answers": {"overall": 5}},
            )
            assert answered.status_code == 201, answered.text
    for code, org, target in (("E-KIM", "KR", 70.0), ("E-LEE", "US", None)):
        r = await client.post(
            "/v1/executives", json={"code": code, "name": f"Exec {code}"}, headers=admin
        )
        assert r.status_code == 201, r.text
        r = await client.put(
            f"/v1/executives/{code}/purview/{YEAR}", json={"orgs": [org]}, headers=admin
        )
        assert r.status_code in (200, 201), r.text
        if target is not None:
            r = await client.put(
                f"/v1/executives/{code}/targets/{YEAR}", json={"csi": target}, headers=admin
            )
            assert r.status_code in (200, 201), r.text
        r = await client.post(
            f"/v1/orgs/{org}/tasks",
            json={
                "title": f"Call back every unhappy customer of {org}",
                "period": str(YEAR),
                "customer_group": "end_user",
                "due": f"{YEAR}-12-31",
            },
            headers=admin,
        )
        assert r.status_code == 201, r.text
        if code == "E-KIM":
            done = await client.patch(
                f"/v1/tasks/{r.json()['id']}", json={"status": "done"}, headers=admin
            )
            assert done.status_code == 200, done.text


CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


async def sign_in(
    client: httpx.AsyncClient, key: str, *, next_path: str = "/ui/tree"
) -> httpx.Response:
    """Sign in through the form, as a browser does (CSRF cookie and field)."""
    form = await client.get("/ui/sign-in", params={"next": next_path})
    match = CSRF_FIELD.search(form.text)
    assert match, form.text
    return await client.post(
        "/ui/sign-in",
        data={"key": key, "csrf": match.group(1), "next": next_path},
    )


def csrf_of(page: str) -> str:
    match = CSRF_FIELD.search(page)
    assert match, page
    return match.group(1)


DATA_VALUE = re.compile(
    r'data-field="([a-z0-9_]+)"[^>]*>(?:[^<]|<(?!/td|/dd))*?<data value="([^"]+)"'
)


def shown_values(fragment: str) -> dict[str, float]:
    """The exact numbers of a row or panel: data-field → the value of its first <data>."""
    return {name: float(value) for name, value in DATA_VALUE.findall(fragment)}


def row_of(page: str, attribute: str, value: str) -> str:
    """The HTML of the first table row carrying attribute="value"."""
    start = page.index(f'{attribute}="{value}"')
    return page[start : page.index("</tr>", start)]


Json = dict[str, Any]
