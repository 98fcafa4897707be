"""searchTracks' statements, as the API sends them, against their previous form, on one connection.

    uv run python bench/search_bench.py [--tracks 200000] [--numbered-every 2] [--queries 100] [--rounds 3]

Data: `--tracks` tracks loaded as bench/api_bench.py loads them (three-word titles), every `--numbered-every`-th
one titled `Track <n>` instead (look-alike titles, as bench/load_live.py's workload has them), into a database
`plyr_search_bench` on PLYR_BENCH_DATABASE_URL's server, or on an embedded one. Fuzzy matches need pg_trgm
(PostgreSQL with contrib); the embedded server has none, and searches without them.

Each query kind is run `--queries` times per round (random instances, the same for both contenders):
- `track <n>`: bench/load_live.py's query; most numbered titles are similar to it, few contain it;
- a title word: many word-prefix and prefix matches;
- a misspelt title word (one letter changed): mostly fuzzy matches;
- a word that is in no title: every rank is looked for, none found.
Contenders, first page of 50, hydrated as the API hydrates it:
- probes (the API): a rank group first reads only the newest tracks when they can fill the page, ranks 2-4 come
  from one set of candidates (appview/xrpc/search_tracks.py);
- per-rank statements (the baseline, the previous form): word-prefix matches walk tracks_sort_idx with their
  condition, substring, description and fuzzy matches each collect their candidates in full.
Both must return the same tracks (checked). Prints a Markdown table of milliseconds per page.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.api_bench import WORDS, load  # noqa: E402
from bench.postgres import admin_url  # noqa: E402

LIMIT = 50


def previous_walks(text: str, trigram: bool) -> list[Any]:
    """The first page's statements before probes: one per rank group, each collecting its matches in full."""
    from appview import search
    from appview.hydrate import Skeleton
    from appview.xrpc import search_tracks as st

    params = search.patterns(text)
    word = f"""
SELECT uri, 2 AS rank, sort_at, cid FROM tracks
WHERE author_active AND {st._MATCH[2]} AND {st._NOT_BETTER[2]}
ORDER BY sort_at DESC, cid DESC
LIMIT %(limit)s"""

    def collected(rank: int) -> str:
        return f"""
WITH c AS MATERIALIZED (
  SELECT uri, title, artist, description, sort_at, cid FROM tracks WHERE author_active AND {st._MATCH[rank]}
)
SELECT uri, {rank} AS rank, sort_at, cid FROM c
WHERE {st._NOT_BETTER[rank]}
ORDER BY sort_at DESC, cid DESC
LIMIT %(limit)s"""

    sql = [st._EXACT_AND_PREFIX.format(after=""), word, collected(3), collected(4)]
    if trigram:
        sql.append(collected(5))
    return [Skeleton(s, params) for s in sql]


def queries(kind: str, rng: random.Random, tracks: int) -> str:
    if kind == "track <n>":
        return f"track {rng.randint(1, 999)}"
    word = rng.choice(WORDS)
    if kind == "title word":
        return word
    if kind == "misspelt word":
        i = rng.randrange(1, len(word))
        return word[:i] + ("x" if word[i] != "x" else "y") + word[i + 1 :]
    return f"qzxv{rng.randint(1, tracks)}"


KINDS = ("track <n>", "title word", "misspelt word", "no match")


async def run(url: str, args: argparse.Namespace) -> None:
    from appview.xrpc import search_tracks

    async with await psycopg.AsyncConnection.connect(url, autocommit=True, prepare_threshold=0) as conn:
        trigram = bool(await (await conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")).fetchall())
        contenders = {
            "probes (API)": lambda q: search_tracks.skeleton(q, None, trigram),
            "per-rank statements (baseline)": lambda q: previous_walks(q, trigram),
        }
        times: dict[tuple[str, str], list[float]] = {}
        found: dict[str, list[int]] = {}
        for round_ in range(args.rounds):
            for kind in KINDS:
                rng = random.Random(round_ * 1000 + KINDS.index(kind))
                qs = [queries(kind, rng, args.tracks) for _ in range(args.queries)]
                pages: dict[str, list[list[str]]] = {name: [] for name in contenders}
                spent = dict.fromkeys(contenders, 0.0)
                for i, q in enumerate(qs):
                    # Each query by both, the first of them in turn: neither reads only what the other cached.
                    order = list(contenders.items())
                    for name, walks in order[i % 2 :] + order[: i % 2]:
                        t0 = time.perf_counter()
                        rows = await search_tracks.ranked_page(conn, walks(q), LIMIT, None)
                        spent[name] += time.perf_counter() - t0
                        pages[name].append([r.uri for r in rows])
                for name in contenders:
                    times.setdefault((kind, name), []).append(spent[name] * 1000 / len(qs))
                first, *others = pages.values()
                for other in others:
                    if other != first:
                        sys.exit(f"{kind}: the contenders' pages differ")
                found.setdefault(kind, []).extend(len(p) for p in first)
    print(f"\n{args.tracks:,} tracks, every {args.numbered_every} titled `Track <n>`; pg_trgm: {trigram};")
    print(f"{platform.machine()}, {os.cpu_count()} cores; {args.rounds} rounds of {args.queries} queries per kind\n")
    names = list(contenders)
    print("| query | " + " | ".join(f"{n} ms/page" for n in names) + " | change | tracks per page |")
    print("|---|" + "---:|" * (len(names) + 2))
    for kind in KINDS:
        med = [statistics.median(times[(kind, n)]) for n in names]
        change = (med[0] - med[1]) / med[1] * 100
        per_page = statistics.mean(found[kind])
        print(f"| {kind} | " + " | ".join(f"{m:.2f}" for m in med) + f" | {change:+.0f} % | {per_page:.1f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tracks", type=int, default=200_000)
    p.add_argument("--numbered-every", type=int, default=2)
    p.add_argument("--queries", type=int, default=100)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    with admin_url(os.environ.get("PLYR_BENCH_DATABASE_URL")) as admin:
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute("DROP DATABASE IF EXISTS plyr_search_bench WITH (FORCE)")
            c.execute("CREATE DATABASE plyr_search_bench")
        url = psycopg.conninfo.make_conninfo(admin, dbname="plyr_search_bench")
        seconds = load(url, args.tracks, args.tracks, args.numbered_every)
        print(f"loaded in {seconds:.0f} s", file=sys.stderr)
        asyncio.run(run(url, args))


if __name__ == "__main__":
    main()
