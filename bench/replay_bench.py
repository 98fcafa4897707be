"""Replay throughput: the batch writer against a naive per-event-upsert consumer, same capture, same server.

    uv run python bench/replay_bench.py [--events 200000] [--baseline-events 20000]
    uv run python bench/replay_bench.py --bulk [--bulk-batch-size 5000]
    uv run python bench/replay_bench.py --notifications 3


Each contender runs in its own process on a fresh database (so peak RSS is its own) and is timed from the first
event read to the last commit. The naive baseline is what a straightforward consumer does: one autocommitted
upsert per event, guarded by rev, no batching. It runs on a prefix of the capture (it is slow), and its rate is
reported per event like ours. Prints a Markdown table for docs/benchmarks.md.

`--bulk` adds `replay --bulk` (indexer/capture/bulk.py: the capture appended to the log without folding by two
processes, then one online rebuild with two workers) on its own fresh database, and exits non-zero unless it
leaves the batch writer's state hash.

`--notifications N` measures what the change notifications cost the writer instead (the statement triggers of
migration 0015, appview/page_cache.py): ours N times on a database with them and N times on one whose triggers
were dropped, alternately.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import psycopg
import zstandard

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.postgres import admin_url  # noqa: E402
from bench.synth import workload  # noqa: E402

CACHE = ROOT / "bench" / ".cache"


def make_capture(n: int) -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"workload-{n}.jsonl.zst"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as raw, zstandard.ZstdCompressor(level=3).stream_writer(raw) as out:
            for obj in workload(n, seed=2024):
                out.write(msgspec.json.encode(obj) + b"\n")
        tmp.rename(path)
    return path


# -- contenders (run in a child process) ----------------------------------------------------------------------


async def run_ours(db: str, capture: Path, limit: int, own_audio_host: str | None = None) -> dict[str, float]:
    from indexer.atproto.lexicon import Validator
    from indexer.capture.replay import replay_items, replay_source
    from indexer.fold.writer import BatchWriter

    validator = Validator.load()
    started = time.perf_counter()
    # --own-audio-host: with the ingest check of uploaded audio on, as `index` runs it (a public host set).
    async with BatchWriter(
        db, validator=validator, batch_size=5000, batch_seconds=1.0, own_audio_host=own_audio_host
    ) as writer:
        stats = await writer.run(replay_items(capture, replay_source(capture)))
    elapsed = time.perf_counter() - started
    return {"events": stats.items, "appended": stats.appended, "seconds": elapsed}


async def run_bulk(db: str, capture: Path, limit: int, batch_size: int = 5000) -> dict[str, float]:
    """`replay --bulk`: the capture appended to the log without folding by two processes (each a share of the
    DIDs), then one online rebuild with two workers; timed as a whole, and each phase."""
    from indexer.capture.bulk import check_audio
    from indexer.capture.replay import append_in_shares, shares_of
    from indexer.fold.rebuild import rebuild
    from indexer.settings import Settings

    settings = Settings(resolve_identities=False, log_level="WARNING")
    started = time.perf_counter()
    shares = await append_in_shares(settings, db, capture, shares_of(capture, 2), batch_size=batch_size)
    appended = time.perf_counter()
    rebuilt = await rebuild(db, online=True, workers=2)
    await check_audio(db, {track for share in shares for track in share.unchecked_audio})
    done = time.perf_counter()
    return {
        "events": sum(share.stats.items - share.stats.checkpoints + share.read.ignored for share in shares),
        "appended": sum(share.stats.appended for share in shares),
        "seconds": done - started,
        "append_seconds": appended - started,
        "rebuild_seconds": done - appended,
        "rebuilt": rebuilt,
    }


NAIVE_UPSERT = """
INSERT INTO records (did, collection, rkey, rev, op, event_id) VALUES (%s, %s, %s, %s, %s, 0)
ON CONFLICT (did, collection, rkey) DO UPDATE SET rev = excluded.rev, op = excluded.op
WHERE excluded.rev > records.rev
"""
NAIVE_LOG = """
INSERT INTO events (source, did, kind, operation, collection, rkey, rev, cid, record, dedup)
VALUES ('naive', %s, 'commit', %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (dedup) DO NOTHING
"""


async def run_naive(db: str, capture: Path, limit: int) -> dict[str, float]:
    """One event, one await, one autocommitted statement pair; validation and parsing as ours."""
    import hashlib

    from indexer.atproto.lexicon import Validator
    from indexer.capture.files import iter_capture
    from indexer.jetstream.parse import parse_v1

    validator = Validator.load()
    n = 0
    started = time.perf_counter()
    async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:
        for _, line in iter_capture(capture):
            if n >= limit:
                break
            n += 1
            ev = parse_v1(line, "naive")
            if ev is None or not hasattr(ev, "kind") or ev.kind != "commit":  # type: ignore[union-attr]
                continue
            assert ev.collection and ev.rkey and ev.rev  # type: ignore[union-attr]
            if ev.record is not None and validator.validate(ev.collection, ev.rkey, ev.record) is not None:  # type: ignore[union-attr]
                continue
            dedup = hashlib.blake2b(
                f"{ev.did}{ev.collection}{ev.rkey}{ev.rev}{ev.operation}".encode(),  # type: ignore[union-attr]
                digest_size=16,
            ).digest()
            await conn.execute(
                NAIVE_LOG,
                (
                    ev.did,
                    ev.operation,
                    ev.collection,
                    ev.rkey,
                    ev.rev,
                    ev.cid,  # type: ignore[union-attr]
                    None if ev.record is None else msgspec.json.encode(ev.record).decode(),  # type: ignore[union-attr]
                    dedup,
                ),
            )
            op = {"create": 0, "update": 1, "delete": 2}[ev.operation or "create"]  # type: ignore[union-attr]
            await conn.execute(NAIVE_UPSERT, (ev.did, ev.collection, ev.rkey, ev.rev, op))  # type: ignore[union-attr]
    return {"events": n, "appended": n, "seconds": time.perf_counter() - started}


def child(kind: str, db: str, capture: str, limit: int, own_audio_host: str | None = None) -> None:
    if kind == "ours":
        result = asyncio.run(run_ours(db, Path(capture), limit, own_audio_host))
    elif kind.startswith("bulk"):
        result = asyncio.run(run_bulk(db, Path(capture), limit, int(kind.removeprefix("bulk") or 5000)))
    else:
        result = asyncio.run(run_naive(db, Path(capture), limit))
    # The largest of this process and the share processes a bulk replay starts.
    peak = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    result["peak_rss_mb"] = peak / 1024
    print(json.dumps(result))


# -- driver ---------------------------------------------------------------------------------------------------


def fresh_db(admin: str, name: str) -> str:
    from indexer.db import migrate

    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {name}")
    url = psycopg.conninfo.make_conninfo(admin, dbname=name)
    migrate.upgrade(url)
    return url


def drop_notifications(url: str) -> str:
    from indexer.db import notify

    with psycopg.connect(url, autocommit=True) as conn:
        for table in notify.TABLES:
            conn.execute(f"DROP TRIGGER {table}_changed ON {table}")  # type: ignore[arg-type]
    return url


def compare_notifications(admin: str, capture: Path, events: int, rounds: int) -> None:
    rates: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(rounds):
        for notified in (True, False):
            db = fresh_db(admin, "bench_ours")
            result = contend("ours", db if notified else drop_notifications(db), capture, events)
            rates[notified].append(result["events"] / result["seconds"])
            print(f"notifications {'on' if notified else 'off'}: {rates[notified][-1]:,.0f} events/s", file=sys.stderr)
    print("| writer | events/s per run | mean |")
    print("|---|---:|---:|")
    for notified, label in ((False, "without change notifications (baseline)"), (True, "with them (default)")):
        runs = " / ".join(f"{r:,.0f}" for r in rates[notified])
        print(f"| {label} | {runs} | {sum(rates[notified]) / len(rates[notified]):,.0f} |")


def contend(kind: str, db: str, capture: Path, limit: int, own_audio_host: str | None = None) -> dict[str, float]:
    extra = ["--own-audio-host", own_audio_host] if own_audio_host else []
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, db, str(capture), str(limit), *extra],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PLYR_APPVIEW_LOG_LEVEL": "WARNING"},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--baseline-events", type=int, default=20_000)
    ap.add_argument("--database-url", default=os.environ.get("PLYR_BENCH_DATABASE_URL"))
    ap.add_argument("--child", nargs=4, metavar=("KIND", "DB", "CAPTURE", "LIMIT"))
    ap.add_argument("--own-audio-host", help="run ours with the ingest check of uploaded audio on, for this host")
    ap.add_argument("--notifications", type=int, metavar="N", help="compare the writer with and without them")
    ap.add_argument("--bulk", action="store_true", help="also `replay --bulk` (append, then one rebuild)")
    ap.add_argument("--bulk-batch-size", type=int, default=5000, help="events per append transaction of --bulk")
    args = ap.parse_args()
    if args.child:
        kind, db, capture, limit = args.child
        child(kind, db, capture, int(limit), args.own_audio_host)
        return

    capture = make_capture(args.events)
    if args.notifications:
        with admin_url(args.database_url) as admin:
            compare_notifications(admin, capture, args.events, args.notifications)
        return
    with admin_url(args.database_url) as admin:
        ours_db, bulk_db = fresh_db(admin, "bench_ours"), fresh_db(admin, "bench_bulk")
        ours = contend("ours", ours_db, capture, args.events, args.own_audio_host)
        bulk = contend(f"bulk{args.bulk_batch_size}", bulk_db, capture, args.events) if args.bulk else None
        naive = contend("naive", fresh_db(admin, "bench_naive"), capture, args.baseline_events)
        same = bulk is None or _state_hash(ours_db) == _state_hash(bulk_db)
    ours_rate = ours["events"] / ours["seconds"]
    naive_rate = naive["events"] / naive["seconds"]
    print(f"# replay benchmark ({platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()})")
    print()
    print("| contender | events | seconds | events/s | peak RSS (MB) |")
    print("|---|---:|---:|---:|---:|")
    print(
        f"| batch writer (ours) | {ours['events']:,} | {ours['seconds']:.1f} | {ours_rate:,.0f} |"
        f" {ours['peak_rss_mb']:.0f} |"
    )
    if bulk is not None:
        print(
            f"| `replay --bulk` (append {bulk['append_seconds']:.1f} s + rebuild {bulk['rebuild_seconds']:.1f} s)"
            f" | {bulk['events']:,} | {bulk['seconds']:.1f} | {bulk['events'] / bulk['seconds']:,.0f} |"
            f" {bulk['peak_rss_mb']:.0f} |"
        )
    print(
        f"| naive per-event upsert (baseline) | {naive['events']:,} | {naive['seconds']:.1f} | {naive_rate:,.0f} |"
        f" {naive['peak_rss_mb']:.0f} |"
    )
    print()
    print(f"speed-up: {ours_rate / naive_rate:.1f}x")
    if bulk is not None:
        print(f"speed-up of --bulk: {bulk['events'] / bulk['seconds'] / naive_rate:.1f}x; same state hash: {same}")
    if not same:
        sys.exit("the bulk replay's state hash differs from the batch writer's")


def _state_hash(db: str) -> str:
    from indexer.status import state_hash

    async def read() -> str:
        async with await psycopg.AsyncConnection.connect(db, autocommit=True) as conn:
            return await state_hash(conn)

    return asyncio.run(read())


if __name__ == "__main__":
    main()
