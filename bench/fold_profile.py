"""Where does a batch's time go? Replays a capture into a fresh embedded Postgres, running each fold statement
on its own and timing it (the writer sends them in one round trip; this splits them apart).

    uv run python bench/fold_profile.py [--events 200000] [--batch-size 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.postgres import admin_url  # noqa: E402
from bench.replay_bench import make_capture  # noqa: E402
from indexer.atproto.lexicon import Validator  # noqa: E402
from indexer.capture.replay import replay_items, replay_source  # noqa: E402
from indexer.db import locks, migrate  # noqa: E402
from indexer.fold import sql  # noqa: E402
from indexer.fold import writer as writer_mod  # noqa: E402
from indexer.fold.apply import Applied, Connection, copy_rows, save_rejections_and_cursors  # noqa: E402
from indexer.fold.prepare import Prepared  # noqa: E402

TIMINGS: Counter[str] = Counter()


async def _timed_apply(conn: Connection, p: Prepared) -> Applied:
    """indexer/fold/apply.py's `apply`, with each step timed (the check of uploaded audio aside: it is off here);
    the copies and the closing step are apply's own."""
    async with conn.cursor() as cur:
        await cur.execute(locks.LOCK_FOLD_SHARED)
        t = time.perf_counter()
        await copy_rows(cur, sql.COPY_EVENTS, p.events)
        TIMINGS["copy events"] += time.perf_counter() - t
        t = time.perf_counter()
        await cur.execute(sql.APPEND_EVENTS)
        TIMINGS["append to log"] += time.perf_counter() - t
        for i, stmt in enumerate(sql.FOLD):
            t = time.perf_counter()
            await cur.execute(stmt)
            TIMINGS[f"fold {i:02d}: " + " ".join(stmt.split())[:70]] += time.perf_counter() - t
        t = time.perf_counter()
        await save_rejections_and_cursors(cur, p)
        TIMINGS["rejections and cursors"] += time.perf_counter() - t
    return Applied()


async def run(url: str, capture: Path, batch_size: int) -> None:
    import logging

    logging.getLogger().setLevel(logging.ERROR)
    writer_mod.apply = _timed_apply
    started = time.perf_counter()
    cpu = time.process_time()
    async with writer_mod.BatchWriter(url, validator=Validator.load(), batch_size=batch_size) as w:
        stats = await w.run(replay_items(capture, replay_source(capture)))
    wall = time.perf_counter() - started
    print(
        f"{stats.items} events in {wall:.1f} s ({stats.items / wall:,.0f}/s);"
        f" Python CPU {time.process_time() - cpu:.1f} s"
    )
    print(f"{'seconds':>8}  statement")
    for name, seconds in TIMINGS.most_common():
        print(f"{seconds:8.2f}  {name}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--batch-size", type=int, default=5000)
    args = ap.parse_args()
    capture = make_capture(args.events)
    import os

    import psycopg

    # Always a private server: the settings below are applied to the whole server.
    with admin_url(None) as url:
        for setting in filter(None, os.environ.get("PLYR_PROFILE_PG_SETTINGS", "").split(";")):
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f"ALTER SYSTEM SET {setting}")
                conn.execute("SELECT pg_reload_conf()")
        migrate.upgrade(url)
        asyncio.run(run(url, capture, args.batch_size))


if __name__ == "__main__":
    main()
