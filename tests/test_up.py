"""The main job, end to end: `plyr-appview up` follows a (local) Jetstream, folds into Postgres and serves the
API; stopping and restarting resumes from the committed cursor."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import msgspec
import zstandard

from bench.synth import workload
from tests.jetstream_server import JetstreamServer

ENV = {**os.environ, "PLYR_APPVIEW_RESOLVE_IDENTITIES": "0", "PLYR_APPVIEW_BATCH_SECONDS": "0.2"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def status(db_url: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "appview.cli", "--database-url", db_url, "status", "--json"],
        env=ENV,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


async def wait_for_cursor(port: int, cursor: int, within: float = 60) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        deadline = asyncio.get_running_loop().time() + within
        body: dict[str, Any] = {}
        while asyncio.get_running_loop().time() < deadline:
            try:
                resp = await client.get(f"http://127.0.0.1:{port}/xrpc/_health")
                body = resp.json()
                got = body.get("ingest", {}).get("jetstream", {}).get("cursor")
                if got == cursor:
                    return body
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise AssertionError(f"cursor {cursor} not reached; last health: {body}")


async def stop(proc: asyncio.subprocess.Process) -> int:
    proc.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(proc.wait(), 30)


async def test_up_indexes_serves_and_resumes(tmp_path: Path, db_factory: Any) -> None:
    events = list(workload(3000, seed=5))
    last = events[-1]["time_us"]
    live = db_factory()
    async with JetstreamServer(events).running() as js:
        port = free_port()
        cmd = [
            sys.executable,
            "-m",
            "appview.cli",
            "--database-url",
            live,
            "up",
            "--source",
            js.url,
            "--port",
            str(port),
        ]
        proc = await asyncio.create_subprocess_exec(*cmd, env=ENV, stderr=asyncio.subprocess.DEVNULL)
        try:
            health = await wait_for_cursor(port, last)
            assert health["db"] == "ok"
            async with httpx.AsyncClient() as client:
                metrics = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            assert 'plyr_events_accepted_total{kind="commit"}' in metrics
            assert "plyr_events_rejected_total" in metrics
        finally:
            assert await stop(proc) == 0
        first = js.requests[0]
        assert first["wantedCollections"] == ["fm.plyr.*"]
        assert "cursor" not in first

        # Restart: resumes from the committed cursor, rewound (duplicates are absorbed), nothing new appended.
        before = await asyncio.to_thread(status, live)
        proc = await asyncio.create_subprocess_exec(*cmd, env=ENV, stderr=asyncio.subprocess.DEVNULL)
        try:
            # The committed cursor is already `last`, so health alone cannot tell that the new process has
            # reconnected: wait for its request to reach the server first.
            for _ in range(600):
                if len(js.requests) > 1:
                    break
                await asyncio.sleep(0.05)
            assert len(js.requests) > 1, "the restarted process never reconnected"
            await wait_for_cursor(port, last)
        finally:
            assert await stop(proc) == 0
        resumed = js.requests[-1]
        assert "cursor" in resumed, js.requests
        assert int(resumed["cursor"][0]) <= last
        after = await asyncio.to_thread(status, live)
        assert after["state_hash"] == before["state_hash"]
        assert after["log"] == before["log"]

    # The same events replayed from a capture file give the same index.
    capture = tmp_path / "same.jsonl.zst"
    with capture.open("wb") as raw, zstandard.ZstdCompressor().stream_writer(raw) as out:
        for ev in events:
            out.write(msgspec.json.encode(ev) + b"\n")
    replayed = db_factory()
    await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "appview.cli", "--database-url", replayed, "replay", str(capture), "--no-progress"],
        env=ENV,
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert (await asyncio.to_thread(status, replayed))["state_hash"] == after["state_hash"]


async def test_capture_then_replay_equals_live(tmp_path: Path, db_factory: Any) -> None:
    events = list(workload(800, seed=9))
    out = tmp_path / "live.jsonl.zst"
    async with JetstreamServer(events).running() as js:
        cmd = [
            sys.executable,
            "-m",
            "appview.cli",
            "capture",
            "--source",
            js.url,
            "--out",
            str(out),
            "--limit",
            str(len(events)),
        ]
        proc = await asyncio.create_subprocess_exec(*cmd, env=ENV, stderr=asyncio.subprocess.DEVNULL)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    with out.open("rb") as f, zstandard.ZstdDecompressor().stream_reader(f) as r:
        captured = [json.loads(line) for line in r.read().splitlines()]
    assert captured == events

    db = db_factory()

    def replay() -> None:
        subprocess.run(
            [sys.executable, "-m", "appview.cli", "--database-url", db, "replay", str(out), "--no-progress"],
            env=ENV,
            check=True,
            capture_output=True,
            timeout=300,
        )

    await asyncio.to_thread(replay)
    replayed = await asyncio.to_thread(status, db)
    assert replayed["counts"]["tracks"] > 0
