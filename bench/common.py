"""What the benchmark scripts share: the database they run on, setup of orgs and surveys."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import IO

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from app.keys.scopes import Scope
from app.keys.service import Principal
from app.platform.config import Settings

LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
BENCH_PRINCIPAL = Principal(key_id="bench", name="bench", scopes=frozenset({Scope.admin}))


def plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def server_url() -> str:
    """CX_BENCH_SERVER_URL, else a server on 127.0.0.1:5432, else the embedded one."""
    configured = os.environ.get("CX_BENCH_SERVER_URL")
    if configured:
        return configured

    async def answers() -> bool:
        try:
            conn = await asyncpg.connect(LOCAL_SERVER, timeout=3)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False
        await conn.close()
        return True

    if asyncio.run(answers()):
        return LOCAL_SERVER
    from pathlib import Path

    from app.platform.embedded import start_embedded

    return plain(start_embedded(Path(".cx-data"), database="postgres"))


def database_url(server: str, name: str) -> str:
    url = make_url(plain(server)).set(database=name).render_as_string(hide_password=False)
    return url.replace("postgresql://", "postgresql+asyncpg://", 1)


async def recreate_database(server: str, name: str) -> None:
    conn = await asyncpg.connect(plain(server))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def drop_database(server: str, name: str) -> None:
    conn = await asyncpg.connect(plain(server))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def bench_settings(url: str) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=url,
        db_pool_size=4,
        db_statement_timeout_ms=0,
    )


def cli_path() -> str:
    return os.path.join(os.path.dirname(sys.executable), "cx-survey")


def start_server(
    url: str,
    port: int,
    *args: str,
    env: Mapping[str, str] | None = None,
    log: IO[bytes] | None = None,
) -> subprocess.Popen[bytes]:
    """`cx-survey serve` on `url` (extra serve options in `args`, extra CX_* settings in `env`,
    its output to `log` if given), once /readyz answers 200."""
    settings = {**os.environ, "CX_DATABASE_URL": url, "CX_LOG_LEVEL": "warning", **(env or {})}
    proc = subprocess.Popen(
        [cli_path(), "serve", "--port", str(port), *args],
        env=settings,
        stdout=log,
        stderr=subprocess.STDOUT if log is not None else None,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with status {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.terminate()
    raise SystemExit("the server did not become ready")


def create_key(url: str, *scopes: str, org: str | None = None) -> str:
    """A new API key with `scopes` (bound to `org` if given), made by `cx-survey keys create`."""
    env = {**os.environ, "CX_DATABASE_URL": url}
    flags = [arg for scope in scopes for arg in ("--scope", scope)]
    if org is not None:
        flags += ["--org", org]
    out = subprocess.run(
        [cli_path(), "keys", "create", "--name", "bench", *flags],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def process_tree(pid: int) -> list[int]:
    """A process and its descendants (uvicorn's master and workers), those still alive."""
    found = []
    pids = [pid]
    while pids:
        current = pids.pop()
        try:
            with open(f"/proc/{current}/task/{current}/children") as f:
                pids.extend(int(c) for c in f.read().split())
        except FileNotFoundError:
            continue
        found.append(current)
    return found


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (uvicorn workers), in MB."""
    total = 0
    for current in process_tree(pid):
        try:
            with open(f"/proc/{current}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except FileNotFoundError:
            continue
    return total / 1024
