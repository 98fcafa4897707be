"""A misbehaving Jetstream against the real `plyr-appview index` process: connections cut in the middle of a
websocket frame, a server that never completes a frame, then a server gone silent. The indexer reconnects with
backoff (connection attempts counted, intervals measured), does not spin (its CPU time is measured from /proc),
and ends with every event indexed once."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec
import psycopg
from websockets.asyncio.server import ServerConnection, serve

from bench.synth import BASE_US, workload
from indexer.atproto.lexicon import Validator
from indexer.fold.writer import BatchWriter
from indexer.jetstream.parse import parse_v1
from tests.helpers import state

ENV = {
    **os.environ,
    "PLYR_APPVIEW_RESOLVE_IDENTITIES": "0",
    "PLYR_APPVIEW_RECONCILE_MINUTES": "0",
    "PLYR_APPVIEW_BATCH_SECONDS": "0.1",
    "PLYR_APPVIEW_LOG_LEVEL": "WARNING",
}
STEP_US = 10_000  # events 10 ms apart in time_us, so the 1 s reconnect rewind re-sends about 100 of them


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class FaultyJetstream:
    """Serves `events` from the requested cursor. Modes: `cut` sends `per_connection` events then a frame
    header announcing 1000 bytes, 10 of them, and a TCP abort; `cut_at_once` does the cut before any event;
    `serve` sends the rest and goes silent with the connection open."""

    def __init__(self, events: list[dict[str, Any]], per_connection: int) -> None:
        self.events = events
        self.per_connection = per_connection
        self.mode = "cut"
        self.attempts: list[tuple[str, float]] = []
        self.url = ""

    async def _handler(self, ws: ServerConnection) -> None:
        loop = asyncio.get_running_loop()
        self.attempts.append((self.mode, loop.time()))
        assert ws.request is not None
        query = parse_qs(urlsplit(ws.request.path).query)
        cursor = int(query["cursor"][0]) if "cursor" in query else None
        pending = [ev for ev in self.events if cursor is None or ev["time_us"] >= cursor]
        if self.mode == "serve":
            for ev in pending:
                await ws.send(msgspec.json.encode(ev).decode())
            with contextlib.suppress(Exception):
                await ws.wait_closed()
            return
        if self.mode == "cut":
            for ev in pending[: self.per_connection]:
                await ws.send(msgspec.json.encode(ev).decode())
        # A text frame whose header promises 1000 bytes, then only 10 of them, then the connection is gone.
        ws.transport.write(b"\x81\x7e" + struct.pack(">H", 1000) + b'{"did":"di')
        await asyncio.sleep(0.05)
        ws.transport.abort()

    @contextlib.asynccontextmanager
    async def running(self) -> Any:
        async with serve(self._handler, "127.0.0.1", 0, compression=None) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            self.url = f"ws://127.0.0.1:{port}/subscribe"
            yield self


def _intervals(times: list[float]) -> list[float]:
    return [round(b - a, 3) for a, b in itertools.pairwise(times)]


async def _cursor(url: str) -> int | None:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute("SELECT max(cursor) FROM cursors WHERE source LIKE 'jetstream%'")
        row = await cur.fetchone()
    return None if row is None or row[0] is None else int(row[0])


async def test_cut_and_silent_sources_reconnect_with_backoff_without_spinning(
    db_factory: object, validator: Validator, tmp_path: Path
) -> None:
    assert callable(db_factory)
    db = db_factory()
    events = list(workload(3000, seed=41))
    for i, ev in enumerate(events):
        ev["time_us"] = BASE_US + i * STEP_US
    last = events[-1]["time_us"]
    js = FaultyJetstream(events, per_connection=250)
    figures: dict[str, Any] = {}
    async with js.running():
        proc = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "appview.cli", "--database-url", db, "index", "--source", js.url],
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=(tmp_path / "index.log").open("wb"),
        )
        try:
            loop = asyncio.get_running_loop()
            started = loop.time()
            while not js.attempts:
                assert loop.time() < started + 60, "the indexer never connected"
                await asyncio.sleep(0.1)

            # 1. Every connection delivers some events, then dies mid-frame.
            cpu0 = _cpu_seconds(proc.pid)
            await asyncio.sleep(6.0)
            cut = [t for mode, t in js.attempts if mode == "cut"]
            progress = await _cursor(db)
            figures["cut_mid_frame"] = {
                "window_s": 6.0,
                "connections": len(cut),
                "intervals_s": _intervals(cut),
                "cpu_s": round(_cpu_seconds(proc.pid) - cpu0, 2),
                "committed_cursor": progress,
            }
            assert progress is not None and progress > events[250]["time_us"]  # ingest moved across connections
            # Not a busy loop: each reconnect waits (min backoff 0.5 s, jittered down to 0.25 s).
            assert 4 <= len(cut) <= 6.0 / 0.25 + 2
            assert all(gap >= 0.2 for gap in _intervals(cut))

            # 2. Connections that never deliver a whole frame: the backoff grows.
            js.mode = "cut_at_once"
            cpu0 = _cpu_seconds(proc.pid)
            await asyncio.sleep(12.0)
            empty = [t for mode, t in js.attempts if mode == "cut_at_once"]
            gaps = _intervals(empty)
            figures["cut_before_any_frame"] = {
                "window_s": 12.0,
                "connections": len(empty),
                "intervals_s": gaps,
                "cpu_s": round(_cpu_seconds(proc.pid) - cpu0, 2),
            }
            assert 3 <= len(empty) <= 8, gaps
            assert gaps[-1] >= 1.5 * gaps[0], gaps  # doubling, through the jitter
            assert figures["cut_before_any_frame"]["cpu_s"] < 1.5

            # 3. The rest of the stream, then silence with the connection open.
            js.mode = "serve"
            deadline = loop.time() + 60
            while await _cursor(db) != last:
                assert loop.time() < deadline, "ingest did not catch up"
                assert proc.returncode is None
                await asyncio.sleep(0.2)
            attempts_before = len(js.attempts)
            cpu0 = _cpu_seconds(proc.pid)
            await asyncio.sleep(8.0)
            figures["silent"] = {
                "window_s": 8.0,
                "connections": len(js.attempts) - attempts_before,
                "cpu_s": round(_cpu_seconds(proc.pid) - cpu0, 2),
            }
            # Silence shorter than the idle timeout (60 s) is waited out on the open socket, at rest.
            assert figures["silent"]["connections"] == 0
            assert figures["silent"]["cpu_s"] < 0.4
        finally:
            if proc.returncode is None:
                proc.terminate()
            await asyncio.wait_for(proc.wait(), 30)

    got = await state(db)
    reference = db_factory()
    async with BatchWriter(reference, validator=validator) as writer:
        items = [parse_v1(msgspec.json.encode(ev), "reference") for ev in events]
        await writer.write([i for i in items if i is not None])
    expected = await state(reference)
    assert got["state_hash"] == expected["state_hash"]
    assert got["log"] == expected["log"]
    assert got["rejections"] == expected["rejections"]
    print(json.dumps(figures))
