"""JetstreamSource against real websocket servers on 127.0.0.1: filtering, compression, resume, failover,
dead sockets, garbage, oversize frames, backoff, v2 framing and cursors."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from functools import cache
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec
import pytest
import zstandard
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from indexer.events import Checkpoint, Event, Item
from indexer.jetstream.parse import parse_v1
from indexer.jetstream.source import (
    V2_PATH,
    CursorTooOldError,
    JetstreamSource,
    RequestRejectedError,
    parse_endpoint,
)
from indexer.metrics import Metrics
from indexer.source_status import SourceState

REFERENCE = Path(os.environ.get("PLYR_REFERENCE_DIR") or Path(__file__).resolve().parents[2] / "shared" / "reference")
V2_TYPE = "network.bsky.jetstream.subscribeEvents#"
# What every connection asks for, one repeated parameter each: our namespace whole, Bluesky's profiles, and
# teal.fm's plays and statuses.
WANTED_QUERY = [
    "fm.plyr.*",
    "app.bsky.actor.profile",
    "fm.teal.actor.status",
    "fm.teal.alpha.actor.status",
    "fm.teal.alpha.feed.play",
    "fm.teal.feed.play",
]

# Fast settings for every test; each test overrides what it exercises.
FAST: dict[str, Any] = {
    "min_backoff": 0.01,
    "max_backoff": 0.05,
    "idle_timeout": 5.0,
    "open_timeout": 2.0,
    "close_timeout": 0.5,
}


@cache
def golden() -> tuple[bytes, ...]:
    data = (REFERENCE / "corpus" / "jetstream_v1_golden.jsonl").read_bytes()
    return tuple(line for line in data.splitlines() if line.strip())


@cache
def plyr_lines() -> tuple[bytes, ...]:
    """The golden events with every commit but the first two moved to an fm.plyr.* collection (same records,
    revs, CIDs and timestamps): the first two stay foreign so the filter is exercised."""
    out = []
    for n, line in enumerate(golden()):
        ev = json.loads(line)
        if ev["kind"] == "commit" and n >= 2:
            ev["commit"]["collection"] = "fm.plyr." + ev["commit"]["collection"].rsplit(".", 1)[-1]
        out.append(json.dumps(ev, separators=(",", ":")).encode())
    return tuple(out)


def ours(lines: tuple[bytes, ...] | list[bytes]) -> list[bytes]:
    return [line for line in lines if parse_v1(line, "jetstream") is not None]


def time_us(line: bytes) -> int:
    t: int = json.loads(line)["time_us"]
    return t


def compressor(name: str = "jetstream_v1.zdict") -> zstandard.ZstdCompressor:
    return zstandard.ZstdCompressor(dict_data=zstandard.ZstdCompressionDict((REFERENCE / "zstd" / name).read_bytes()))


Script = Callable[[int, ServerConnection], Awaitable[None]]
Reject = Callable[[int, Request], Response | None]


class FakeJetstream:
    """A scripted server: `script(n, ws)` runs the n-th accepted connection; `reject(n, request)` may answer
    the n-th request with an HTTP error instead of upgrading."""

    def __init__(self, script: Script, *, reject: Reject | None = None, subprotocols: list[str] | None = None):
        self.script = script
        self.reject = reject
        self.subprotocols = subprotocols
        self.requests: list[str] = []
        self.request_times: list[float] = []
        self.accepted = 0
        self._server: Server | None = None
        self.url = ""

    @property
    def queries(self) -> list[dict[str, list[str]]]:
        return [parse_qs(urlsplit(p).query) for p in self.requests]

    def cursors(self) -> list[int | None]:
        return [int(q["cursor"][0]) if "cursor" in q else None for q in self.queries]

    async def __aenter__(self) -> FakeJetstream:
        self._server = await serve(
            self._handler,
            "127.0.0.1",
            0,
            process_request=self._process,
            compression=None,
            subprotocols=[Subprotocol(s) for s in self.subprotocols] if self.subprotocols else None,
            max_size=None,
        )
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def _process(self, connection: ServerConnection, request: Request) -> Response | None:
        n = len(self.requests)
        self.requests.append(request.path)
        self.request_times.append(asyncio.get_running_loop().time())
        return self.reject(n, request) if self.reject else None

    async def _handler(self, ws: ServerConnection) -> None:
        n = self.accepted
        self.accepted += 1
        await self.script(n, ws)


def http_error(status: int, body: str) -> Response:
    from websockets.datastructures import Headers

    data = body.encode()
    headers = Headers([("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
    return Response(status, HTTPStatus(status).phrase, headers, data)


async def take(agen: AsyncIterator[Any], n: int, within: float = 10.0) -> list[Any]:
    out: list[Any] = []
    try:
        async with asyncio.timeout(within):
            async for item in agen:
                out.append(item)
                if len(out) >= n:
                    break
    finally:
        await agen.aclose()  # type: ignore[attr-defined]
    return out


async def hold(ws: ServerConnection) -> None:
    """Keep a connection open until the client leaves."""
    await ws.wait_closed()


def plain(items: list[Item]) -> list[dict[str, Any]]:
    return [msgspec.structs.asdict(i) for i in items]


# ----------------------------------------------------------------------------------------------------
# endpoints


def test_parse_endpoint() -> None:
    assert parse_endpoint("wss://jetstream1.us-east.bsky.network").url == (
        "wss://jetstream1.us-east.bsky.network/subscribe"
    )
    ep = parse_endpoint("jetstream2.us-west.bsky.network/subscribe?wantedDids=did:plc:x&cursor=5&compress=true")
    assert (ep.url, ep.version, ep.params) == (
        "wss://jetstream2.us-west.bsky.network/subscribe",
        1,
        (("wantedDids", "did:plc:x"),),
    )
    assert parse_endpoint("localhost:6008").url == "ws://localhost:6008/subscribe"
    v2 = parse_endpoint("https://js.example.com:8443" + V2_PATH)
    assert (v2.url, v2.version, v2.host, v2.source) == (
        "wss://js.example.com:8443" + V2_PATH,
        2,
        "js.example.com:8443",
        "jetstream-v2:js.example.com:8443",
    )
    assert parse_endpoint("ws://a/subscribe/").source == parse_endpoint("ws://b").source == "jetstream"
    with pytest.raises(ValueError):
        parse_endpoint("wss://host/xrpc/com.atproto.sync.subscribeRepos")
    with pytest.raises(ValueError):
        parse_endpoint("ftp://host")
    with pytest.raises(ValueError):
        JetstreamSource(["wss://a", "wss://b" + V2_PATH], start_cursor=None)
    with pytest.raises(ValueError):
        JetstreamSource([], start_cursor=None)


def test_first_url_rewinds_the_start_cursor() -> None:
    src = JetstreamSource(["wss://a"], start_cursor=1_783_175_888_000_000, rewind_on_switch_us=600_000_000)
    q = parse_qs(urlsplit(src.url_for_next_connection()).query)
    assert q["cursor"] == ["1783175288000000"] and q["wantedCollections"] == WANTED_QUERY
    assert q["compress"] == ["true"] and q["maxMessageSizeBytes"] == [str(4 * 1024 * 1024)]
    tip = JetstreamSource(["wss://a"], start_cursor=None, compress=False)
    q = parse_qs(urlsplit(tip.url_for_next_connection()).query)
    assert "cursor" not in q and "compress" not in q


# ----------------------------------------------------------------------------------------------------
# v1


async def test_plain_v1_filters_and_sends_the_right_query() -> None:
    lines = plyr_lines()

    async def script(n: int, ws: ServerConnection) -> None:
        for line in lines:
            await ws.send(line.decode())
        await hold(ws)

    metrics = Metrics()
    async with FakeJetstream(script) as server:
        src = JetstreamSource([server.url], start_cursor=None, compress=False, metrics=metrics, **FAST)
        want = ours(lines)
        got = await take(src.events(), len(want))
    assert len(want) == 8
    assert plain(got) == plain([parse_v1(line, "jetstream") for line in want])
    assert all(isinstance(e, Event) and e.source == "jetstream" for e in got)
    q = server.queries[0]
    assert urlsplit(server.requests[0]).path == "/subscribe"
    assert q["wantedCollections"] == WANTED_QUERY and "cursor" not in q and "compress" not in q
    assert "wantedCollections=fm.plyr.*" in server.requests[0]
    assert metrics.registry.get_sample_value("plyr_events_received_total", {"source": "jetstream"}) == len(lines)


async def test_compressed_v1_round_trip() -> None:
    lines = plyr_lines()
    c = compressor()

    async def script(n: int, ws: ServerConnection) -> None:
        for line in lines:
            await ws.send(c.compress(line))
        await hold(ws)

    async with FakeJetstream(script) as server:
        src = JetstreamSource([server.url], start_cursor=None, compress=True, **FAST)
        got = await take(src.events(), len(ours(lines)))
        raw_src = JetstreamSource([server.url], start_cursor=None, compress=True, **FAST)
        raw = await take(raw_src.raw(), len(lines))
    assert server.queries[0]["compress"] == ["true"]
    assert plain(got) == plain([parse_v1(line, "jetstream") for line in ours(lines)])
    # raw() hands out every decompressed message, foreign collections included: capture keeps what was sent.
    assert raw == list(lines)


async def test_resumes_on_the_same_host_from_the_last_cursor_after_a_drop() -> None:
    lines = ours(plyr_lines())

    async def script(n: int, ws: ServerConnection) -> None:
        if n == 0:
            for line in lines[:3]:
                await ws.send(line)
            await asyncio.sleep(0.05)
            ws.transport.abort()  # no close frame: a network failure
            return
        for line in lines[3:]:
            await ws.send(line)
        await hold(ws)

    metrics = Metrics()
    start = time_us(lines[0]) - 5_000_000
    async with FakeJetstream(script) as server:
        src = JetstreamSource(
            [server.url],
            start_cursor=start,
            compress=False,
            metrics=metrics,
            rewind_on_start_us=2_000_000,
            rewind_on_reconnect_us=250,
            **FAST,
        )
        got = await take(src.events(), len(lines))
    assert [e.cursor for e in got] == [time_us(line) for line in lines]
    assert server.cursors() == [start - 2_000_000, time_us(lines[2]) - 250]
    assert metrics.registry.get_sample_value("plyr_source_reconnects_total", {"source": "jetstream"}) == 1


async def test_failover_to_the_next_url_with_the_rewound_cursor() -> None:
    lines = ours(plyr_lines())

    async def first(n: int, ws: ServerConnection) -> None:
        for line in lines[:2]:
            await ws.send(line)
        await ws.close()

    def first_down(n: int, request: Request) -> Response | None:
        return http_error(503, "down") if n > 0 else None

    async def second(n: int, ws: ServerConnection) -> None:
        for line in lines[1:]:
            await ws.send(line)
        await hold(ws)

    async with FakeJetstream(first, reject=first_down) as a, FakeJetstream(second) as b:
        src = JetstreamSource(
            [a.url, b.url],
            start_cursor=None,
            compress=False,
            failures_before_switch=2,
            rewind_on_switch_us=600_000_000,
            rewind_on_reconnect_us=0,
            **FAST,
        )
        got = await take(src.events(), 2 + len(lines) - 1)
    # One good connection, then two refusals on the first host, then the second host.
    assert len(a.requests) == 3 and len(b.requests) == 1
    assert a.cursors() == [None, time_us(lines[1]), time_us(lines[1])]
    assert b.cursors() == [time_us(lines[1]) - 600_000_000]
    # v1 hosts share one source name: their cursors are comparable.
    assert {e.source for e in got} == {"jetstream"}
    assert [e.cursor for e in got] == [time_us(x) for x in lines[:2] + lines[1:]]


async def test_failover_before_any_event_does_not_jump_to_the_live_tip() -> None:
    async def never(n: int, ws: ServerConnection) -> None:
        raise AssertionError("rejected before upgrade")

    async def second(n: int, ws: ServerConnection) -> None:
        await ws.send(ours(plyr_lines())[0])
        await hold(ws)

    async with (
        FakeJetstream(never, reject=lambda n, r: http_error(502, "bad gateway")) as a,
        FakeJetstream(second) as b,
    ):
        src = JetstreamSource([a.url, b.url], start_cursor=None, compress=False, failures_before_switch=1, **FAST)
        before = datetime.now(UTC).timestamp() * 1e6
        await take(src.events(), 1)
    assert a.cursors() == [None]
    (cursor,) = b.cursors()
    assert cursor is not None and abs(cursor - (before - 600_000_000)) < 5_000_000


async def test_silent_socket_is_reconnected_after_the_idle_timeout() -> None:
    lines = ours(plyr_lines())

    async def script(n: int, ws: ServerConnection) -> None:
        if n == 0:
            await ws.send(lines[0])
            await hold(ws)  # then silence, with the TCP connection and pings still fine
            return
        await ws.send(lines[1])
        await hold(ws)

    async with FakeJetstream(script) as server:
        src = JetstreamSource(
            [server.url],
            start_cursor=None,
            compress=False,
            rewind_on_reconnect_us=0,
            **{**FAST, "idle_timeout": 0.3},
        )
        got = await take(src.events(), 2)
    assert [e.cursor for e in got] == [time_us(lines[0]), time_us(lines[1])]
    assert server.cursors() == [None, time_us(lines[0])]
    gap = server.request_times[1] - server.request_times[0]
    assert 0.3 <= gap < 2.0


async def test_garbage_frames_become_malformed_and_the_stream_goes_on() -> None:
    good = ours(plyr_lines())
    bad_rev = json.loads(good[1])
    bad_rev["commit"]["rev"] = "not-a-tid"
    no_record = json.loads(good[2])
    del no_record["commit"]["record"]
    frames: list[str | bytes] = [
        "this is not json",
        "[1, 2, 3]",
        b"\x28\xb5\x2f\xfd garbage after the zstd magic",
        json.dumps(bad_rev),
        json.dumps(no_record),
        good[3],
    ]

    async def script(n: int, ws: ServerConnection) -> None:
        for f in frames:
            await ws.send(f)
        await hold(ws)

    async with FakeJetstream(script) as server:
        src = JetstreamSource([server.url], start_cursor=None, compress=True, **FAST)
        got = await take(src.events(), len(frames))
    assert [type(g).__name__ for g in got] == ["Malformed"] * 5 + ["Event"]
    assert [g.reason for g in got[:5]] == [
        "invalid_json",
        "not_object",
        "bad_compression",
        "invalid_rev",
        "missing_record",
    ]
    assert got[3].cursor == time_us(good[1]) and got[3].did == bad_rev["did"]
    assert got[5].cursor == time_us(good[3])
    assert len(server.requests) == 1


async def test_oversize_messages_are_counted_rejects_not_crashes() -> None:
    good = ours(plyr_lines())
    limit = 64 * 1024
    big_json = json.dumps({"did": "did:plc:x", "time_us": 1, "kind": "commit", "pad": "x" * (2 * limit)})
    bomb = zstandard.ZstdCompressor().compress(b" " * (2 * limit))

    async def script(n: int, ws: ServerConnection) -> None:
        if n == 0:
            await ws.send(good[0])
            await ws.send(bomb)  # small on the wire, too big once decompressed: rejected, connection kept
            await ws.send(good[1])
            await ws.send(big_json)  # too big on the wire: the client must drop the connection
            await hold(ws)
            return
        await ws.send(good[2])
        await hold(ws)

    async with FakeJetstream(script) as server:
        src = JetstreamSource(
            [server.url],
            start_cursor=None,
            compress=False,
            max_message_bytes=limit,
            rewind_on_reconnect_us=0,
            **FAST,
        )
        got = await take(src.events(), 5)
    kinds = [(type(g).__name__, getattr(g, "reason", None)) for g in got]
    assert kinds == [
        ("Event", None),
        ("Malformed", "oversize"),
        ("Event", None),
        ("Malformed", "oversize"),
        ("Event", None),
    ]
    assert all(q["maxMessageSizeBytes"] == [str(limit)] for q in server.queries)
    assert server.cursors() == [None, time_us(good[1])]


async def test_backoff_grows_and_never_spins() -> None:
    async def never(n: int, ws: ServerConnection) -> None:
        raise AssertionError("rejected before upgrade")

    metrics = Metrics()
    async with FakeJetstream(never, reject=lambda n, r: http_error(503, "busy")) as server:
        src = JetstreamSource(
            [server.url],
            start_cursor=None,
            compress=False,
            metrics=metrics,
            **{**FAST, "min_backoff": 0.05, "max_backoff": 0.2},
        )
        agen = src.events()
        task = asyncio.create_task(take(agen, 1, within=1.2))
        with pytest.raises(TimeoutError):
            await task
    n = len(server.requests)
    gaps = [b - a for a, b in zip(server.request_times, server.request_times[1:], strict=False)]
    # Delays of 0.05, 0.1, 0.2, 0.2... each jittered down by at most half: about 6-12 attempts in 1.2 s.
    assert 4 <= n <= 15, n
    assert all(g >= 0.02 for g in gaps) and all(g >= 0.09 for g in gaps[2:]), gaps
    assert metrics.registry.get_sample_value("plyr_source_reconnects_total", {"source": "jetstream"}) >= n - 1


async def test_checkpoints_move_the_cursor_through_foreign_traffic() -> None:
    foreign = [line for line in golden() if parse_v1(line, "jetstream") is None]
    assert len(foreign) >= 6

    async def script(n: int, ws: ServerConnection) -> None:
        for line in foreign:
            await ws.send(line)
        await hold(ws)

    async with FakeJetstream(script) as server:
        src = JetstreamSource([server.url], start_cursor=None, compress=False, checkpoint_every=3, **FAST)
        got = await take(src.events(), 2)
    assert got == [
        Checkpoint(source="jetstream", cursor=time_us(foreign[2])),
        Checkpoint(source="jetstream", cursor=time_us(foreign[5])),
    ]


# ----------------------------------------------------------------------------------------------------
# v2


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us // 1_000_000, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{us % 1_000_000:06d}Z"


def v2_frame(line: bytes, seq: int) -> bytes:
    ev = json.loads(line)
    payload: dict[str, Any] = {
        "$type": V2_TYPE + ev["kind"],
        "seq": seq,
        "did": ev["did"],
        "time": _iso(ev["time_us"]),
    }
    if ev["kind"] == "commit":
        payload.update(ev["commit"])
    else:
        payload[ev["kind"]] = ev[ev["kind"]]
    return json.dumps({"$type": "message", "payload": payload}).encode()


async def test_v2_compressed_stream_reconnects_at_the_inclusive_seq_and_drops_the_repeat() -> None:
    lines = ours(plyr_lines())
    c = compressor("jetstream_v2_20260811.zdict")
    info = json.dumps({"$type": "message", "payload": {"$type": V2_TYPE + "info", "name": "OutdatedCursor"}})
    subprotocols: list[str | None] = []

    async def script(n: int, ws: ServerConnection) -> None:
        subprotocols.append(ws.subprotocol)
        if n == 0:
            await ws.send(c.compress(info.encode()))
            for i, line in enumerate(lines[:3]):
                await ws.send(c.compress(v2_frame(line, 10 + i)))
            await ws.send(c.compress(b'{"$type":"error","error":"ConsumerTooSlow","message":"too slow"}'))
            await ws.close()
            return
        # cursor is inclusive: the server repeats seq 12
        for i, line in enumerate(lines[2:], start=2):
            await ws.send(c.compress(v2_frame(line, 10 + i)))
        await hold(ws)

    async with FakeJetstream(script, subprotocols=["xrpc.v1.json"]) as server:
        src = JetstreamSource([server.url + V2_PATH], start_cursor=None, **FAST)
        got = await take(src.events(), len(lines))
    host = server.url.removeprefix("ws://")
    assert [e.cursor for e in got] == [10 + i for i in range(len(lines))]
    assert {e.source for e in got} == {f"jetstream-v2:{host}"}
    assert [e.time_us for e in got] == [time_us(line) for line in lines]
    q = server.queries[0]
    assert urlsplit(server.requests[0]).path == V2_PATH
    assert q["collections"] == WANTED_QUERY and q["kinds"] == ["commit", "identity", "account"]
    assert q["zstdDictionary"] == ["20260811"] and "wantedCollections" not in q and "compress" not in q
    assert server.cursors() == [None, 12]
    assert subprotocols == ["xrpc.v1.json", "xrpc.v1.json"]


async def test_v2_failover_resumes_by_timestamp_on_the_new_host() -> None:
    lines = ours(plyr_lines())

    async def first(n: int, ws: ServerConnection) -> None:
        for i, line in enumerate(lines[:2]):
            await ws.send(v2_frame(line, 500 + i))
        await ws.close()

    async def second(n: int, ws: ServerConnection) -> None:
        await ws.send(v2_frame(lines[1], 9000))
        await ws.send(v2_frame(lines[2], 9001))
        await hold(ws)

    async with (
        FakeJetstream(first, reject=lambda n, r: http_error(503, "down") if n else None) as a,
        FakeJetstream(second) as b,
    ):
        src = JetstreamSource(
            [a.url + V2_PATH, b.url + V2_PATH],
            start_cursor=None,
            compress=False,
            failures_before_switch=1,
            rewind_on_switch_us=600_000_000,
            **FAST,
        )
        got = await take(src.events(), 4)
    assert a.cursors() == [None, 501]
    assert b.cursors() == [time_us(lines[1]) - 600_000_000]
    assert [(e.source.split(":", 1)[1], e.cursor) for e in got] == [
        (a.url.removeprefix("ws://"), 500),
        (a.url.removeprefix("ws://"), 501),
        (b.url.removeprefix("ws://"), 9000),
        (b.url.removeprefix("ws://"), 9001),
    ]


async def test_v2_start_cursor_seq_and_dictionary_refusal() -> None:
    lines = ours(plyr_lines())

    def refuse_dictionary(n: int, request: Request) -> Response | None:
        if "zstdDictionary" in request.path:
            return http_error(400, '{"error":"UnknownZstdDictionary","message":"current dictionary id is 7"}')
        return None

    async def script(n: int, ws: ServerConnection) -> None:
        await ws.send(v2_frame(lines[0], 41))  # the inclusive repeat of the committed seq
        await ws.send(v2_frame(lines[1], 42))
        await hold(ws)

    async with FakeJetstream(script, reject=refuse_dictionary) as server:
        src = JetstreamSource([server.url + V2_PATH], start_cursor=41, **FAST)
        got = await take(src.events(), 1)
    assert [e.cursor for e in got] == [42]
    assert server.cursors() == [41, 41]
    assert "zstdDictionary" in server.queries[0] and "zstdDictionary" not in server.queries[1]


@pytest.mark.parametrize(
    ("error", "exc"), [("CursorTooOld", CursorTooOldError), ("InvalidRequest", RequestRejectedError)]
)
async def test_v2_terminal_refusals_are_raised(error: str, exc: type[Exception]) -> None:
    async def never(n: int, ws: ServerConnection) -> None:
        raise AssertionError("rejected before upgrade")

    body = json.dumps({"error": error, "message": "floor is seq 100"})
    async with FakeJetstream(never, reject=lambda n, r: http_error(400, body)) as server:
        src = JetstreamSource([server.url + V2_PATH], start_cursor=5, **FAST)
        with pytest.raises(exc, match="floor is seq 100"):
            await take(src.events(), 1)
    assert len(server.requests) == 1


async def test_consumer_stopping_closes_the_socket() -> None:
    closed = asyncio.Event()

    async def script(n: int, ws: ServerConnection) -> None:
        await ws.send(ours(plyr_lines())[0])
        await ws.wait_closed()
        closed.set()

    async with FakeJetstream(script) as server:
        src = JetstreamSource([server.url], start_cursor=None, compress=False, **FAST)
        await take(src.events(), 1)
        async with asyncio.timeout(2):
            await closed.wait()
        # The instance can be iterated again after the previous generator was closed.
        await take(src.events(), 1)


async def test_a_bug_in_frame_handling_costs_one_frame_not_the_stream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import indexer.jetstream.source as source_module

    lines = ours(plyr_lines())
    real = source_module.parse_v1

    def flaky(data: bytes, source: str, **kw: Any) -> Any:
        if data == lines[1]:
            raise KeyError("boom")
        return real(data, source, **kw)

    monkeypatch.setattr(source_module, "parse_v1", flaky)

    async def script(n: int, ws: ServerConnection) -> None:
        for line in lines[:3]:
            await ws.send(line)
        await hold(ws)

    async with FakeJetstream(script) as server:
        src = JetstreamSource([server.url], start_cursor=None, compress=False, **FAST)
        got = await take(src.events(), 3)
    assert [type(g).__name__ for g in got] == ["Event", "Malformed", "Event"]
    assert got[1].reason == "internal_error" and "boom" in got[1].detail
    assert len(server.requests) == 1


# ----------------------------------------------------------------------------------------------------
# connection state


class StateSink:
    def __init__(self) -> None:
        self.seen: list[SourceState] = []

    def update(self, state: SourceState) -> None:
        self.seen.append(state)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_host_that_refuses_connections_is_recorded_as_never_connected() -> None:
    port = closed_port()
    sink, metrics = StateSink(), Metrics()
    src = JetstreamSource([f"ws://127.0.0.1:{port}/subscribe"], start_cursor=None, status=sink, metrics=metrics, **FAST)
    with pytest.raises(TimeoutError):
        await take(src.events(), 1, within=0.5)
    (state,) = src.states
    assert state.host == f"127.0.0.1:{port}" and state.kind == "jetstream" and state.source == "jetstream"
    assert not state.connected and not src.ever_connected and state.active
    assert state.last_error == "connection refused"
    assert state.attempts >= 3
    assert [s.attempts for s in sink.seen if not s.active] == []
    assert [s.attempts for s in sink.seen][-3:] == [state.attempts - 2, state.attempts - 1, state.attempts]
    assert (
        metrics.registry.get_sample_value(
            "plyr_source_connect_attempts_total", {"source": "jetstream", "host": state.host, "outcome": "failed"}
        )
        == state.attempts
    )
    assert metrics.registry.get_sample_value("plyr_source_connected", {"source": "jetstream", "host": state.host}) == 0


async def test_failover_records_each_hosts_state() -> None:
    async def never(n: int, ws: ServerConnection) -> None:
        raise AssertionError("rejected before upgrade")

    async def serve_one(n: int, ws: ServerConnection) -> None:
        await ws.send(ours(plyr_lines())[0])
        await hold(ws)

    sink = StateSink()
    async with (
        FakeJetstream(never, reject=lambda n, r: http_error(503, "<b>down</b>")) as a,
        FakeJetstream(serve_one) as b,
    ):
        src = JetstreamSource([a.url, b.url], start_cursor=None, failures_before_switch=2, status=sink, **FAST)
        agen = src.events()
        await anext(agen)
        first, second = src.states
        # The first host refused twice and was left; the second is the one in use, connected.
        assert (first.active, first.connected, first.attempts, first.last_error) == (
            False,
            False,
            2,
            "HTTP 503: <b>down</b>",
        )
        assert (second.active, second.connected, second.attempts) == (True, True, 0)
        assert src.ever_connected and not first.ever_connected and second.ever_connected
        await agen.aclose()  # type: ignore[attr-defined]
    # Reading stopped: the open connection is recorded as closed, with why.
    assert (second.connected, second.last_error) == (False, "stopped")
    assert [(s.host, s.active, s.connected) for s in sink.seen] == [
        (first.host, True, False),
        (first.host, True, False),
        (first.host, True, False),
        (first.host, False, False),
        (second.host, True, False),
        (second.host, True, True),
        (second.host, True, False),
    ]
