"""The main job, end to end: `plyr-appview up` follows a (local) Jetstream, folds into Postgres and serves the
API; stopping and restarting resumes from the committed cursor."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
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
        assert first["wantedCollections"][0] == "fm.plyr.*" and "fm.teal.feed.play" in first["wantedCollections"]
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


# ----------------------------------------------------------------------------------------------------
# the live state of ingest, where operators look


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appview.cli", *args],
        env=env or ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def wait_for_health(port: int, ready: Any, within: float) -> dict[str, Any]:
    """Polls /xrpc/_health until `ready(body)`; `within` seconds counted from the API's first answer (the
    process needs a moment to start, migrate and bind first)."""
    loop = asyncio.get_running_loop()
    start_deadline = loop.time() + 90
    deadline: float | None = None
    body: dict[str, Any] = {}
    async with httpx.AsyncClient() as client:
        while loop.time() < (deadline if deadline is not None else start_deadline):
            try:
                resp = await client.get(f"http://127.0.0.1:{port}/xrpc/_health")
            except httpx.HTTPError:
                await asyncio.sleep(0.2)
                continue
            assert resp.status_code == 200, resp.text
            if deadline is None:
                deadline = loop.time() + within
            body = resp.json()
            if ready(body):
                return body
            await asyncio.sleep(0.2)
    raise AssertionError(f"not ready within {within} s; last health: {body}")


async def test_a_source_that_never_connects_is_shown_and_fails_the_check(tmp_path: Path, db_factory: Any) -> None:
    db = db_factory()
    # A finished replay first: it is listed apart from the live sources.
    capture = tmp_path / "old.jsonl"
    capture.write_bytes(b"".join(msgspec.json.encode(ev) + b"\n" for ev in workload(60, seed=4)))
    done = await asyncio.to_thread(cli, "--database-url", db, "replay", str(capture), "--no-progress")
    assert done.returncode == 0, done.stderr

    closed, port = free_port(), free_port()
    host = f"127.0.0.1:{closed}"
    cmd = ["--database-url", db, "up", "--source", f"ws://{host}/subscribe", "--port", str(port)]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "appview.cli", *cmd, env=ENV, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        health = await wait_for_health(
            port, lambda b: b["ingest"].get("jetstream", {}).get("lastError") == "connection refused", within=15
        )
        live = health["ingest"]["jetstream"]
        assert live["connected"] is False and live["host"] == host and live["attempts"] >= 1
        assert live["since"] is not None and live["cursor"] is None
        assert [h["host"] for h in live["hosts"]] == [host]
        assert health["ingestOk"] is False and health["ingestProblem"].startswith("no live source connected")
        (replay,) = health["replays"]
        assert replay.startswith("replay:old.jsonl:") and health["replays"][replay]["cursor"] == 59
        assert not any(name.startswith("replay:") for name in health["ingest"])

        async with httpx.AsyncClient() as client:
            page = (await client.get(f"http://127.0.0.1:{port}/status")).text
        assert f"<code>{host}</code>: not connected — last error: <code>connection refused</code> (" in page
        assert "No ingest source" not in page
        assert page.index('id="replays"') < page.index(replay)

        result = await asyncio.to_thread(cli, "--database-url", db, "status", "--json")
        assert result.returncode == 0, result.stderr
        st = json.loads(result.stdout)
        assert st["sources"]["jetstream"]["connected"] is False
        (h,) = st["sources"]["jetstream"]["hosts"]
        assert (h["host"], h["last_error"], h["last_connected_at"]) == (host, "connection refused", None)
        assert list(st["replays"]) == [replay] and replay not in st["sources"]

        checked = await asyncio.to_thread(cli, "--database-url", db, "status", "--check")
        assert checked.returncode == 1
        assert checked.stdout == ""
        (line,) = checked.stderr.splitlines()
        assert line.startswith(f"error: no live source connected ({host}: connection refused since "), line
    finally:
        assert await stop(proc) == 0


async def test_a_connected_source_passes_the_check_until_the_indexer_stops(db_factory: Any) -> None:
    events = list(workload(300, seed=11))
    # Live-stream times: the newest event is from now.
    shift = int(time.time() * 1_000_000) - events[-1]["time_us"]
    for ev in events:
        ev["time_us"] += shift
    db = db_factory()
    async with JetstreamServer(events).running() as js:
        port = free_port()
        cmd = ["--database-url", db, "up", "--source", js.url, "--port", str(port)]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "appview.cli", *cmd, env=ENV, stderr=asyncio.subprocess.DEVNULL
        )
        try:
            last = events[-1]["time_us"]
            health = await wait_for_health(
                port,
                lambda b: (
                    b["ingest"].get("jetstream", {}).get("cursor") == last and b["ingest"]["jetstream"]["connected"]
                ),
                within=60,
            )
            live = health["ingest"]["jetstream"]
            assert live["host"] == f"127.0.0.1:{js.port}" and live["attempts"] == 0 and live["lastError"] is None
            assert health["ingestOk"] is True and health["ingestProblem"] is None
            async with httpx.AsyncClient() as client:
                page = (await client.get(f"http://127.0.0.1:{port}/status")).text
            assert re.search(rf"<code>127\.0\.0\.1:{js.port}</code>: connected</span>", page), page

            checked = await asyncio.to_thread(cli, "--database-url", db, "status", "--check")
            assert checked.returncode == 0, checked.stderr
            assert checked.stdout.startswith(f"ok: connected to 127.0.0.1:{js.port}; lag ")
            # The same state with a threshold the newest event is older than.
            strict = await asyncio.to_thread(cli, "--database-url", db, "status", "--check", "--max-lag", "0.001")
            assert strict.returncode == 1
            (line,) = strict.stderr.splitlines()
            assert line.startswith("error: newest committed event is "), line
        finally:
            assert await stop(proc) == 0
    # A clean stop leaves no "connected" behind.
    result = await asyncio.to_thread(cli, "--database-url", db, "status", "--json")
    (h,) = json.loads(result.stdout)["sources"]["jetstream"]["hosts"]
    assert (h["connected"], h["last_error"], h["active"]) == (False, "stopped", False)
    assert h["last_connected_at"] is not None
    checked = await asyncio.to_thread(cli, "--database-url", db, "status", "--check")
    assert checked.returncode == 1 and "no live source connected" in checked.stderr


async def test_capture_from_a_source_that_never_connects_fails_and_leaves_no_file(tmp_path: Path) -> None:
    closed = free_port()
    out = tmp_path / "never.jsonl.zst"
    args = ["capture", "--source", f"ws://127.0.0.1:{closed}/subscribe", "--out", str(out), "--duration", "2"]
    quiet = await asyncio.to_thread(cli, *args, env={**ENV, "PLYR_APPVIEW_LOG_LEVEL": "ERROR"})
    assert quiet.returncode == 1
    (line,) = quiet.stderr.splitlines()
    assert line.startswith(
        f"error: 127.0.0.1:{closed}: never connected, nothing captured — last error: connection refused ("
    ), line
    assert not out.exists()
    # With the usual logs, the error is still the last line, and the only one of its kind.
    loud = await asyncio.to_thread(cli, *args)
    assert loud.returncode == 1
    assert [x for x in loud.stderr.splitlines() if x.startswith("error:")] == [loud.stderr.splitlines()[-1]]
    assert not out.exists()


async def test_a_second_interrupt_during_shutdown_is_quiet(db_url: str) -> None:
    """Ctrl-C twice (an impatient operator): the first starts a clean stop, the second must not cut the
    cleanup short with a traceback; the stop still succeeds."""
    port = free_port()
    cmd = [sys.executable, "-m", "appview.cli", "--database-url", db_url, "serve", "--port", str(port)]
    proc = await asyncio.create_subprocess_exec(*cmd, env=ENV, stderr=asyncio.subprocess.PIPE)
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            try:
                if (await client.get(f"http://127.0.0.1:{port}/xrpc/_health")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    assert proc.stderr is not None
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert b"Traceback" not in err and b"CancelledError" not in err
