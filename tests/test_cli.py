"""The `cx-survey keys` commands, run as the installed console script on a database of their own."""

from __future__ import annotations

import asyncio
import hashlib
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from app.platform.migrate import upgrade
from tests.conftest import _plain, bearer
from tests.scratch import CLI, Run, api, cli_env, cx_survey, free_port, scratch_database

KEY = re.compile(r"^cx_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
PROBLEM = "application/problem+json"


@pytest.fixture
async def db(server_url: str) -> AsyncIterator[str]:
    """A migrated database of this test's own."""
    async with scratch_database(server_url) as url:
        await upgrade(url)
        yield url


@pytest.fixture
def env(db: str) -> dict[str, str]:
    return cli_env(db)


async def _key_rows(url: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(_plain(url))
    try:
        return list(await conn.fetch("SELECT * FROM api_keys ORDER BY created_at"))
    finally:
        await conn.close()


def _created(run: Run) -> tuple[str, str, str]:
    """The key printed by `keys create` (alone on stdout), with its id and secret."""
    assert run.code == 0, run.stderr
    assert run.stdout.endswith("\n")
    assert run.stdout.count("\n") == 1
    key = run.stdout.strip()
    match = KEY.match(key)
    assert match, run.stdout
    return key, match.group(1), match.group(2)


def _table(run: Run) -> list[list[str]]:
    assert run.code == 0, run.stderr
    return [line.split() for line in run.stdout.splitlines()]


def assert_problem(r: httpx.Response, status: int, slug: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith(PROBLEM)
    assert r.json()["type"].endswith("/" + slug)


async def test_create_list_revoke(db: str, env: dict[str, str], tmp_path: Path) -> None:
    created = await cx_survey(
        "keys",
        "create",
        "--name",
        "ops",
        "--scope",
        "orgs:write",
        "--scope",
        "surveys:read",
        env=env,
        cwd=tmp_path,
    )
    key, key_id, secret = _created(created)
    assert secret not in created.stderr

    # Only the hash of the secret is stored.
    [row] = await _key_rows(db)
    assert row["id"] == key_id
    assert row["name"] == "ops"
    assert bytes(row["secret_hash"]) == hashlib.sha256(secret.encode()).digest()
    assert sorted(row["scopes"]) == ["orgs:write", "surveys:read"]
    assert row["org_id"] is None
    assert row["source"] is None
    assert row["revoked_at"] is None

    async with api(db) as client:
        r = await client.post(
            "/v1/orgs", json={"code": "HQ", "name": "HQ", "parent": None}, headers=bearer(key)
        )
        assert r.status_code == 201, r.text
        assert (await client.get("/v1/surveys", headers=bearer(key))).status_code == 200
        assert_problem(await client.get("/v1/responses", headers=bearer(key)), 403, "forbidden")

    listed = _table(await cx_survey("keys", "list", env=env, cwd=tmp_path))
    assert listed[0] == ["id", "name", "scopes", "org", "source", "created", "revoked", "rate"]
    assert len(listed) == 2
    assert listed[1][:5] == [key_id, "ops", "orgs:write,surveys:read", "-", "-"]
    assert listed[1][6] == "-"

    revoked = await cx_survey("keys", "revoke", key_id, env=env, cwd=tmp_path)
    assert revoked.code == 0, revoked.stderr
    assert key_id in revoked.stderr
    async with api(db) as client:
        r = await client.get("/v1/orgs", headers=bearer(key))
        assert_problem(r, 401, "unauthenticated")
        assert r.headers["www-authenticate"].startswith("Bearer")

    listed = _table(await cx_survey("keys", "list", env=env, cwd=tmp_path))
    assert listed[1][0] == key_id
    assert listed[1][6] != "-"  # the revocation time
    for run_output in (created.stderr, revoked.stderr, "\n".join(map(" ".join, listed))):
        assert secret not in run_output

    # Revoking again is harmless and keeps the first revocation time.
    again = await cx_survey("keys", "revoke", key_id, env=env, cwd=tmp_path)
    assert again.code == 0, again.stderr
    assert _table(await cx_survey("keys", "list", env=env, cwd=tmp_path))[1] == listed[1]


async def test_bound_key_is_listed_with_its_org_and_source(
    db: str, env: dict[str, str], tmp_path: Path
) -> None:
    admin, _, _ = _created(
        await cx_survey("keys", "create", "--name", "a", "--scope", "admin", env=env, cwd=tmp_path)
    )
    async with api(db) as client:
        for code, parent in (("HQ", None), ("KR", "HQ")):
            r = await client.post(
                "/v1/orgs",
                json={"code": code, "name": code, "parent": parent},
                headers=bearer(admin),
            )
            assert r.status_code == 201, r.text

    shop, shop_id, _ = _created(
        await cx_survey(
            "keys",
            "create",
            "--name",
            "web shop",
            "--scope",
            "responses:write",
            "--org",
            "KR",
            "--source",
            "web-shop",
            "--rate",
            "500",
            env=env,
            cwd=tmp_path,
        )
    )
    run = await cx_survey("keys", "list", env=env, cwd=tmp_path)
    assert run.code == 0, run.stderr
    [line] = [line for line in run.stdout.splitlines() if line.startswith(shop_id)]
    # Its own rate limit: 500 a second, a burst of twice that.
    assert re.match(
        rf"^{shop_id}\s+web shop\s+responses:write\s+KR\s+web-shop\s+\S+\s+-\s+500/s,burst=1000$",
        line,
    )

    async with api(db) as client:  # the binding holds: KR's subtree only
        r = await client.get("/v1/orgs", headers=bearer(shop))
        assert r.status_code == 200, r.text
        assert [o["code"] for o in r.json()["items"]] == ["KR"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ["keys", "create", "--name", "x", "--scope", "everything"],
            2,
            "Invalid value for '--scope': Value error, 'everything' is not one of",
        ),
        (["keys", "create", "--name", "x"], 2, "Missing option '--scope'"),
        (
            ["keys", "create", "--name", "x", "--scope", "admin", "--org", "NOWHERE"],
            1,
            "error: unknown org 'NOWHERE'",
        ),
        (["keys", "revoke", "0123456789ab"], 1, "error: No API key with id '0123456789ab'."),
        (["keys", "frobnicate"], 2, "No such command 'frobnicate'"),
    ],
    ids=["unknown-scope", "no-scope", "unknown-org", "revoke-unknown", "unknown-command"],
)
async def test_errors_exit_non_zero_with_a_message(
    db: str, env: dict[str, str], tmp_path: Path, args: list[str], code: int, message: str
) -> None:
    run = await cx_survey(*args, env=env, cwd=tmp_path)
    assert run.code == code, run
    assert message in run.said
    assert "Traceback" not in run.stderr
    assert run.stdout == ""
    assert await _key_rows(db) == []


@pytest.mark.parametrize(
    "options",
    [
        pytest.param(["--name", "x" * 201], id="name-too-long"),
        pytest.param(["--name", ""], id="empty-name"),
        pytest.param(["--name", "x", "--source", "s" * 65], id="source-too-long"),
        pytest.param(["--name", "x", "--source", "web shop"], id="source-not-a-code"),
    ],
)
async def test_values_the_api_refuses_are_refused(
    db: str, env: dict[str, str], tmp_path: Path, options: list[str]
) -> None:
    run = await cx_survey("keys", "create", *options, "--scope", "admin", env=env, cwd=tmp_path)
    assert await _key_rows(db) == []
    assert run.code != 0
    assert run.said.startswith("error:") or "Invalid value" in run.said
    assert "Traceback" not in run.stderr
    assert run.stdout == ""


async def test_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    env = cli_env("postgresql://postgres@127.0.0.1:1/nothing")
    run = await cx_survey("keys", "list", env=env, cwd=tmp_path)
    assert run.code != 0
    assert "Traceback" not in run.stderr
    assert run.said.startswith("error:")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"env": "production", "pseudonym_key": ""},
            "CX_PSEUDONYM_KEY must be set to a secret of your own when CX_ENV=production",
        ),
        ({"pseudonym_key": "short"}, "CX_PSEUDONYM_KEY must be at least 32 characters long"),
        ({"reporting_timezone": "Mars/Olympus_Mons"}, "unknown IANA time zone"),
        ({"database_url": "mysql://db/x"}, "CX_DATABASE_URL must be a postgresql://"),
    ],
    ids=["production-dev-key", "short-key", "unknown-zone", "not-postgresql"],
)
async def test_invalid_configuration_is_refused(
    db: str, tmp_path: Path, settings: dict[str, str], message: str
) -> None:
    overrides = dict(settings)
    env = cli_env(overrides.pop("database_url", db), **overrides)
    if env["CX_PSEUDONYM_KEY"] == "":
        del env["CX_PSEUDONYM_KEY"]  # the built-in development key
    run = await cx_survey("keys", "list", env=env, cwd=tmp_path)
    assert run.code == 2, run
    assert "invalid configuration" in run.said
    assert message in run.said
    assert "Traceback" not in run.stderr
    assert run.stdout == ""


