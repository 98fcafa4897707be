"""What the tests against the local PDS share: the CLI's environment, running the CLI, reading the database."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from typing import Any

import psycopg

ENV = {
    **os.environ,
    "PLYR_APPVIEW_RESOLVE_IDENTITIES": "0",
    "PLYR_APPVIEW_BATCH_SECONDS": "0.1",
    "PLYR_APPVIEW_RECONCILE_MINUTES": "0",
    "PLYR_APPVIEW_VERIFY_SIGNATURES": "1",
    # The local PDS and PLC listen on loopback, which the SSRF guard refuses by default.
    "PLYR_APPVIEW_ALLOW_PRIVATE_HOSTS": "1",
}
NOW = "2026-11-23T10:00:00.000Z"
CLI = (sys.executable, "-m", "appview.cli")


def cli(env: dict[str, str], *args: str) -> dict[str, Any]:
    out = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result: dict[str, Any] = json.loads(out.stdout)
    return result


async def acli(env: dict[str, str], *args: str, exit_status: int = 0) -> dict[str, Any]:
    """`cli` without blocking the event loop: for runs that talk to servers living in this test process.
    `exit_status` is the status the command must end with (1: a backfill or resync with failed repos, which
    still prints its summary)."""
    proc = await asyncio.create_subprocess_exec(
        *CLI, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), 300)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == exit_status, stderr.decode(errors="replace")[-3000:]
    if exit_status:
        # The summary is on stdout; the failure is one line on stderr, after the logs.
        assert stderr.decode().splitlines()[-1].startswith("error: "), stderr.decode(errors="replace")[-3000:]
    result: dict[str, Any] = json.loads(stdout)
    return result


async def scalar(db: str, query: str, *params: Any) -> Any:
    async with await psycopg.AsyncConnection.connect(db) as conn:
        row = await (await conn.execute(query, params or None)).fetchone()
        return None if row is None else row[0]


async def fetch_rows(db: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(db) as conn:
        return list(await (await conn.execute(query, params or None)).fetchall())
