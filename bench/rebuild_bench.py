"""Rebuild throughput: the set-based `rebuild` against the live fold run over the log batch by batch, same log,
same server, same run.

    uv run python bench/rebuild_bench.py [--events 200000] [--database-url URL] [--explain]

The log is the generated capture of bench/replay_bench.py (likes, lists, comments, deletes, account flips,
handle changes, invalid records) replayed through the batch writer, plus operator takedowns (accounts and
records, some undone). Then, one after the other on that database: the batched rebuild (baseline, 20,000 events
per batch, as `rebuild` used to run), the set-based rebuild in place (`--offline`), and the set-based rebuild
online (shadow tables swapped in) with one worker connection and with two (the default). Every one must leave the
state hash the live fold built. Prints a Markdown table for docs/benchmarks.md and the seconds of each step or
task (online tasks run two at a time, so their sum exceeds the wall time); `--explain` also prints EXPLAIN ANALYZE
of the state statements.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import random
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.postgres import admin_url  # noqa: E402
from bench.replay_bench import fresh_db, make_capture, run_ours  # noqa: E402
from indexer.fold import sql  # noqa: E402
from indexer.fold.rebuild import rebuild, rebuild_batched  # noqa: E402
from indexer.moderation import takedowns  # noqa: E402
from indexer.moderation.takedowns import Subject  # noqa: E402
from indexer.status import state_hash  # noqa: E402


async def _hash(url: str) -> str:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await state_hash(conn)


async def take_down(url: str, seed: int = 11) -> int:
    """Operator takedowns on the ingested log: 1 % of the accounts, 0.5 % of the tracks and likes, a fifth of
    them undone again. Returns the changes made."""
    rng = random.Random(seed)
    made = 0
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute("SELECT did FROM actors ORDER BY did")
        dids = [str(r[0]) for r in await cur.fetchall()]
        cur = await conn.execute(
            "SELECT did, collection, rkey FROM records WHERE collection IN ('fm.plyr.track', 'fm.plyr.like')"
            " ORDER BY did, collection, rkey"
        )
        keys = [(str(d), str(c), str(k)) for d, c, k in await cur.fetchall()]
        subjects = [Subject("account", d) for d in rng.sample(dids, max(1, len(dids) // 100))]
        subjects += [Subject("record", d, c, k) for d, c, k in rng.sample(keys, max(1, len(keys) // 200))]
        for subject in subjects:
            await takedowns.change(conn, subject, applied=True, reason="bench", by="bench")
            made += 1
        for subject in rng.sample(subjects, len(subjects) // 5):
            await takedowns.change(conn, subject, applied=False, reason=None, by="bench")
            made += 1
    return made


async def explain(url: str) -> None:
    """EXPLAIN ANALYZE of each state statement, on a scratch copy of the tables (rolled back)."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        async with conn.transaction(force_rollback=True):
            await conn.execute("SET LOCAL work_mem = '256MB'")  # as `rebuild` runs them
            await conn.execute("TRUNCATE records, takedowns, actors")
            for name, stmt in (
                ("records", sql.REBUILD_RECORDS),
                ("takedowns", sql.REBUILD_TAKEDOWNS),
                ("actors", sql.REBUILD_ACTORS),
            ):
                cur = await conn.execute(f"EXPLAIN (ANALYZE, BUFFERS) {stmt}")  # type: ignore[arg-type]
                print(f"\n## EXPLAIN ANALYZE {name}\n")
                for (line,) in await cur.fetchall():
                    print(f"    {line}")


class _Steps(logging.Handler):
    """The seconds of each step (in place) or task (online) that `rebuild` logs when it completes."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.seconds: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.seconds = dict(getattr(record, "seconds", {}))


async def timed(run: Callable[[], Awaitable[int]]) -> tuple[float, dict[str, float]]:
    """Seconds of the whole run, and of each step or task it logs."""
    handler = _Steps()
    logger = logging.getLogger("indexer.fold.rebuild")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        started = time.perf_counter()
        await run()
        return time.perf_counter() - started, handler.seconds
    finally:
        logger.removeHandler(handler)


async def settle(url: str) -> None:
    """Vacuum what the previous contender left (untimed), so that autovacuum's passes over the tables it just
    wrote do not run during the next one: each starts from the same quiet database."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("VACUUM ANALYZE")


async def bench(url: str, events: int, capture: Path, do_explain: bool) -> None:
    ingest = await run_ours(url, capture, events)
    changes = await take_down(url)
    live = await _hash(url)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute("VACUUM ANALYZE")
        cur = await conn.execute("SELECT count(*), (SELECT count(*) FROM records) FROM events")
        row = await cur.fetchone()
        assert row is not None
        n_events, n_records = int(row[0]), int(row[1])

    results: list[tuple[str, float, str, dict[str, float]]] = []
    batched_s = time.perf_counter()
    await rebuild_batched(url, batch_size=20_000)
    results.append(
        ("batched live fold, 20,000 per batch (baseline)", time.perf_counter() - batched_s, await _hash(url), {})
    )
    contenders: list[tuple[str, bool, int]] = [
        ("set-based in place, `--offline`", False, 1),
        ("set-based online, shadow tables, 1 worker", True, 1),
        ("set-based online, shadow tables, 2 workers (default)", True, 2),
    ]
    for label, online, workers in contenders:
        await settle(url)
        seconds, steps = await timed(lambda o=online, w=workers: rebuild(url, online=o, workers=w))
        results.append((label, seconds, await _hash(url), steps))

    print(f"# rebuild benchmark ({platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()})")
    print()
    print(
        f"log: {n_events:,} events ({ingest['events']:,} generated + {changes} takedown changes),"
        f" {n_records:,} record keys; live state hash {live[:12]}"
    )
    print()
    print("| contender | events | seconds | events/s | same hash as live |")
    print("|---|---:|---:|---:|---|")
    for label, seconds, digest, _ in results:
        print(f"| {label} | {n_events:,} | {seconds:.2f} | {n_events / seconds:,.0f} | {digest == live} |")
    print()
    baseline = results[0][1]
    for label, seconds, _, steps in results[1:]:
        print(f"{label}: {baseline / seconds:.1f}x the baseline")
        slowest = sorted(steps.items(), key=lambda kv: -kv[1])
        rest = sum(s for _, s in slowest[8:])
        print(
            "  "
            + ", ".join(f"{name} {s:.2f}s" for name, s in slowest[:8])
            + (f", {len(slowest) - 8} more {rest:.2f}s" if len(slowest) > 8 else "")
            + f" (sum {sum(steps.values()):.2f}s)"
        )
    if do_explain:
        await explain(url)
    if any(digest != live for _, _, digest, _ in results):
        raise SystemExit("state hash differs from the live fold's")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--database-url", default=os.environ.get("PLYR_BENCH_DATABASE_URL"))
    ap.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of the state statements")
    args = ap.parse_args()
    # The generated log has invalid records on purpose: their rejections are not news here.
    logging.getLogger("indexer").setLevel(logging.ERROR)
    capture = make_capture(args.events)
    with admin_url(args.database_url) as admin:
        url = fresh_db(admin, "bench_rebuild")
        asyncio.run(bench(url, args.events, capture, args.explain))


if __name__ == "__main__":
    main()
