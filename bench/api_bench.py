"""Read API throughput: the AppView over HTTP against the raw SQL of the same queries, same data, same server.

    uv run python bench/api_bench.py [--tracks 1000000] [--likes 10000000] [--seconds 10] [--connections 64]

Data: tracks, their events (hydration joins the record), actors, profiles and likes generated with set-based
`INSERT ... SELECT generate_series` straight into the projection tables (a benchmark shortcut only: the real
path is the fold), then `like_count` recounted. Methods: getLatestTracks (half first pages, half random deep
cursors), getActorTracks (random artists), getTrack (random tracks), searchTracks (random title words).

For each method, three runs of `--seconds` with `--connections` concurrent clients:
- api: keep-alive HTTP/1.1 against uvicorn (`--workers` processes sharing one socket), default settings: the
  page cache on (appview/page_cache.py). The data does not change during the run, so every repeated request is
  answered from memory; the workload draws from about 2,000 keys per method (below), so after the warm-up this
  measures the cache, not the queries;
- api, no page cache (`PLYR_APPVIEW_PAGE_CACHE_MB=0`, the baseline): every request runs its queries;
- sql: the same skeleton + hydration statements sent straight to Postgres with psycopg (the ceiling of the
  uncached API: zero HTTP, routing and presentation cost).
Uses an embedded Postgres unless PLYR_BENCH_DATABASE_URL is set (its database `plyr_bench` is recreated).
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import platform
import random
import re
import socket
import statistics
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.postgres import admin_url  # noqa: E402

WORDS = (
    "midnight city river light shadow echo dream fire ocean summer winter static neon velvet golden broken "
    "electric silent wild lonely paper glass silver honey thunder crystal violet desert northern southern "
    "morning evening falling rising dancing burning frozen hidden secret endless distant sweet bitter "
    "heart soul road home rain storm sky star moon sun cloud wave tide stone iron garden forest mountain "
    "valley island harbor station signal radio machine ghost angel devil saint sinner lover stranger "
    "memory season letter window mirror circle spiral engine rocket comet planet galaxy orbit satellite"
).split()
N_ACTORS_PER_TRACK = 20  # one artist per 20 tracks on average


# -- data -----------------------------------------------------------------------------------------------------


def _load_sql(tracks: int, likes: int, numbered_every: int = 0) -> list[str]:
    """The load's statements. With `numbered_every` k, every k-th track is titled `Track <n>` instead of three
    words: titles that look alike, as bench/load_live.py's workload has them."""
    actors = max(10, tracks // N_ACTORS_PER_TRACK)
    words = "ARRAY[" + ",".join(f"'{w}'" for w in WORDS) + "]"
    nw = len(WORDS)
    did = "'did:plc:bench' || lpad(({a})::text, 16, '0')"
    numbered = f"CASE WHEN g % {numbered_every} = 0 THEN 'Track ' || g ELSE " if numbered_every else ""
    end = " END" if numbered_every else ""
    return [
        "SET synchronous_commit = off",
        f"""
        INSERT INTO actors (did, handle, status, active)
        SELECT {did.format(a="g")}, 'artist' || g || '.bench.test', 'active', true FROM generate_series(1, {actors}) g
        """,
        # Profiles: their records in the log (ids after the tracks'), display names on the rows as the fold keeps them.
        f"""
        INSERT INTO events (id, source, did, kind, operation, collection, rkey, rev, cid, record, created_at, dedup)
        SELECT {tracks} + g, 'bench', {did.format(a="g")}, 'commit', 'create', 'fm.plyr.actor.profile', 'self',
               'profile' || g, 'bafyprofile' || g,
               jsonb_build_object('$type', 'fm.plyr.actor.profile', 'displayName', 'Artist ' || g, 'bio', 'bio ' || g,
                                  'avatar', 'https://img.bench.test/' || g || '.png'),
               now(), int8send({tracks} + g)
        FROM generate_series(1, {actors}) g
        """,
        f"""
        INSERT INTO profiles (did, cid, event_id, author_active, bio, avatar, display_name, indexed_at)
        SELECT {did.format(a="g")}, 'bafyprofile' || g, {tracks} + g, true, 'bio ' || g,
               'https://img.bench.test/' || g || '.png', 'Artist ' || g, now() FROM generate_series(1, {actors}) g
        """,
        # Track g: artist (g % actors) + 1, created g seconds after a base, three title words from a hash of g.
        f"""
        CREATE TEMP TABLE gen AS
        SELECT g,
               {did.format(a=f"(g % {actors}) + 1")} AS did,
               lpad(to_hex(g), 13, 'z') AS rkey,
               'bafyreibench' || lpad(g::text, 12, '0') AS cid,
               {numbered}initcap(({words})[1 + (hashint4(g) & 2147483647) % {nw}] || ' ' ||
                       ({words})[1 + (hashint4(g + 1) & 2147483647) % {nw}] || ' ' ||
                       ({words})[1 + (hashint4(g + 2) & 2147483647) % {nw}]){end} AS title,
               'Artist ' || ((g % {actors}) + 1) AS artist,
               timestamptz '2024-01-01' + make_interval(secs => g * 30) AS at
        FROM generate_series(1, {tracks}) g
        """,
        """
        INSERT INTO events (id, source, did, kind, operation, collection, rkey, rev, cid, record, created_at, dedup)
        SELECT g, 'bench', did, 'commit', 'create', 'fm.plyr.track', rkey, rkey, cid,
               jsonb_build_object('$type', 'fm.plyr.track', 'title', title, 'artist', artist, 'fileType', 'mp3',
                                  'duration', 180 + g % 200, 'audioUrl', 'https://cdn.bench.test/' || g || '.mp3',
                                  'createdAt', to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')),
               at, int8send(g)
        FROM gen
        """,
        """
        INSERT INTO tracks (did, rkey, uri, cid, event_id, author_active, title, artist, duration, file_type,
                            audio_url, created_at, indexed_at, sort_at)
        SELECT did, rkey, 'at://' || did || '/fm.plyr.track/' || rkey, cid, g, true, title, artist, 180 + g % 200,
               'mp3', 'https://cdn.bench.test/' || g || '.mp3', at, at, at
        FROM gen
        """,
        # Likes: skewed towards a few popular tracks, from random actors.
        f"""
        INSERT INTO likes (did, rkey, uri, cid, event_id, author_active, subject_uri, subject_cid, created_at,
                           indexed_at, sort_at)
        SELECT l.did, l.rkey, 'at://' || l.did || '/fm.plyr.like/' || l.rkey, 'bafylike' || s.i, 0, true,
               t.uri, t.cid, t.sort_at + interval '1 hour', t.sort_at + interval '1 hour', t.sort_at + interval '1 hour'
        FROM generate_series(1, {likes}) AS s(i)
        CROSS JOIN LATERAL (
            SELECT {did.format(a=f"(hashint4(s.i) & 2147483647) % {actors} + 1")} AS did,
                   lpad(to_hex(s.i), 13, 'z') AS rkey,
                   1 + floor({tracks} * power((hashint4(s.i * 7) & 2147483647)::float8 / 2147483648, 3))::int AS n
        ) l
        JOIN gen gt ON gt.g = l.n
        JOIN tracks t ON t.did = gt.did AND t.rkey = gt.rkey
        """,
        """
        UPDATE tracks t SET like_count = c.n
        FROM (SELECT subject_uri, count(*) AS n FROM likes GROUP BY subject_uri) c WHERE c.subject_uri = t.uri
        """,
        "SELECT setval(pg_get_serial_sequence('events', 'id'), (SELECT max(id) FROM events))",
    ]


_LIKE_INDEXES = ("likes_did_sort_idx", "likes_subject_sort_idx", "likes_did_subject_idx")


def load(url: str, tracks: int, likes: int, numbered_every: int = 0) -> float:
    from indexer.db import migrate

    started = time.perf_counter()
    migrate.upgrade(url)
    with psycopg.connect(url, autocommit=True) as conn:
        # Building the like indexes once after the load is several times faster than maintaining them.
        defs = {
            name: conn.execute("SELECT pg_get_indexdef(%s::regclass)", (name,)).fetchone()[0]  # type: ignore[index]
            for name in _LIKE_INDEXES
        }
        for name in defs:
            conn.execute(f"DROP INDEX {name}")
        conn.execute("SET maintenance_work_mem = '512MB'")
        for sql in _load_sql(tracks, likes, numbered_every):
            t0 = time.perf_counter()
            conn.execute(sql)
            print(
                f"  {sql.split()[0]} {sql.split()[1]} {sql.split()[2]}: {time.perf_counter() - t0:.1f}s",
                file=sys.stderr,
            )
        for sql in defs.values():
            conn.execute(sql)
        conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - started


# -- request mixes ----------------------------------------------------------------------------------------------


def samples(url: str, n: int = 2000) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        tracks = conn.execute(f"SELECT uri, did, sort_at, cid FROM tracks TABLESAMPLE SYSTEM (1) LIMIT {n}").fetchall()
    return {
        "uris": [r[0] for r in tracks],
        "dids": list({r[1] for r in tracks}),
        "positions": [(r[2], r[3]) for r in tracks],
    }


def paths(method: str, s: dict[str, Any], rng: random.Random) -> list[str]:
    from appview.http import pack

    out: list[str] = []
    for _ in range(2000):
        if method == "getLatestTracks":
            if rng.random() < 0.5:
                out.append("/xrpc/fm.plyr.getLatestTracks")
            else:
                at, cid = rng.choice(s["positions"])
                out.append(f"/xrpc/fm.plyr.getLatestTracks?cursor={pack(at, cid)}")
        elif method == "getActorTracks":
            out.append(f"/xrpc/fm.plyr.getActorTracks?actor={quote(rng.choice(s['dids']))}")
        elif method == "getTrack":
            out.append(f"/xrpc/fm.plyr.getTrack?uri={quote(rng.choice(s['uris']), safe='')}")
        else:
            out.append(f"/xrpc/fm.plyr.searchTracks?q={rng.choice(WORDS)}")
    return out


# -- HTTP load --------------------------------------------------------------------------------------------------

_LENGTH = re.compile(rb"content-length:\s*(\d+)", re.IGNORECASE)


async def _http_client(port: int, reqs: list[str], deadline: float, lat: list[float], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    rng = random.Random()
    encoded = [f"GET {p} HTTP/1.1\r\nHost: bench\r\n\r\n".encode() for p in reqs]
    try:
        while time.perf_counter() < deadline:
            req = rng.choice(encoded)
            t0 = time.perf_counter()
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            m = _LENGTH.search(head)
            if m:
                await reader.readexactly(int(m.group(1)))
            lat.append(time.perf_counter() - t0)
            if head[9:10] != b"2":
                errors.append(int(head[9:12]))
    finally:
        writer.close()


async def _sql_client(
    url: str,
    run: Callable[[psycopg.AsyncConnection[Any]], Coroutine[Any, Any, None]],
    deadline: float,
    lat: list[float],
    errors: list[int],
) -> None:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            await run(conn)
            lat.append(time.perf_counter() - t0)


def _sql_runner(method: str, s: dict[str, Any], rng: random.Random, trigram: bool) -> Callable[..., Any]:
    from appview import hydrate
    from appview.xrpc import get_actor_tracks, get_latest_tracks, search_tracks

    async def hydrate_tracks(conn: psycopg.AsyncConnection[Any], uris: list[str]) -> None:
        if uris:
            await (await conn.execute(hydrate.tracks_by_uri(viewer=False), {"uris": uris, "viewer": None})).fetchall()

    async def run(conn: psycopg.AsyncConnection[Any]) -> None:
        if method == "getLatestTracks":
            from appview.http import Position

            pos = None if rng.random() < 0.5 else Position(*rng.choice(s["positions"]))
            walk = get_latest_tracks.skeleton(pos, 50)
            sql = hydrate.page(walk.sql, viewer=False, whole_tracks=walk.whole_tracks)
            await (await conn.execute(sql, {**walk.params, "viewer": None})).fetchall()
        elif method == "getActorTracks":
            did = rng.choice(s["dids"])
            lookup, lookup_params = hydrate.ACTOR_BY["did"], (did,)
            walk = get_actor_tracks.skeleton(None, 50)
            sql = hydrate.page(walk.sql, viewer=False, whole_tracks=walk.whole_tracks)
            async with conn.pipeline():
                looked = await conn.execute(lookup, lookup_params)
                cur = await conn.execute(sql, {"did": did, "limit": 50, "viewer": None})
                await looked.fetchone()
                await cur.fetchall()
        elif method == "getTrack":
            await hydrate_tracks(conn, [rng.choice(s["uris"])])
        else:
            q = rng.choice(WORDS)
            await search_tracks.ranked_page(conn, search_tracks.skeleton(q, None, trigram), 50, None)

    return run


def _drive(
    kind: str, target: Any, method: str, s: dict[str, Any], seconds: float, conns: int, trigram: bool, out: Any
) -> None:
    """Child process: warm up, then `seconds` of load; sends back (latencies, errors)."""
    import uvloop

    async def main() -> tuple[list[float], list[int]]:
        rng = random.Random(1)
        lat: list[float] = []
        errors: list[int] = []
        for phase_seconds, keep in ((min(3.0, seconds), False), (seconds, True)):
            lat.clear()
            errors.clear()
            deadline = time.perf_counter() + phase_seconds
            if kind == "api":
                reqs = paths(method, s, rng)
                tasks = [_http_client(target, reqs, deadline, lat, errors) for _ in range(conns)]
            else:
                tasks = [
                    _sql_client(target, _sql_runner(method, s, random.Random(i), trigram), deadline, lat, errors)
                    for i in range(conns)
                ]
            await asyncio.gather(*tasks)
            if keep:
                return list(lat), list(errors)
        raise AssertionError

    out.send(uvloop.run(main()))


def measure(
    kind: str, target: Any, method: str, s: dict[str, Any], seconds: float, conns: int, trigram: bool
) -> dict[str, float]:
    parent, child = mp.Pipe()
    proc = mp.Process(target=_drive, args=(kind, target, method, s, seconds, conns, trigram, child))
    proc.start()
    lat, errors = parent.recv()
    proc.join()
    lat.sort()
    return {
        "rps": len(lat) / seconds,
        "p50": statistics.median(lat) * 1000,
        "p99": lat[int(len(lat) * 0.99)] * 1000,
        "errors": len(errors),
    }


# -- server -----------------------------------------------------------------------------------------------------


def _serve(url: str, sock: socket.socket, pool_size: int, page_cache_mb: int) -> None:
    import uvicorn

    from appview.app import create_app
    from indexer.settings import Settings

    # The load comes from one address: measured, not limited.
    settings = Settings.from_env(
        {
            **os.environ,
            "PLYR_APPVIEW_RATE_LIMIT_READS_PER_MINUTE": "0",
            "PLYR_APPVIEW_PAGE_CACHE_MB": str(page_cache_mb),
        }
    )
    app = create_app(url, pool_size=pool_size, settings=settings)
    config = uvicorn.Config(app, log_config=None, access_log=False, loop="uvloop", http="httptools")
    uvicorn.Server(config).run(sockets=[sock])


def start_servers(url: str, workers: int, pool_size: int, page_cache_mb: int) -> tuple[int, list[mp.Process]]:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    procs = [mp.Process(target=_serve, args=(url, sock, pool_size, page_cache_mb), daemon=True) for _ in range(workers)]
    for p in procs:
        p.start()
    port = sock.getsockname()[1]
    for _ in range(200):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as c:
                c.sendall(b"GET /xrpc/fm.plyr.getStats HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
                if c.recv(12).startswith(b"HTTP/1.1 200"):
                    return port, procs
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("servers did not start")


# -- main -------------------------------------------------------------------------------------------------------


def run(admin_url: str, args: argparse.Namespace) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS plyr_bench WITH (FORCE)")
        conn.execute("CREATE DATABASE plyr_bench")
    url = psycopg.conninfo.make_conninfo(admin_url, dbname="plyr_bench")
    print(f"loading {args.tracks:,} tracks and {args.likes:,} likes ...", file=sys.stderr)
    load_s = load(url, args.tracks, args.likes)
    with psycopg.connect(url) as conn:
        trigram = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'").fetchone() is not None
        version = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    s = samples(url)
    methods = args.methods.split(",")
    api: dict[tuple[str, bool], dict[str, float]] = {}
    for cached in (True, False):
        port, procs = start_servers(url, args.workers, args.pool_size, args.page_cache_mb if cached else 0)
        try:
            for method in methods:
                api[method, cached] = measure("api", port, method, s, args.seconds, args.connections, trigram)
                print(f"{method}: api {'cached' if cached else 'uncached'} {api[method, cached]}", file=sys.stderr)
        finally:
            for p in procs:
                p.terminate()
                p.join()
    rows = []
    for method in methods:
        sql = measure("sql", url, method, s, args.seconds, args.connections, trigram)
        rows.append((method, api[method, True], api[method, False], sql))
        print(f"{method}: sql {sql}", file=sys.stderr)
    print(
        f"\n{args.tracks:,} tracks, {args.likes:,} likes (loaded in {load_s:.0f} s); Postgres {version}"
        f" ({'pg_trgm' if trigram else 'no pg_trgm'}); {os.cpu_count()} CPUs ({platform.machine()});"
        f" {args.workers} uvicorn worker(s), pool {args.pool_size} each; {args.connections} connections; "
        f"{args.seconds:.0f} s per run; page size 50\n"
    )
    print(
        "| method | page cache req/s | p50 ms | p99 ms | no cache (baseline) req/s | p50 ms | p99 ms "
        "| raw SQL req/s | p50 ms | p99 ms | errors |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for method, hot, cold, sql in rows:
        print(
            f"| {method} | {hot['rps']:,.0f} | {hot['p50']:.1f} | {hot['p99']:.1f} "
            f"| {cold['rps']:,.0f} | {cold['p50']:.1f} | {cold['p99']:.1f} "
            f"| {sql['rps']:,.0f} | {sql['p50']:.1f} | {sql['p99']:.1f} | {hot['errors'] + cold['errors']:.0f} |"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tracks", type=int, default=1_000_000)
    p.add_argument("--likes", type=int, default=10_000_000)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--pool-size", type=int, default=16)
    p.add_argument("--page-cache-mb", type=int, default=64, help="the cached runs' PLYR_APPVIEW_PAGE_CACHE_MB")
    p.add_argument("--methods", default="getLatestTracks,getActorTracks,getTrack,searchTracks")
    args = p.parse_args()
    mp.set_start_method("fork")
    with admin_url(os.environ.get("PLYR_BENCH_DATABASE_URL")) as admin:
        run(admin, args)


if __name__ == "__main__":
    main()
