"""Write-proxy overhead: createRecord through the AppView vs directly to the same PDS, against a real local PDS.

    bash tests/pds/install.sh                       # once: the PDS's npm packages
    uv run python bench/proxy_bench.py [--writes 200] [--warmup 20]

A local `@atproto/pds` (with its PLC directory) runs on loopback; the AppView runs as `plyr-appview serve` in its
own process (PLYR_APPVIEW_ALLOW_PRIVATE_HOSTS=1, since the PDS is on loopback), on an embedded Postgres (or
`--database-url`). Each write is one createRecord of a valid fm.plyr.track by the same account, sent with one
keep-alive HTTP client; direct and proxied writes alternate (which goes first alternates too), so both see the
PDS in the same state. The proxied figure includes everything the proxy does: validation, the DID document (cached
after the first write), forwarding, and folding the write into the index before answering.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import statistics
import sys
import time
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.postgres import admin_url  # noqa: E402
from indexer.db import migrate  # noqa: E402
from tests.pds.server import running_pds, unavailable  # noqa: E402

CREATE = "/xrpc/com.atproto.repo.createRecord"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def measure(db: str, writes: int, warmup: int) -> tuple[list[float], list[float]]:
    direct: list[float] = []
    proxied: list[float] = []
    async with running_pds() as pds:
        account = await pds.create_account("bench")
        port = free_port()
        env = {
            **os.environ,
            "PLC_URL": pds.plc_url,
            "PLYR_APPVIEW_ALLOW_PRIVATE_HOSTS": "1",
            "PLYR_APPVIEW_LOG_LEVEL": "WARNING",
            # One client writing as fast as it can: measured, not limited.
            "PLYR_APPVIEW_RATE_LIMIT_WRITES_PER_MINUTE": "0",
        }
        server = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "appview.cli", "--database-url", db, "serve", "--port", str(port)],
            env=env,
            stderr=asyncio.subprocess.DEVNULL,
        )
        proxy_url = f"http://127.0.0.1:{port}"
        try:
            async with httpx.AsyncClient(timeout=30) as client:
                for _ in range(300):
                    try:
                        if (await client.get(f"{proxy_url}/xrpc/_health")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await asyncio.sleep(0.1)
                headers = {"authorization": f"Bearer {account.jwt}"}

                async def create(base: str, i: int) -> float:
                    record = {
                        "$type": "fm.plyr.track",
                        "title": f"t{i}",
                        "artist": "bench",
                        "fileType": "mp3",
                        "audioUrl": "https://cdn.example/a.mp3",
                        "createdAt": "2026-11-23T10:00:00Z",
                    }
                    body = {"repo": account.did, "collection": "fm.plyr.track", "record": record}
                    t0 = time.perf_counter()
                    resp = await client.post(f"{base}{CREATE}", json=body, headers=headers)
                    elapsed = time.perf_counter() - t0
                    if resp.status_code != 200:
                        raise SystemExit(f"{base}: {resp.status_code} {resp.text}")
                    return elapsed

                for i in range(warmup + writes):
                    order = [(pds.url, direct), (proxy_url, proxied)]
                    if i % 2:
                        order.reverse()
                    for base, out in order:
                        elapsed = await create(base, i)
                        if i >= warmup:
                            out.append(elapsed)
                metrics = (await client.get(f"{proxy_url}/metrics")).text
                upstream = _mean(metrics, "plyr_proxy_upstream_seconds", 'method="createRecord"')
                fold = _mean(metrics, "plyr_batch_seconds", "")
                print(f"inside the proxy (means): PDS answer {upstream * 1000:.1f} ms, fold {fold * 1000:.1f} ms")
                async with await psycopg.AsyncConnection.connect(db) as conn:
                    cur = await conn.execute("SELECT count(*) FROM tracks")
                    row = await cur.fetchone()
                    assert row is not None and int(row[0]) == warmup + writes, row  # every proxied write folded
        finally:
            server.terminate()
            await server.wait()
    return direct, proxied


def _mean(metrics: str, name: str, labels: str) -> float:
    """sum / count of a Prometheus histogram from the text exposition."""
    values: dict[str, float] = {}
    for line in metrics.splitlines():
        for part in ("_sum", "_count"):
            if line.startswith(name + part) and labels in line:
                values[part] = float(line.rsplit(" ", 1)[1])
    return values.get("_sum", 0.0) / max(1.0, values.get("_count", 0.0))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--writes", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--database-url", default=os.environ.get("PLYR_BENCH_DATABASE_URL"))
    args = ap.parse_args()
    why = unavailable()
    if why:
        raise SystemExit(f"local PDS unavailable: {why}")
    with admin_url(args.database_url) as admin:
        name = "bench_proxy"
        with psycopg.connect(admin, autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            c.execute(f"CREATE DATABASE {name}")
        db = psycopg.conninfo.make_conninfo(admin, dbname=name)
        migrate.upgrade(db)
        direct, proxied = asyncio.run(measure(db, args.writes, args.warmup))
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"# createRecord: through the write proxy vs directly to the PDS ({machine})")
    print()
    print("| path | writes | p50 (ms) | p95 (ms) | p99 (ms) | mean (ms) |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, lat in (("direct to the PDS", direct), ("through the proxy", proxied)):
        ms = [x * 1000 for x in lat]
        print(
            f"| {label} | {len(ms)} | {percentile(ms, 0.5):.1f} | {percentile(ms, 0.95):.1f} |"
            f" {percentile(ms, 0.99):.1f} | {statistics.fmean(ms):.1f} |"
        )
    d50, p50 = percentile(direct, 0.5) * 1000, percentile(proxied, 0.5) * 1000
    d95, p95 = percentile(direct, 0.95) * 1000, percentile(proxied, 0.95) * 1000
    print()
    print(f"overhead: p50 {p50 - d50:+.1f} ms, p95 {p95 - d95:+.1f} ms")


if __name__ == "__main__":
    main()
