"""Upload throughput and server memory of fm.plyr.uploadAudio, local directory and S3 (moto on loopback).

    uv run python bench/upload_bench.py [--sizes 5,50] [--backends local,s3]

For each backend and size (MB), a fresh API server process (uvicorn, one worker) receives one generated WAV of
that size through `POST /xrpc/fm.plyr.uploadAudio` (service-auth token, streamed from disk by the client). We
report the wall time from the first byte sent to the response, MB/s, and the server's peak RSS (VmHWM) after
the upload. A baseline moving the same file the plain way runs in its own process: a file copy for the local
backend, a direct aioboto3 `upload_file` (s3transfer, multipart) for S3. Peak RSS at 5 MB and 50 MB shows
whether memory grows with the file (it must not: the body is spooled to disk, S3 parts are read one at a time).
Uses an embedded Postgres unless PLYR_BENCH_DATABASE_URL is set. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.postgres import admin_url  # noqa: E402

MB = 1_000_000
HOST = "api.plyr.bench"
UPLOADER = "did:plc:benchuploader00000000000"


def make_wav(path: Path, size: int) -> None:
    """A 16-bit stereo 44.1 kHz WAV of `size` bytes with non-repeating content (no dedup between runs)."""
    data = size - 44
    header = (
        b"RIFF"
        + struct.pack("<I", 36 + data)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 2, 44100, 44100 * 4, 4, 16)
        + b"data"
        + struct.pack("<I", data)
    )
    with path.open("wb") as f:
        f.write(header)
        left = data
        while left:
            n = min(left, 4 * 1024 * 1024)
            f.write(os.urandom(n))
            left -= n


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# -- server process -------------------------------------------------------------------------------------------


def serve(db: str, port: int, did_key: str) -> None:
    import uvicorn

    from appview.app import create_app
    from indexer.settings import Settings

    class Resolver:
        async def signing_key(self, did: str, *, fresh: bool = False) -> str | None:
            return did_key if did == UPLOADER else None

        async def pds_endpoint(self, did: str) -> str | None:
            return None

    settings = Settings(public_host=HOST, storage=Settings.from_env().storage)
    app = create_app(db, settings=settings, resolver=Resolver(), pool_size=2)
    uvicorn.run(app, host="127.0.0.1", port=port, log_config=None, access_log=False)


# -- baselines (own process) ----------------------------------------------------------------------------------


def baseline(kind: str, path: str) -> None:
    started = time.perf_counter()
    if kind == "local":
        with tempfile.TemporaryDirectory(dir=os.environ["PLYR_APPVIEW_AUDIO_DIR"]) as d:
            shutil.copyfile(path, Path(d) / "copy")
            os.sync()
            elapsed = time.perf_counter() - started
    else:
        import aioboto3

        async def up() -> None:
            session = aioboto3.Session(
                aws_access_key_id="bench", aws_secret_access_key="bench", region_name="us-east-1"
            )
            async with session.client("s3", endpoint_url=os.environ["S3_ENDPOINT_URL"]) as s3:
                await s3.upload_file(path, os.environ["S3_BUCKET"], f"baseline/{Path(path).name}")

        asyncio.run(up())
        elapsed = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": elapsed, "peak_rss_mb": rss}))


# -- driver ---------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def stream_file(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as f:
        while chunk := await asyncio.to_thread(f.read, 1024 * 1024):
            yield chunk


def spawn_server(db: str, port: int, did_key: str, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, __file__, "--serve", db, str(port), did_key],
        env={**env, "PLYR_APPVIEW_LOG_LEVEL": "WARNING"},
        stdout=subprocess.DEVNULL,
    )


async def upload_once(db: str, env: dict[str, str], path: Path) -> dict[str, Any]:
    from tests.api_support import Keypair, service_jwt

    key = Keypair()
    port = free_port()
    proc = spawn_server(db, port, key.did_key, env)
    size = (await asyncio.to_thread(path.stat)).st_size
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=300) as http:
            for _ in range(300):
                try:
                    await http.get("/xrpc/_health")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            idle = peak_rss_mb(proc.pid)
            token = service_jwt(key, iss=UPLOADER, lxm="fm.plyr.uploadAudio", aud=f"did:web:{HOST}")
            headers = {
                "Authorization": f"Bearer {token}",
                "Content-Type": "audio/wav",
                "Content-Length": str(size),
            }
            started = time.perf_counter()
            resp = await http.post("/xrpc/fm.plyr.uploadAudio", content=stream_file(path), headers=headers)
            elapsed = time.perf_counter() - started
            resp.raise_for_status()
        return {"seconds": elapsed, "idle_rss_mb": idle, "peak_rss_mb": peak_rss_mb(proc.pid)}
    finally:
        proc.terminate()
        proc.wait(30)


def run_baseline(kind: str, env: dict[str, str], path: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--baseline", kind, str(path)], env=env, capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def fresh_db(admin: str) -> str:
    from indexer.db import migrate

    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS plyr_upload_bench WITH (FORCE)")
        conn.execute("CREATE DATABASE plyr_upload_bench")
    url = psycopg.conninfo.make_conninfo(admin, dbname="plyr_upload_bench")
    migrate.upgrade(url)
    return url


async def drive(
    args: argparse.Namespace, tmp: Path, admin: str
) -> list[tuple[str, int, dict[str, Any], dict[str, Any]]]:
    db = fresh_db(admin)
    sizes = [int(s) for s in args.sizes.split(",")]
    files = {}
    for size in sizes:
        files[size] = tmp / f"upload-{size}MB.wav"
        make_wav(files[size], size * MB)
    rows = []
    for backend in args.backends.split(","):
        env = {k: v for k, v in os.environ.items() if not k.startswith("S3_")}
        env["PLYR_APPVIEW_AUDIO_DIR"] = str(tmp / "store")
        (tmp / "store").mkdir(exist_ok=True)
        moto = None
        if backend == "s3":
            import logging

            from moto.server import ThreadedMotoServer

            logging.getLogger("werkzeug").setLevel(logging.WARNING)
            moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            moto.start()
            host, port = moto.get_host_and_port()
            env |= {
                "S3_ENDPOINT_URL": f"http://{host}:{port}",
                "S3_BUCKET": "bench",
                "S3_ACCESS_KEY_ID": "bench",
                "S3_SECRET_ACCESS_KEY": "bench",
            }
            import boto3

            boto3.client(
                "s3",
                endpoint_url=env["S3_ENDPOINT_URL"],
                aws_access_key_id="b",
                aws_secret_access_key="b",
                region_name="us-east-1",
            ).create_bucket(Bucket="bench")
        try:
            for size in sizes:
                make_wav(files[size], size * MB)  # fresh bytes: never a deduplicated upload
                ours = await upload_once(db, env, files[size])
                base = run_baseline(backend, env, files[size])
                rows.append((backend, size, ours, base))
        finally:
            if moto is not None:
                moto.stop()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="5,50", help="file sizes in MB, comma separated")
    ap.add_argument("--backends", default="local,s3")
    ap.add_argument("--database-url", default=os.environ.get("PLYR_BENCH_DATABASE_URL"))
    ap.add_argument("--serve", nargs=3, metavar=("DB", "PORT", "DID_KEY"))
    ap.add_argument("--baseline", nargs=2, metavar=("KIND", "FILE"))
    args = ap.parse_args()
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), args.serve[2])
        return
    if args.baseline:
        baseline(*args.baseline)
        return
    with tempfile.TemporaryDirectory(prefix="plyr-upload-bench-") as d, admin_url(args.database_url) as admin:
        rows = asyncio.run(drive(args, Path(d), admin))
    print(f"# upload benchmark ({platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()})")
    print()
    print("| backend | file | uploadAudio MB/s | server peak RSS (MB) | baseline | baseline MB/s | baseline RSS (MB) |")
    print("|---|---:|---:|---:|---|---:|---:|")
    for backend, size, ours, base in rows:
        name = "file copy" if backend == "local" else "aioboto3 upload_file"
        print(
            f"| {backend} | {size} MB | {size / ours['seconds']:.0f} | {ours['peak_rss_mb']:.0f}"
            f" (idle {ours['idle_rss_mb']:.0f}) | {name} | {size / base['seconds']:.0f} | {base['peak_rss_mb']:.0f} |"
        )


if __name__ == "__main__":
    main()
