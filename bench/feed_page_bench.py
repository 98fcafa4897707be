"""One feed page's statement, as the API sends it, against the previous form of the same page, on one connection.

    PLYR_BENCH_DATABASE_URL=postgresql://... uv run python bench/api_bench.py --methods getTrack --seconds 1
    uv run python bench/feed_page_bench.py --database-url postgresql://.../plyr_bench [--rounds 3] [--pages 300]

Runs on the database `bench/api_bench.py` leaves behind on an external server (1M tracks, 10M likes by default).
For getLatestTracks (first pages and deep pages) and getActorTracks, each round times `--pages` executions of:
- the API's statement: the skeleton selects whole `tracks` rows, the page is hydrated from them, each actor's
  display name is read from its `profiles` row (migration 0016), and a track's featured artists are looked up
  only when its record names some;
- featured artists for every track (the baseline): the same, with the featured artists' subquery run for every
  track, as before it was guarded;
- names from the log (earlier): the baseline, with each display name read from the profile's record in the log,
  as before migration 0016;
- re-join (earlier still): the skeleton selects `uri, sort_at, cid`, the page looks each track up again by URI,
  and names come from the log, as every page did before whole-row pages.
All must return the same rows (checked). Statements are prepared (psycopg's `prepare_threshold=0`), so the
figures are executor time plus one loopback round trip, with no pool, HTTP or presentation.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def cases(conn: psycopg.Connection[Any], rng: random.Random) -> dict[str, tuple[Any, dict[str, Any]]]:
    from appview.http import Position
    from appview.xrpc import get_actor_tracks, get_latest_tracks

    picked = conn.execute("SELECT did, sort_at, cid FROM tracks TABLESAMPLE SYSTEM (1) LIMIT 200").fetchall()
    did, at, cid = rng.choice(picked)
    return {
        "getLatestTracks, first page": (get_latest_tracks.skeleton(None, 50), {}),
        "getLatestTracks, deep page": (get_latest_tracks.skeleton(Position(at, cid), 50), {}),
        "getActorTracks": (get_actor_tracks.skeleton(None, 50), {"did": did}),
    }


def name_from_the_log(sql: str) -> str:
    """`sql` with each display name read from the profile's record in the log, as before migration 0016."""
    return re.sub(
        r"coalesce\((\w+)\.display_name, (\w+)\.display_name\)",
        lambda m: (
            f"""coalesce(
  (SELECT left(pe.record->>'displayName', 640) FROM events pe
   WHERE pe.id = {m[1]}.event_id AND jsonb_typeof(pe.record->'displayName') = 'string'),
  {m[2]}.display_name)"""
        ),
        sql,
    )


def statements(walk: Any) -> dict[str, str]:
    from appview import hydrate

    narrow = walk.sql.replace("SELECT * FROM tracks", "SELECT uri, sort_at, cid FROM tracks")
    api = hydrate.page(walk.sql, viewer=False, whole_tracks=True)
    return {
        "featured artists looked up only where the record has some (API)": api,
        "featured artists looked up for every track (baseline)": every_track_features(api),
        "names from the log (earlier)": name_from_the_log(every_track_features(api)),
        "re-join, names from the log (earlier still)": name_from_the_log(
            every_track_features(hydrate.page(narrow, viewer=False))
        ),
    }


def every_track_features(sql: str) -> str:
    """`sql` with the featured artists' subquery run for every track, as before it was guarded by a CASE."""
    guard = (
        "CASE WHEN jsonb_typeof(e.record->'features') = 'array' AND jsonb_array_length(e.record->'features') > 0 THEN\n"
    )
    close = "LEFT JOIN bsky_profiles fb ON fb.did = x.did) END"
    assert sql.count(guard) == 1 and sql.count(close) == 1, "the features guard is not in the statement"
    return sql.replace(guard, "").replace(close, close.removesuffix(" END"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--database-url", required=True, help="the database bench/api_bench.py loaded (…/plyr_bench)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--pages", type=int, default=300)
    args = p.parse_args()
    rng = random.Random(1)
    times: dict[tuple[str, str], list[float]] = {}
    with psycopg.connect(args.database_url, autocommit=True, prepare_threshold=0) as conn:
        for case, (walk, extra) in cases(conn, rng).items():
            params = {**walk.params, **extra, "viewer": None}
            forms = statements(walk)
            results = {name: conn.execute(sql, params).fetchall() for name, sql in forms.items()}  # type: ignore[call-overload]
            first, *others = results.values()
            assert all(o == first for o in others), f"{case}: the forms disagree"
            for _ in range(args.rounds):
                for name, sql in forms.items():
                    started = time.perf_counter()
                    for _ in range(args.pages):
                        conn.execute(sql, params).fetchall()  # type: ignore[call-overload]
                    times.setdefault((case, name), []).append((time.perf_counter() - started) / args.pages * 1000)
            print(f"{case}: {len(first)} rows", file=sys.stderr)
    print("| page | statement | ms per page, each round | median |")
    print("|---|---|---:|---:|")
    for (case, name), runs in times.items():
        print(f"| {case} | {name} | {' / '.join(f'{r:.3f}' for r in runs)} | {statistics.median(runs):.3f} |")


if __name__ == "__main__":
    main()
