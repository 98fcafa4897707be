"""Sustained live ingest while the API serves reads, sampled every 10 s.

    uv run python bench/load_live.py [--minutes 10] [--rate 5000] [--rps 500] [--window 10]

Four processes besides Postgres, as in production:
- a local Jetstream v1 server sending `--rate` events/s, `time_us` stamped at send time (so the indexer's lag is
  real). The events are the synthetic workload (`bench/synth.py`), repeated with fresh DIDs and handles for
  each pass, so the index keeps growing;
- `plyr-appview index --source ws://...` following it;
- `plyr-appview serve` (`--api-workers` of them, requests spread round-robin);
- an open-loop load generator: `--rps` requests/s scheduled on a fixed clock whatever the responses do (latency
  is measured from the scheduled time, so queueing shows up), over keep-alive connections, on a mix of read
  methods with identifiers sampled from the growing index.

Every `--window` seconds: events sent, committed cursor and lag (now minus the committed `time_us`), events in
the log, indexer and API RSS and CPU, API requests, errors and p50/p99 latency in the window. At the end, one
JSON summary on stdout with the verdicts: lag slope over the run after warm-up (seconds of lag per second), RSS
growth between the second and the last third of the run, and whether the target rates were reached.
`DATABASE_URL` names a server to create the database on; otherwise an embedded one is started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import platform
import random
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec
import psycopg

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.chaos_replay import fresh_database, postgres_server  # noqa: E402

B32 = "abcdefghijklmnopqrstuvwxyz234567"
_DID = re.compile(rb"did:plc:[a-z2-7]{2}")
_HANDLE = re.compile(rb'"handle":"artist')
_TIME = re.compile(rb'"time_us":\d+')


# -- the source ------------------------------------------------------------------------------------------------


def _base_lines(n: int, seed: int) -> list[bytes]:
    from bench.synth import workload

    return [msgspec.json.encode(obj) for obj in workload(n, seed=seed)]


def _pass(lines: list[bytes], k: int) -> Iterator[bytes]:
    """Pass `k` over the workload with its own DIDs (first two characters of each did:plc replaced) and
    handles: new repos, the same shape of traffic."""
    tag = (B32[(k // 32) % 32] + B32[k % 32]).encode()
    did = b"did:plc:" + tag
    handle = b'"handle":"p' + str(k).encode() + b"artist"
    for line in lines:
        yield _HANDLE.sub(handle, _DID.sub(did, line))


def _source_main(port_out: Any, sent: Any, connections: Any, rate: float, base: int, seed: int) -> None:
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.exceptions import ConnectionClosed

    lines = _base_lines(base, seed)

    def stream() -> Iterator[bytes]:
        k = 0
        while True:
            yield from _pass(lines, k)
            k += 1

    source = stream()

    async def handler(ws: ServerConnection) -> None:
        # A live stream: whoever connects gets what is sent from now on (cursors are ignored; a reconnect is
        # counted and would show as a gap in the report).
        with connections.get_lock():
            connections.value += 1
        loop = asyncio.get_running_loop()
        start = loop.time()
        n = 0
        tick = 0.01
        with contextlib.suppress(ConnectionClosed):
            while True:
                due = int((loop.time() - start) * rate) - n
                for i in range(due):
                    now_us = time.time_ns() // 1000
                    await ws.send(_TIME.sub(b'"time_us":' + str(now_us).encode(), next(source), count=1).decode())
                    n += 1
                    if i % 100 == 99:  # counted as it goes: a send blocked by backpressure shows as a slower rate
                        with sent.get_lock():
                            sent.value += 100
                with sent.get_lock():
                    sent.value += due % 100
                await asyncio.sleep(tick)

    async def main() -> None:
        # No server pings: an indexer pushing back (its queues full) reads nothing, pongs included, and this
        # server does not resend from a cursor, so a keepalive disconnect would turn backpressure into a gap.
        async with serve(handler, "127.0.0.1", 0, compression=None, max_queue=None, ping_interval=None) as server:
            port_out.value = next(iter(server.sockets)).getsockname()[1]
            await asyncio.Future()

    asyncio.run(main())


# -- the load generator ----------------------------------------------------------------------------------------

MIX = (
    ("getLatestTracks", 25),
    ("getTrack", 25),
    ("getActorTracks", 15),
    ("getActorProfile", 10),
    ("getLikes", 8),
    ("getComments", 5),
    ("getTopTracks", 5),
    ("getStats", 5),
    ("searchTracks", 2),
)
_LENGTH = re.compile(rb"content-length:\s*(\d+)", re.IGNORECASE)


def _samples(db: str) -> dict[str, list[str]]:
    # What clients ask for is what the index shows: tracks of inactive accounts and inactive actors would be
    # answered by cheap 404/400s and flatter the latency figures.
    with psycopg.connect(db) as conn:
        uris = [r[0] for r in conn.execute("SELECT uri FROM tracks WHERE author_active ORDER BY random() LIMIT 500")]
        dids = [r[0] for r in conn.execute("SELECT did FROM actors WHERE active ORDER BY random() LIMIT 500")]
    return {"uris": uris, "dids": dids}


def _path(method: str, s: dict[str, list[str]], rng: random.Random) -> str:
    uri = quote(rng.choice(s["uris"]), safe="") if s["uris"] else "at%3A%2F%2Fdid%3Aplc%3Ax%2Ffm.plyr.track%2Fx"
    did = rng.choice(s["dids"]) if s["dids"] else "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"
    query = {
        "getLatestTracks": "limit=50",
        "getTrack": f"uri={uri}",
        "getActorTracks": f"actor={did}",
        "getActorProfile": f"actor={did}",
        "getLikes": f"uri={uri}",
        "getComments": f"uri={uri}",
        "getTopTracks": "limit=25",
        "getStats": "",
        "searchTracks": f"q=track+{rng.randint(1, 999)}",
    }[method]
    return f"/xrpc/fm.plyr.{method}" + (f"?{query}" if query else "")


def _load_main(db: str, ports: list[int], rps: float, window: float, out: Any, stop: Any, conns: int) -> None:
    async def main() -> None:
        rng = random.Random(1)
        methods = [m for m, w in MIX for _ in range(w)]
        samples = _samples(db)
        tickets: asyncio.Queue[tuple[float, str, bytes]] = asyncio.Queue()
        lat: list[float] = []
        by_method: dict[str, list[float]] = {}
        errors: dict[str, int] = {}
        misses: dict[str, int] = {}
        examples: list[str] = []

        async def client(port: int) -> None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            while True:
                scheduled, method, req = await tickets.get()
                try:
                    writer.write(req)
                    head = await reader.readuntil(b"\r\n\r\n")
                    m = _LENGTH.search(head)
                    if m:
                        await reader.readexactly(int(m.group(1)))
                    status = head[9:12].decode()
                    if not status.startswith("2"):
                        # 4xx are answers (a sampled track deleted since); 5xx and broken connections are errors.
                        bucket = errors if status.startswith("5") else misses
                        bucket[status] = bucket.get(status, 0) + 1
                        if len(examples) < 5:
                            examples.append(f"{status} {req.split(b' ', 2)[1].decode()[:160]}")
                except (OSError, asyncio.IncompleteReadError) as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                lat.append(time.perf_counter() - scheduled)
                by_method.setdefault(method, []).append(lat[-1])

        workers = [asyncio.create_task(client(ports[i % len(ports)])) for i in range(conns)]
        loop = asyncio.get_running_loop()
        start = time.perf_counter()
        issued = 0
        next_report = start + window
        next_refresh = start + window
        while not stop.is_set():
            now = time.perf_counter()
            due = int((now - start) * rps) - issued
            for _ in range(due):
                method = rng.choice(methods)
                path = _path(method, samples, rng)
                scheduled = start + issued / rps
                tickets.put_nowait((scheduled, method, f"GET {path} HTTP/1.1\r\nHost: load\r\n\r\n".encode()))
                issued += 1
            if now >= next_report:
                ordered = sorted(lat)
                out.put(
                    {
                        "requests": len(ordered),
                        "errors": dict(errors),
                        "client_errors": dict(misses),
                        "examples": list(examples),
                        "backlog": tickets.qsize(),
                        "p50_ms": round(1000 * ordered[len(ordered) // 2], 1) if ordered else None,
                        "p99_ms": round(1000 * ordered[int(len(ordered) * 0.99)], 1) if ordered else None,
                        "max_ms": round(1000 * ordered[-1], 1) if ordered else None,
                        "p99_ms_by_method": {
                            m: round(1000 * sorted(v)[int(len(v) * 0.99)], 1) for m, v in sorted(by_method.items())
                        },
                    }
                )
                lat.clear()
                by_method.clear()
                errors.clear()
                misses.clear()
                examples.clear()
                next_report += window
            if now >= next_refresh:
                samples = await loop.run_in_executor(None, _samples, db)
                # Often while the index is young, then once a minute.
                next_refresh = now + (window if len(samples["uris"]) < 500 else 6 * window)
            await asyncio.sleep(0.005)
        for w in workers:
            w.cancel()

    asyncio.run(main())


# -- sampling ---------------------------------------------------------------------------------------------------


def _proc_stats(pid: int) -> tuple[float, float]:
    """(RSS MiB, CPU seconds) of a process."""
    rss_kib = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kib = int(line.split()[1])
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return rss_kib / 1024, cpu


def _slope(xs: list[float], ys: list[float]) -> float:
    if len(xs) < 2:
        return 0.0
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def _wait_http(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            with socket.create_connection(("127.0.0.1", port), timeout=1) as c:
                c.sendall(b"GET /xrpc/fm.plyr.getStats HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
                if c.recv(12).startswith(b"HTTP/1.1 200"):
                    return
        time.sleep(0.2)
    raise RuntimeError(f"API on port {port} did not start")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def machine(db: str) -> dict[str, Any]:
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    with psycopg.connect(db) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return {
        "cpus": os.cpu_count(),
        "ram_gib": round(mem_kib / 1024 / 1024, 1),
        "postgres": row[0] if row else None,
        "python": platform.python_version(),
        "loadavg_at_start": os.getloadavg(),
    }


def run(
    db: str,
    workdir: Path,
    *,
    seconds: float,
    rate: float,
    rps: float,
    window: float = 10.0,
    warmup: float = 60.0,
    api_workers: int = 1,
    connections: int = 32,
    base_events: int = 100_000,
    on_sample: Any = None,
) -> dict[str, Any]:
    env = {
        **os.environ,
        "PLYR_APPVIEW_RESOLVE_IDENTITIES": "0",
        "PLYR_APPVIEW_RECONCILE_MINUTES": "0",
        "PLYR_APPVIEW_LOG_LEVEL": "WARNING",
        "PLYR_APPVIEW_DATA_DIR": str(workdir),
        # The load comes from one address: measured, not limited.
        "PLYR_APPVIEW_RATE_LIMIT_READS_PER_MINUTE": "0",
    }
    env.pop("DATABASE_URL", None)
    ctx = mp.get_context("spawn")
    port_value, sent, reconnects = ctx.Value("i", 0), ctx.Value("q", 0), ctx.Value("i", 0)
    source = ctx.Process(target=_source_main, args=(port_value, sent, reconnects, rate, base_events, 2026), daemon=True)
    source.start()
    procs: list[subprocess.Popen[bytes]] = []
    load: Any = None
    stop = ctx.Event()
    try:
        deadline = time.monotonic() + 120
        while port_value.value == 0:
            if time.monotonic() > deadline or not source.is_alive():
                raise RuntimeError("the source did not start")
            time.sleep(0.1)
        cli = [sys.executable, "-m", "appview.cli", "--database-url", db]
        api_ports = [_free_port() for _ in range(api_workers)]
        for port in api_ports:
            procs.append(
                subprocess.Popen([*cli, "serve", "--port", str(port)], env=env, cwd=ROOT, stderr=subprocess.DEVNULL)
            )
        for port in api_ports:
            _wait_http(port)
        indexer = subprocess.Popen(
            [*cli, "index", "--source", f"ws://127.0.0.1:{port_value.value}/subscribe"],
            env=env,
            cwd=ROOT,
            stderr=(workdir / "index.log").open("wb"),
        )
        procs.append(indexer)
        out: Any = ctx.Queue()
        load = ctx.Process(target=_load_main, args=(db, api_ports, rps, window, out, stop, connections), daemon=True)
        load.start()
        started = time.monotonic()
        samples: list[dict[str, Any]] = []
        prev_cpu = {p.pid: 0.0 for p in procs}
        prev_sent, prev_events, prev_t = 0, 0, started
        conn = psycopg.connect(db, autocommit=True)
        while time.monotonic() - started < seconds:
            time.sleep(max(0.0, started + window * (len(samples) + 1) - time.monotonic()))
            now = time.monotonic()
            row = conn.execute("SELECT max(cursor) FROM cursors WHERE source LIKE 'jetstream%'").fetchone()
            cursor = row[0] if row else None
            events = conn.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()
            n_events = int(events[0]) if events else 0
            lag = None if cursor is None else round(time.time() - cursor / 1e6, 2)
            api: dict[str, Any] = {}
            with contextlib.suppress(Exception):
                api = out.get(timeout=5)
            stats = {p.pid: _proc_stats(p.pid) for p in procs if p.poll() is None}
            api_rss = [stats[p.pid][0] for p in procs[:-1] if p.pid in stats]
            cpu = {pid: round(c - prev_cpu.get(pid, 0.0), 1) for pid, (_, c) in stats.items()}
            prev_cpu.update({pid: c for pid, (_, c) in stats.items()})
            with sent.get_lock():
                total_sent = int(sent.value)
            sample = {
                "t": round(now - started),
                "sent_per_s": round((total_sent - prev_sent) / (now - prev_t)),
                "logged_per_s": round((n_events - prev_events) / (now - prev_t)),
                "lag_s": lag,
                "indexer_rss_mib": round(stats[indexer.pid][0], 1) if indexer.pid in stats else None,
                "indexer_cpu_s": cpu.get(indexer.pid),
                "api_rss_mib": round(sum(api_rss), 1),
                "api_cpu_s": round(sum(cpu.get(p.pid, 0.0) for p in procs[:-1]), 1),
                "api_req_per_s": round(api.get("requests", 0) / window) if api else None,
                "api_p50_ms": api.get("p50_ms"),
                "api_p99_ms": api.get("p99_ms"),
                "api_p99_ms_by_method": api.get("p99_ms_by_method"),
                "api_errors": api.get("errors"),
                "api_4xx": api.get("client_errors"),
                "api_non_2xx_examples": api.get("examples"),
                "api_backlog": api.get("backlog"),
                "loadavg_1m": os.getloadavg()[0],
            }
            prev_sent, prev_events, prev_t = total_sent, n_events, now
            samples.append(sample)
            if on_sample is not None:
                on_sample(sample)
            if indexer.poll() is not None:
                raise RuntimeError(f"the indexer exited ({indexer.returncode}); see {workdir / 'index.log'}")
        conn.close()
        return summarize(samples, rate=rate, rps=rps, warmup=warmup, window=window, reconnects=reconnects.value - 1)
    finally:
        stop.set()
        if load is not None:
            load.join(timeout=10)
            if load.is_alive():
                load.terminate()
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        source.terminate()
        source.join(timeout=10)


def summarize(
    samples: list[dict[str, Any]], *, rate: float, rps: float, warmup: float, window: float, reconnects: int
) -> dict[str, Any]:
    steady = [s for s in samples if s["t"] > warmup] or samples
    xs = [float(s["t"]) for s in steady if s["lag_s"] is not None]
    lags = [float(s["lag_s"]) for s in steady if s["lag_s"] is not None]
    lag_slope = _slope(xs, lags)
    third = max(1, len(steady) // 3)
    middle, last = steady[third : 2 * third] or steady, steady[-third:]

    def growth(key: str) -> float | None:
        a = [s[key] for s in middle if s[key] is not None]
        b = [s[key] for s in last if s[key] is not None]
        if not a or not b:
            return None
        return round(statistics.median(b) / statistics.median(a) - 1, 3)

    p99s = [s["api_p99_ms"] for s in steady if s["api_p99_ms"] is not None]
    by_method: dict[str, list[float]] = {}
    for s in steady:
        for m, v in (s.get("api_p99_ms_by_method") or {}).items():
            by_method.setdefault(m, []).append(v)
    p50s = [s["api_p50_ms"] for s in steady if s["api_p50_ms"] is not None]
    ingest = statistics.fmean(s["logged_per_s"] for s in steady)
    sent = statistics.fmean(s["sent_per_s"] for s in steady)
    api_rate = statistics.fmean(s["api_req_per_s"] or 0 for s in steady)
    errors: dict[str, int] = {}
    for s in steady:
        for k, v in (s["api_errors"] or {}).items():
            errors[k] = errors.get(k, 0) + v
    indexer_growth, api_growth = growth("indexer_rss_mib"), growth("api_rss_mib")
    span = (xs[-1] - xs[0]) if len(xs) > 1 else 0.0
    client_errors: dict[str, int] = {}
    for s in steady:
        for k, v in (s.get("api_4xx") or {}).items():
            client_errors[k] = client_errors.get(k, 0) + v
    return {
        "target": {"events_per_s": rate, "api_req_per_s": rps, "window_s": window, "warmup_s": warmup},
        "samples": samples,
        "steady": {
            "windows": len(steady),
            "sent_per_s": round(sent),
            "logged_per_s": round(ingest),
            "api_req_per_s": round(api_rate),
            "api_p50_ms_median": statistics.median(p50s) if p50s else None,
            "api_p99_ms_median": statistics.median(p99s) if p99s else None,
            "api_p99_ms_worst": max(p99s) if p99s else None,
            "api_p99_ms_median_by_method": {m: statistics.median(v) for m, v in sorted(by_method.items())},
            "api_errors": errors,
            "api_4xx": client_errors,
            "lag_s_first": lags[0] if lags else None,
            "lag_s_last": lags[-1] if lags else None,
            "lag_s_max": max(lags) if lags else None,
            "lag_slope_s_per_s": round(lag_slope, 4),
            "lag_growth_over_run_s": round(lag_slope * span, 2),
            "indexer_rss_growth": indexer_growth,
            "api_rss_growth": api_growth,
            "source_reconnects": reconnects,
        },
        "verdict": {
            "ingest_rate_reached": sent >= 0.95 * rate,
            "api_rate_reached": api_rate >= 0.95 * rps,
            # The fitted lag grows by less than 2 s over the whole steady run, and ends small.
            "lag_not_growing": lag_slope * span < 2.0 and (lags[-1] if lags else 1e9) < 10,
            "rss_flat": all(g is not None and g < 0.10 for g in (indexer_growth, api_growth)),
            "no_api_errors": not errors,
        },
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--rate", type=float, default=5000.0, help="events/s sent by the source")
    p.add_argument("--rps", type=float, default=500.0, help="API requests/s")
    p.add_argument("--window", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=60.0, help="seconds left out of the verdicts")
    p.add_argument("--api-workers", type=int, default=1)
    p.add_argument("--connections", type=int, default=32)
    args = p.parse_args()
    with postgres_server() as admin, tempfile.TemporaryDirectory(prefix="plyr-load-") as tmp:
        db = fresh_database(admin)
        info = machine(db)
        print(json.dumps({"machine": info}), file=sys.stderr, flush=True)

        def show(sample: dict[str, Any]) -> None:
            print(json.dumps(sample), file=sys.stderr, flush=True)

        result = run(
            db,
            Path(tmp),
            seconds=args.minutes * 60,
            rate=args.rate,
            rps=args.rps,
            window=args.window,
            warmup=args.warmup,
            api_workers=args.api_workers,
            connections=args.connections,
            on_sample=show,
        )
        result["machine"] = {**info, "loadavg_at_end": os.getloadavg()}
    print(json.dumps(result, indent=2))
    return 0 if all(result["verdict"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
