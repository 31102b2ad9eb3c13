"""`cx-survey import tasks FILE`, run as the real command against the test database."""

from __future__ import annotations

from pathlib import Path

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from app.platform.config import Settings
from tests.factories import standard_setup
from tests.test_import import count, cx, read_rejects, write_csv, write_jsonl

HEADER = [
    "org",
    "title",
    "period",
    "customer_group",
    "due",
    "weight",
    "external_id",
    "measure.csi_target",
    "measure.stages",
    "measure.survey",
]


async def test_csv_import_rerun_and_rejects(
    committed_client: httpx.AsyncClient,
    committed_admin: dict[str, str],
    settings: Settings,
    engine: AsyncEngine,
    tmp_path: Path,
) -> None:
    await standard_setup(committed_client, committed_admin)
    path = write_csv(
        tmp_path / "tasks.csv",
        [
            HEADER,
            ["KR", "Call back", "2026", "internal", "2026-06-30", "2", "t-1", "", "", ""],  # 2
            [
                "KR-DELIVERY-SEOUL",
                "Delivery 80",
                "2026-Q3",
                "end_user",
                "2026-09-30",
                "",
                "t-2",
                "80",
                "delivery,purchase",
                "delivery-csat",
            ],
            ["US", "Partner portal", "2026", "business_partner", "2026-12-31", "1", "", "", "", ""],
            ["NOWHERE", "x", "2026", "internal", "2026-01-01", "", "t-4", "", "", ""],  # 5
            ["KR", "x", "2026-13", "internal", "2026-01-01", "", "t-5", "", "", ""],  # 6
            ["KR", "x", "2026", "internal", "2026-01-01", "heavy", "t-6", "", "", ""],  # 7
            ["KR", "x", "2026", "internal", "2026-01-01", "", "t-7", "50", "", "no-such"],  # 8
        ],
    )
    first = cx(settings, "import", "tasks", path)
    assert first.returncode == 1, first.stderr
    assert "7 records: created 3, unchanged 0, rejected 4" in first.stderr
    rejects = {r["line"]: r for r in read_rejects(tmp_path / "tasks.csv.rejects.jsonl")}
    assert sorted(rejects) == [5, 6, 7, 8]
    assert rejects[5]["reason"] == "unknown org 'NOWHERE'"
    assert rejects[6]["status"] == "invalid"
    assert rejects[7]["errors"][0]["loc"] == ["weight"]
    assert rejects[8]["errors"] == [{"loc": ["body", "measure", "survey"],
                                     "msg": "unknown survey 'no-such'"}]  # fmt: skip
    assert await count(engine, "tasks") == 3
    r = await committed_client.get("/v1/orgs/HQ/tasks", headers=committed_admin)
    seoul = next(t for t in r.json()["items"] if t["external_id"] == "t-2")
    assert seoul["measure"] == {
        "csi_target": 80.0,
        "stages": ["delivery", "purchase"],
        "customer_type": None,
        "channel": None,
        "survey": "delivery-csat",
    }
    assert seoul["history"][0]["actor"] == "cli"
    # A re-run: lines with external ids are unchanged; the one without is created again.
    r = await committed_client.patch(
        f"/v1/tasks/{seoul['id']}", json={"status": "in_progress"}, headers=committed_admin
    )
    again = cx(settings, "import", "tasks", path)
    assert again.returncode == 1, again.stderr
    assert "7 records: created 1, unchanged 2, rejected 4" in again.stderr
    # Another content under a known external id is a conflict; a closed period refuses.
    await committed_client.post("/v1/executives", json={"code": "E", "name": "E"},
                                headers=committed_admin)  # fmt: skip
    r = await committed_client.put(
        "/v1/executives/E/purview/2025", json={"orgs": ["KR"]}, headers=committed_admin
    )
    assert r.status_code == 201, r.text
    r = await committed_client.post("/v1/evaluations/2025/close", headers=committed_admin)
    assert r.status_code == 200, r.text
    jsonl = write_jsonl(
        tmp_path / "more.jsonl",
        [
            {
                "org": "KR",
                "title": "Call back!",
                "period": "2026",
                "customer_group": "internal",
                "due": "2026-06-30",
                "weight": 2,
                "external_id": "t-1",
            },
            {
                "org": "KR",
                "title": "Late",
                "period": "2025",
                "customer_group": "internal",
                "due": "2025-06-30",
            },
            "{not json",
            {
                "org": "US",
                "title": "Fine",
                "period": "2026-11",
                "customer_group": "internal",
                "due": "2026-11-30",
                "external_id": "u-1",
            },
        ],
    )
    third = cx(settings, "import", "tasks", jsonl)
    assert third.returncode == 1, third.stderr
    assert "4 records: created 1, unchanged 0, rejected 3" in third.stderr
    rejects = {r["line"]: r for r in read_rejects(tmp_path / "more.jsonl.rejects.jsonl")}
    assert rejects[1]["status"] == "conflict"
    assert rejects[2]["status"] == "conflict"
    assert "closed" in rejects[2]["reason"]
    assert rejects[3]["status"] == "invalid"
    bad = write_csv(tmp_path / "bad.csv", [["org", "title", "colour"]])
    refused = cx(settings, "import", "tasks", bad)
    assert refused.returncode == 2, refused.stderr
    assert "unknown column(s): colour" in refused.stderr