async def test_commands_migrate_an_empty_database_first(server_url: str, tmp_path: Path) -> None:
    async with scratch_database(server_url) as url:
        run = await cx_survey("keys", "list", env=cli_env(url), cwd=tmp_path)
        assert _table(run) == [
            ["id", "name", "scopes", "org", "source", "created", "revoked", "rate"]
        ]
        conn = await asyncpg.connect(_plain(url))
        try:
            assert await conn.fetchval("SELECT count(*) FROM alembic_version") == 1
            assert await conn.fetchval("SELECT to_regclass('api_keys') IS NOT NULL")
        finally:
            await conn.close()


def _read(log: Path) -> str:
    return log.read_text(errors="replace")


async def _wait_ready(base: str, server: asyncio.subprocess.Process, log: Path) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        for _ in range(240):
            assert server.returncode is None, _read(log)
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.5)
    raise AssertionError("the server did not become ready:\n" + _read(log))


async def test_keys_while_the_server_runs(db: str, env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        server = await asyncio.create_subprocess_exec(
            str(CLI),
            "serve",
            "--port",
            str(port),
            env=env,
            cwd=tmp_path,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=sink,
            stderr=sink,
        )
    try:
        await _wait_ready(base, server, log)
        key, key_id, _ = _created(
            await cx_survey(
                "keys", "create", "--name", "live", "--scope", "admin", env=env, cwd=tmp_path
            )
        )
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            body = {"code": "HQ", "name": "Headquarters", "parent": None}
            r = await client.post("/v1/orgs", json=body, headers=bearer(key))
            assert r.status_code == 201, r.text
            r = await client.get("/v1/orgs/HQ", headers=bearer(key))
            assert r.json()["path"] == ["HQ"]

            revoked = await cx_survey("keys", "revoke", key_id, env=env, cwd=tmp_path)
            assert revoked.code == 0, revoked.stderr
            assert_problem(
                await client.get("/v1/orgs", headers=bearer(key)), 401, "unauthenticated"
            )
    finally:
        if server.returncode is None:
            server.terminate()
            try:
                await asyncio.wait_for(server.wait(), 60)
            except TimeoutError:
                server.kill()
                await server.wait()
    # uvicorn ends by re-raising the signal it shut down gracefully for.
    assert server.returncode in (0, -signal.SIGTERM), _read(log)
    assert "Application shutdown complete" in _read(log)
    assert "Traceback" not in _read(log)
