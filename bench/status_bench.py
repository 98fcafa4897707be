"""Cost of the operator status page on a big database, against the exact counts of `plyr-appview status`.

    uv run python bench/status_bench.py [--events 10000000] [--rejections 1000000] [--repos 200000] [--runs 5]

Data: `--events` log rows (the last 30,000 stamped within the last minute, so the rate sample is full),
`--rejections` over 12 reasons, `--repos` repo_sync rows (a tenth pending), loaded with set-based
`INSERT ... SELECT generate_series` (a benchmark shortcut; the real path is the fold), then ANALYZE. Measures one
status snapshot (what a page refresh reads when its 5 s cache is cold): first run and median of `--runs`,
next to a plain `count(*)` of the log and per-reason counts, which the page deliberately avoids.
Uses an embedded Postgres unless PLYR_BENCH_DATABASE_URL is set (its database `plyr_bench` is recreated).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from appview.pages.status_data import snapshot  # noqa: E402
from bench.postgres import admin_url  # noqa: E402
from indexer.db import migrate  # noqa: E402

REASONS = [
    "invalid_record", "bad_rev", "bad_rkey", "not_json", "bad_frame", "unstorable", "bad_cid", "too_large",
    "bad_did", "bad_time", "bad_signature", "unknown_kind",
]


def load(url: str, events: int, rejections: int, repos: int) -> float:
    started = time.perf_counter()
    migrate.upgrade(url)
    reasons = "ARRAY[" + ",".join(f"'{r}'" for r in REASONS) + "]"
    recent = min(events, 30_000)
    statements = [
        f"""
        INSERT INTO events (source, source_cursor, did, kind, operation, collection, rkey, rev, cid, record,
                            event_time, received_at, dedup)
        SELECT 'jetstream', g, 'did:plc:bench' || lpad((g % 50000)::text, 16, '0'), 'commit', 'create',
               'fm.plyr.like', 'r' || g, 'rev' || g, 'cid' || g, '{{"$type": "fm.plyr.like"}}'::jsonb,
               now() - make_interval(secs => ({events} - g) * 0.002),
               now() - interval '1 day',
               decode(md5('e' || g), 'hex')
        FROM generate_series(1, {events}) g
        """,
        f"""
        INSERT INTO rejections (source, source_cursor, reason, detail, did, event, dedup)
        SELECT 'jetstream', g, ({reasons})[1 + g % {len(REASONS)}], 'detail ' || g, 'did:plc:x' || g,
               repeat('{{"bad": true}}', 20), decode(md5('r' || g), 'hex')
        FROM generate_series(1, {rejections}) g
        """,
        f"""
        INSERT INTO repo_sync (did, reason, marked_at, synced_at, attempts, last_error)
        SELECT 'did:plc:repo' || g, CASE WHEN g % 2 = 0 THEN 'backfill' ELSE 'behind' END, now(),
               CASE WHEN g % 10 = 0 THEN NULL ELSE now() + interval '1 s' END,
               CASE WHEN g % 100 = 0 THEN 2 ELSE 0 END,
               CASE WHEN g % 100 = 0 THEN 'HTTP 502' END
        FROM generate_series(1, {repos}) g
        """,
        "INSERT INTO cursors (source, cursor, event_time, updated_at) VALUES ('jetstream', 1, now(), now())",
        "ANALYZE",
    ]
    # The load itself takes minutes: the newest events are re-stamped as received during the last minute at 500/s.
    restamp = f"""
        UPDATE events SET received_at = clock_timestamp() - make_interval(secs => ({events} - id) * 0.002)
        WHERE id > {events - recent}
    """
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)  # type: ignore[call-overload]
        conn.execute(restamp)  # type: ignore[call-overload]
    return time.perf_counter() - started


async def measure(url: str, runs: int) -> dict[str, float]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        timings = []
        for _ in range(runs + 1):
            t = time.perf_counter()
            snap = await snapshot(conn)
            timings.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        await conn.execute("SELECT count(*) FROM events")
        count_ms = (time.perf_counter() - t) * 1000
        t = time.perf_counter()
        await conn.execute("SELECT reason, count(*) FROM rejections GROUP BY reason")
        reasons_ms = (time.perf_counter() - t) * 1000
    rate = snap.sources[0].events_per_second if snap.sources else 0.0
    return {
        "first_ms": timings[0],
        "median_ms": statistics.median(timings[1:]),
        "max_ms": max(timings[1:]),
        "count_events_ms": count_ms,
        "count_by_reason_ms": reasons_ms,
        "events_per_second": rate,
        "db_bytes": snap.database_bytes,
    }


def run(admin_url: str, args: argparse.Namespace) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS plyr_bench WITH (FORCE)")
        conn.execute("CREATE DATABASE plyr_bench")
    url = psycopg.conninfo.make_conninfo(admin_url, dbname="plyr_bench")
    print(f"loading {args.events:,} events, {args.rejections:,} rejections, {args.repos:,} repos ...", file=sys.stderr)
    load_s = load(url, args.events, args.rejections, args.repos)
    r = asyncio.run(measure(url, args.runs))
    print(
        f"\n{args.events:,} events, {args.rejections:,} rejections ({len(REASONS)} reasons), {args.repos:,} repos;"
        f" database {r['db_bytes'] / 2**30:.1f} GiB (loaded in {load_s:.0f} s); {os.cpu_count()} CPUs\n"
    )
    print("| what | ms |")
    print("|---|---:|")
    print(f"| status snapshot, first run | {r['first_ms']:.1f} |")
    print(f"| status snapshot, median of {args.runs} | {r['median_ms']:.1f} |")
    print(f"| status snapshot, slowest of {args.runs} | {r['max_ms']:.1f} |")
    print(f"| for comparison: `SELECT count(*) FROM events` | {r['count_events_ms']:.1f} |")
    print(f"| for comparison: rejections `GROUP BY reason` | {r['count_by_reason_ms']:.1f} |")
    print(f"\nevents/s shown: {r['events_per_second']:.0f} (loaded at 500/s)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=10_000_000)
    p.add_argument("--rejections", type=int, default=1_000_000)
    p.add_argument("--repos", type=int, default=200_000)
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    with admin_url(os.environ.get("PLYR_BENCH_DATABASE_URL")) as admin:
        run(admin, args)


if __name__ == "__main__":
    main()
