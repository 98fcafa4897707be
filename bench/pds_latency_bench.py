"""PDS commit -> folded row latency through the raw firehose path, against a real local PDS.

    bash tests/pds/install.sh                       # once: the PDS's npm packages
    uv run python bench/pds_latency_bench.py [--writes 200] [--batch-seconds 0.5]

A local `@atproto/pds` (with its PLC directory) runs on loopback; the firehose source follows it with signature
checks on, into the batch writer, on an embedded Postgres (or `--database-url`). Each write is one
`createRecord` of an fm.plyr.track; latency runs from the moment the PDS answered (the commit is durable and
sequenced) to the moment the track row is visible in `tracks` (polled every 2 ms). Writes are sequential, so the
figure is per-event latency, not throughput; `--batch-seconds` is the writer's batching window (the
production default is 0.5 s, which bounds how long a lone event waits for company).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.postgres import admin_url  # noqa: E402
from indexer.atproto.identity.did_docs import DidDocuments  # noqa: E402
from indexer.atproto.lexicon import Validator  # noqa: E402
from indexer.db import migrate  # noqa: E402
from indexer.firehose.source import FirehoseSource  # noqa: E402
from indexer.fold.writer import BatchWriter  # noqa: E402
from indexer.sync.marks import RepoMarker  # noqa: E402
from tests.pds.server import running_pds, unavailable  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


async def measure(db: str, writes: int, batch_seconds: float) -> list[float]:
    latencies: list[float] = []
    async with running_pds() as pds, DidDocuments(pds.plc_url) as docs:
        account = await pds.create_account("bench")
        marker = RepoMarker(db)
        source = FirehoseSource(f"firehose:ws://127.0.0.1:{pds.port}", docs=docs, marker=marker)
        async with (
            BatchWriter(db, validator=Validator.load(), batch_seconds=batch_seconds) as writer,
            await psycopg.AsyncConnection.connect(db, autocommit=True) as conn,
        ):
            task = asyncio.create_task(writer.run(source.events()))
            try:
                # The source connects in its own task and exposes no event for it; a short poll is enough here.
                while source.connections == 0:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
                for i in range(writes):
                    record = {"title": f"t{i}", "artist": "b", "fileType": "mp3", "createdAt": "2026-11-23T10:00:00Z"}
                    created = await pds.create(account, "fm.plyr.track", record)
                    t0 = time.perf_counter()
                    while True:
                        cur = await conn.execute("SELECT 1 FROM tracks WHERE uri = %s", (created["uri"],))
                        if await cur.fetchone() is not None:
                            break
                        await asyncio.sleep(0.002)
                    latencies.append(time.perf_counter() - t0)
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                await marker.aclose()
    return latencies


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--writes", type=int, default=200)
    ap.add_argument("--batch-seconds", type=float, action="append")
    ap.add_argument("--database-url", default=os.environ.get("PLYR_BENCH_DATABASE_URL"))
    args = ap.parse_args()
    why = unavailable()
    if why:
        raise SystemExit(f"local PDS unavailable: {why}")
    windows = args.batch_seconds or [0.5, 0.05]
    rows: list[tuple[float, list[float]]] = []
    with admin_url(args.database_url) as admin:
        for i, window in enumerate(windows):
            name = f"bench_pds_latency_{i}"
            with psycopg.connect(admin, autocommit=True) as c:
                c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                c.execute(f"CREATE DATABASE {name}")
            db = psycopg.conninfo.make_conninfo(admin, dbname=name)
            migrate.upgrade(db)
            rows.append((window, asyncio.run(measure(db, args.writes, window))))
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"# PDS commit -> folded row ({machine})")
    print()
    print("| writer batch window | writes | p50 (ms) | p99 (ms) | max (ms) | mean (ms) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for window, lat in rows:
        ms = [x * 1000 for x in lat]
        print(
            f"| {window:g} s | {len(ms)} | {percentile(ms, 0.5):.1f} | {percentile(ms, 0.99):.1f} |"
            f" {max(ms):.1f} | {statistics.fmean(ms):.1f} |"
        )


if __name__ == "__main__":
    main()
