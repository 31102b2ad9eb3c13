"""`cx-survey import responses|orgs FILE`, run as the real command against the test database."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.platform.config import Settings
from tests.conftest import TEST_PSEUDONYM_KEY
from tests.factories import response_body, standard_setup


def cx(settings: Settings, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run `cx-survey ARGS` on the test database; its exit code, stdout and stderr."""
    env = {
        **os.environ,
        "CX_DATABASE_URL": settings.database_url or "",
        "CX_PSEUDONYM_KEY": TEST_PSEUDONYM_KEY,
        "CX_ENV": "test",
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def write_jsonl(path: Path, lines: list[Any]) -> Path:
    """One line per item: dicts as JSON, strings as they are (to write broken lines)."""
    with path.open("wb") as f:
        for line in lines:
            f.write(line.encode() if isinstance(line, str) else orjson.dumps(line))
            f.write(b"\n")
    return path


def write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


def read_rejects(path: Path) -> list[dict[str, Any]]:
    return sorted((orjson.loads(line) for line in path.read_bytes().splitlines()), key=str)


async def count(engine: AsyncEngine, table: str = "responses") -> int:
    async with engine.connect() as conn:
        return int((await conn.exec_driver_sql(f"SELECT count(*) FROM {table}")).scalar_one())


@pytest.fixture
async def world(committed_client: httpx.AsyncClient, committed_admin: dict[str, str]) -> None:
    """The standard org tree and the delivery CSAT survey, committed."""
    await standard_setup(committed_client, committed_admin)


def item(n: int, **overrides: Any) -> dict[str, Any]:
    return response_body(external_id=f"imp-{n}", **overrides)


async def test_jsonl_stores_valid_lines_rejects_the_rest_and_reruns_safely(
    world: None,
    settings: Settings,
    engine: AsyncEngine,
    tmp_path: Path,
    committed_client: httpx.AsyncClient,
    committed_admin: dict[str, str],
) -> None:
    good = [item(n, answers={"overall": 1 + n % 5}) for n in range(2500)]
    lines: list[Any] = [
        *good[:1000],
        item(9001, answers={"overall": 9}),  # line 1001: off the scale
        "{not json",  # line 1002
        "",  # line 1003: blank lines are skipped
        "[1, 2]",  # line 1004: not an object
        item(9002, org="NOWHERE"),  # line 1005
        *good[1000:],
    ]
    path = write_jsonl(tmp_path / "responses.jsonl", lines)

    analyzed = "SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'responses'"
    async with engine.connect() as conn:
        before = (await conn.exec_driver_sql(analyzed)).scalar_one()
    first = cx(settings, "import", "responses", path)
    assert first.returncode == 1, first.stderr
    # The import analyzed what it changed: reads right after it are planned on fresh statistics.
    async with engine.connect() as conn:
        after = (await conn.exec_driver_sql(analyzed)).scalar_one()
    assert after is not None
    assert before is None or after > before
    assert "2,504 records" in first.stderr
    # No server runs here: the import folded what it wrote (the index is current when it ends)
    # and vacuumed the delta tables, so that no read walks the folded rows.
    for table in ("index_deltas", "segment_deltas", "choice_deltas", "moment_deltas", "day_deltas"):
        assert await count(engine, table) == 0, table
    vacuumed = "SELECT last_vacuum FROM pg_stat_user_tables WHERE relname = 'index_deltas'"
    async with engine.connect() as conn:
        assert (await conn.exec_driver_sql(vacuumed)).scalar_one() is not None
    index = await committed_client.get(
        "/v1/orgs/HQ/index", params={"period": "2026-11"}, headers=committed_admin
    )
    assert index.json()["n"] == 2500
    assert "created 2,500" in first.stderr
    assert "invalid 4" in first.stderr
    rejects_path = tmp_path / "responses.jsonl.rejects.jsonl"
    assert "4 rejected line(s) written to" in first.stderr
    rejects = read_rejects(rejects_path)
    assert [(r["line"], r["status"]) for r in sorted(rejects, key=lambda r: r["line"])] == [
        (1001, "invalid"),
        (1002, "invalid"),
        (1004, "invalid"),
        (1005, "invalid"),
    ]
    by_line = {r["line"]: r for r in rejects}
    assert by_line[1001]["errors"][0]["loc"] == ["answers", "overall"]
    assert "answers.overall" in by_line[1001]["reason"]
    assert "not valid JSON" in by_line[1002]["reason"]
    assert "not a JSON object" in by_line[1004]["reason"]
    assert "NOWHERE" in by_line[1005]["reason"]
    assert await count(engine) == 2500

    # What the import stored is what the API would have stored: same shape and score.
    r = await committed_client.post("/v1/responses", json=good[7], headers=committed_admin)
    assert r.status_code == 200, r.text  # the API sees the imported one as the same response
    assert r.json()["score"] == {"raw": 3, "normalized": 50.0}
    assert r.json()["customer"] == {"type": "end_user"}

    again = cx(settings, "import", "responses", path)
    assert again.returncode == 1
    assert "created 0, duplicate 2,500" in again.stderr
    assert read_rejects(rejects_path) == rejects  # replaced, not appended
    assert await count(engine) == 2500

    # Every imported response counts in the index at once.
    r = await committed_client.get(
        "/v1/orgs/HQ/index", params={"period": "2026"}, headers=committed_admin
    )
    assert r.status_code == 200, r.text
    assert r.json()["n"] == 2500


async def test_csv_columns_become_the_api_body(
    world: None,
    settings: Settings,
    engine: AsyncEngine,
    tmp_path: Path,
    committed_client: httpx.AsyncClient,
    committed_admin: dict[str, str],
) -> None:
    header = [
        "survey",
        "org",
        "occurred_at",
        "source",
        "external_id",
        "channel",
        "customer_ref",
        "customer_type",
        "answer.overall",
        "answer.reason",
        "answer.comment",
        "segment.tier",
    ]
    path = write_csv(
        tmp_path / "responses.csv",
        [
            header,
            ["delivery-csat", "KR-DELIVERY-SEOUL", "2026-11-20T10:00:00+09:00", "pos", "c1",
             "mobile", "cust-1", "end_user", "4", "late", "kind, and fast", "gold"],
            # empty cells are left out: no channel, no customer ref, no optional answers
            ["delivery-csat", "KR-DELIVERY-BUSAN", "2026-11-21T10:00:00Z", "pos", "c2",
             "", "", "business_partner", "5", "", "", ""],
            ["delivery-csat", "KR", "2026-11-21T10:00:00Z", "pos", "c3"],  # too few cells
            ["delivery-csat", "KR", "2026-11-21T10:00:00Z", "pos", "c4",
             "", "", "end_user", "five", "", "", ""],  # not a number
            ["delivery-csat", "KR", "2026-11-21T10:00:00Z", "pos", "c5",
             "", "", "end_user", "\u0664", "", "", ""],  # ARABIC-INDIC FOUR: no JSON number
        ],
    )  # fmt: skip
    done = cx(settings, "import", "responses", path)
    assert done.returncode == 1, done.stderr
    assert "created 2" in done.stderr
    rejects = {r["line"]: r for r in read_rejects(tmp_path / "responses.csv.rejects.jsonl")}
    assert set(rejects) == {4, 5, 6}
    assert "expected 12 cells, found 5" in rejects[4]["reason"]
    assert rejects[5]["errors"][0]["loc"] == ["answers", "overall"]
    assert rejects[6]["errors"][0]["loc"] == ["answers", "overall"]

    r = await committed_client.get("/v1/responses", headers=committed_admin)
    items = {i["external_id"]: i for i in r.json()["items"]}
    assert set(items) == {"c1", "c2"}
    c1, c2 = items["c1"], items["c2"]
    assert c1["answers"] == {"overall": 4, "reason": "late", "comment": "kind, and fast"}
    assert c1["channel"] == "mobile"
    assert c1["score"] == {"raw": 4, "normalized": 75.0}
    assert c1["segments"] == {"tier": "gold"}
    assert c2["segments"] is None
    assert c2["answers"] == {"overall": 5}
    assert c2["channel"] is None
    assert c2["customer"]["type"] == "business_partner"
    assert await count(engine) == 2


async def test_conflicts_and_erased_responses_are_rejected_with_their_reason(
    world: None,
    settings: Settings,
    tmp_path: Path,
    committed_client: httpx.AsyncClient,
    committed_admin: dict[str, str],
) -> None:
    stored = await committed_client.post("/v1/responses", json=item(1), headers=committed_admin)
    erased = await committed_client.post("/v1/responses", json=item(2), headers=committed_admin)
    assert stored.status_code == erased.status_code == 201
    r = await committed_client.delete(
        f"/v1/responses/{erased.json()['id']}", headers=committed_admin
    )
    assert r.status_code == 204
    path = write_jsonl(tmp_path / "r.jsonl", [item(1), item(1, answers={"overall": 1}), item(2)])
    done = cx(settings, "import", "responses", path)
    assert done.returncode == 1
    assert "created 0, duplicate 1, conflict 1, invalid 0, gone 1" in done.stderr
    rejects = {r["line"]: r for r in read_rejects(tmp_path / "r.jsonl.rejects.jsonl")}
    assert 1 not in rejects
    assert rejects[2]["status"] == "conflict"
    assert rejects[3]["status"] == "gone"


async def test_source_option_fills_in_and_binds_the_source(
    world: None, settings: Settings, engine: AsyncEngine, tmp_path: Path
) -> None:
    no_source = {k: v for k, v in item(1).items() if k != "source"}
    path = write_jsonl(
        tmp_path / "r.ndjson", [no_source, item(2, source="kiosk"), item(3, source="pos")]
    )
    done = cx(settings, "import", "responses", path, "--source", "pos")
    assert done.returncode == 1, done.stderr
    assert "created 2" in done.stderr
    rejects = read_rejects(tmp_path / "r.ndjson.rejects.jsonl")
    assert [r["line"] for r in rejects] == [2]
    async with engine.connect() as conn:
        sources = (await conn.exec_driver_sql("SELECT DISTINCT source FROM responses")).all()
    assert sources == [("pos",)]


async def test_files_that_cannot_be_imported_fail_clearly_and_store_nothing(
    world: None, settings: Settings, engine: AsyncEngine, tmp_path: Path
) -> None:
    missing = cx(settings, "import", "responses", tmp_path / "absent.jsonl")
    assert missing.returncode == 2
    assert "no such file" in missing.stderr
    assert "Traceback" not in missing.stderr

    unknown_suffix = tmp_path / "responses.xlsx"
    unknown_suffix.write_text("x")
    r = cx(settings, "import", "responses", unknown_suffix)
    assert r.returncode == 2
    assert "--format" in r.stderr

    unknown_column = write_csv(
        tmp_path / "bad.csv",
        [
            ["survey", "org", "occurred_at", "external_id", "customer_type", "rating"],
            ["delivery-csat", "KR", "2026-11-20T10:00:00Z", "x1", "end_user", "4"],
        ],
    )
    r = cx(settings, "import", "responses", unknown_column)
    assert r.returncode == 2
    assert "unknown column(s): rating" in r.stderr
    assert "Traceback" not in r.stderr

    missing_column = write_csv(tmp_path / "short.csv", [["survey", "org"], ["delivery-csat", "KR"]])
    r = cx(settings, "import", "responses", missing_column)
    assert r.returncode == 2
    assert "missing column(s): occurred_at, external_id, customer_type" in r.stderr

    csv_named_jsonl = write_csv(
        tmp_path / "oops.jsonl", [["survey", "org"], ["delivery-csat", "KR"]]
    )
    r = cx(settings, "import", "responses", csv_named_jsonl)
    assert r.returncode == 2
    assert "is this a JSON Lines file?" in r.stderr
    assert await count(engine) == 0


async def test_orgs_in_any_order_rerun_and_conflicts(
    committed_client: httpx.AsyncClient,
    committed_admin: dict[str, str],
    settings: Settings,
    engine: AsyncEngine,
    tmp_path: Path,
) -> None:
    r = await committed_client.post(
        "/v1/orgs", json={"code": "HQ", "name": "Headquarters"}, headers=committed_admin
    )
    assert r.status_code == 201
    path = write_csv(
        tmp_path / "orgs.csv",
        [
            ["code", "name", "parent", "kind"],
            ["KR-SEOUL", "Seoul", "KR", "branch"],  # 2: parent comes later
            ["KR", "Korea", "HQ", "country"],  # 3: parent exists already
            ["HQ", "Headquarters", "", ""],  # 4: exists unchanged
            ["KR", "Korea again", "HQ", ""],  # 5: twice in the file
            ["LOOP-A", "A", "LOOP-B", ""],  # 6: a cycle
            ["LOOP-B", "B", "LOOP-A", ""],  # 7
            ["ORPHAN", "Orphan", "NOWHERE", ""],  # 8
            ["ORPHAN-KID", "Kid", "ORPHAN", ""],  # 9: under a refused org
            ["bad code!", "Bad", "", ""],  # 10
            ["US", "United States", "HQ", "country"],  # 11
        ],
    )
    first = cx(settings, "import", "orgs", path)
    assert first.returncode == 1, first.stderr
    assert "10 records: created 3, unchanged 1, rejected 6" in first.stderr
    rejects = {r["line"]: r for r in read_rejects(tmp_path / "orgs.csv.rejects.jsonl")}
    assert set(rejects) == {5, 6, 7, 8, 9, 10}
    assert "line 3 already" in rejects[5]["reason"]
    assert "own ancestor" in rejects[6]["reason"]
    assert "unknown parent 'NOWHERE'" in rejects[8]["reason"]
    assert "NOWHERE" in rejects[9]["reason"]
    assert rejects[10]["errors"][0]["loc"] == ["code"]

    r = await committed_client.get("/v1/orgs/KR-SEOUL", headers=committed_admin)
    assert r.json()["path"] == ["HQ", "KR", "KR-SEOUL"]
    assert r.json()["kind"] == "branch"
    assert await count(engine, "orgs") == 4

    again = cx(settings, "import", "orgs", path)
    assert "created 0, unchanged 4, rejected 6" in again.stderr
    assert await count(engine, "orgs") == 4

    moved = write_jsonl(tmp_path / "moved.jsonl", [{"code": "KR", "name": "Korea", "parent": "US"}])
    r2 = cx(settings, "import", "orgs", moved)
    assert r2.returncode == 1
    (reject,) = read_rejects(tmp_path / "moved.jsonl.rejects.jsonl")
    assert reject["status"] == "conflict"
    r = await committed_client.get("/v1/orgs/KR", headers=committed_admin)
    assert r.json()["parent"] == "HQ"


async def test_writer_processes_store_the_same_and_rerun_safely(
    world: None, settings: Settings, engine: AsyncEngine, tmp_path: Path
) -> None:
    lines: list[Any] = [item(n) for n in range(2500)]
    lines[1700] = item(1700, answers={"overall": 0})  # off the scale
    path = write_jsonl(tmp_path / "r.jsonl", lines)
    done = cx(settings, "import", "responses", path, "--workers", "2")
    assert done.returncode == 1, done.stderr
    assert "created 2,499, duplicate 0, conflict 0, invalid 1" in done.stderr
    (reject,) = read_rejects(tmp_path / "r.jsonl.rejects.jsonl")
    assert reject["line"] == 1701
    assert reject["errors"][0]["loc"] == ["answers", "overall"]
    again = cx(settings, "import", "responses", path, "--workers", "2")
    assert "created 0, duplicate 2,499" in again.stderr
    assert await count(engine) == 2499


async def test_bad_utf8_and_nul_lines_are_rejects_not_crashes(
    world: None, settings: Settings, engine: AsyncEngine, tmp_path: Path
) -> None:
    path = tmp_path / "r.jsonl"
    with path.open("wb") as f:
        f.write(b"\xef\xbb\xbf" + orjson.dumps(item(1)) + b"\n")  # a BOM is not an error
        f.write(orjson.dumps(item(2)).replace(b"imp-2", b"imp-\xff\xfe") + b"\n")
        f.write(orjson.dumps(response_body(external_id="nul\u0000id")) + b"\n")
        f.write(orjson.dumps(item(4)) + b"\n")
    done = cx(settings, "import", "responses", path)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "created 2" in done.stderr
    rejects = {r["line"]: r for r in read_rejects(tmp_path / "r.jsonl.rejects.jsonl")}
    assert rejects[2]["reason"] == "not valid UTF-8"
    assert rejects[3]["errors"][0]["loc"] == ["external_id"]
    assert await count(engine) == 2

    csv_path = tmp_path / "r.csv"
    csv_path.write_bytes(
        b"survey,org,occurred_at,source,external_id,customer_type,answer.overall\n"
        b"delivery-csat,KR,2026-11-20T10:00:00Z,pos,u1,end_user,4\n"
        b"delivery-csat,KR,2026-11-20T10:00:00Z,pos,u\xff2,end_user,4\n"
    )
    done = cx(settings, "import", "responses", csv_path)
    assert done.returncode == 1, done.stderr
    (reject,) = read_rejects(tmp_path / "r.csv.rejects.jsonl")
    assert reject == {"line": 3, "status": "invalid", "reason": "not valid UTF-8"}


def test_an_unreachable_database_stops_the_import_with_status_3(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "r.jsonl", [item(1)])
    env = {
        **os.environ,
        "CX_DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1:1/nothing",
        "CX_PSEUDONYM_KEY": TEST_PSEUDONYM_KEY,
        "CX_ENV": "test",
    }
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "import", "responses", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    assert "error:" in done.stderr
