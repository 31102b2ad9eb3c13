"""Throwaway databases and `cx-survey` subprocesses for tests about the platform itself."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import TEST_PSEUDONYM_KEY, _admin, _with_database

CLI = Path(sys.executable).with_name("cx-survey")  # the console script, as installed
CLI_TIMEOUT = 180  # seconds; the machine may be busy


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
