"""Live source state: transitions kept on the source and passed to a sink and the metrics; the recorder writing
them to `source_status` off the event path (coalesced, pruned, heartbeat, survives a lost database, writes
"not connected" on stop); and what every reader derives from it: live sources with their hosts, replays
apart, stale rows, and the health verdict of `status --check`."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import time

import msgspec
import psycopg

from bench.synth import commit, make_did, make_tid, track_record
from indexer.atproto.lexicon import Validator
from indexer.metrics import Metrics
from indexer.source_status import (
    ERROR_CHARS,
    STALE_SECONDS,
    ConnectionStates,
    IngestState,
    SourceState,
    SourceStatusRecorder,
    clean_error,
    describe_connect_error,
    read_ingest,
)
from tests.helpers import TRACK, ingest, rows, rows_exec

HOSTILE = '<script>alert("x")</script>\r\nsecond line\x00'


class Sink:
    def __init__(self) -> None:
        self.seen: list[SourceState] = []

    def update(self, state: SourceState) -> None:
        self.seen.append(state)


def _states() -> list[SourceState]:
    return [
        SourceState("jetstream", "js1.example", "jetstream", "wss://js1.example/subscribe"),
        SourceState("jetstream", "js2.example", "jetstream", "wss://js2.example/subscribe"),
    ]


def test_clean_error_is_one_storable_bounded_line() -> None:
    cleaned = clean_error(HOSTILE + "x" * 2000)
    assert "\n" not in cleaned and "\r" not in cleaned and "\x00" not in cleaned
    assert cleaned.startswith('<script>alert("x")</script> second line')
    assert len(cleaned) == ERROR_CHARS
    assert clean_error("\udcff broken surrogate").encode("utf-8")  # storable as UTF-8
    assert clean_error("") == "unknown error"


def test_connect_errors_read_as_operators_expect() -> None:
    assert describe_connect_error(ConnectionRefusedError(errno.ECONNREFUSED, "Connect call failed")) == (
        "connection refused"
    )
    both = OSError("Multiple exceptions: [Errno 111] Connect call failed ('::1', 1), [Errno 111] Connect call failed")
    assert describe_connect_error(both) == "connection refused"
    assert describe_connect_error(TimeoutError(), 10.0) == "no answer within 10 s"
    assert describe_connect_error(socket.gaierror(-2, "Name or service not known")).startswith(
        "host name not resolved (Name or service not known"
    )
    assert describe_connect_error(OSError(errno.EHOSTUNREACH, "No route to host")) == "No route to host"


def test_transitions_are_kept_reported_and_measured() -> None:
    sink, metrics = Sink(), Metrics()
    states = ConnectionStates(_states(), sink=sink, metrics=metrics)
    connected = metrics.source_connected.labels(source="jetstream", host="js1.example")
    states.activate("jetstream", "js1.example")
    states.failed("jetstream", "js1.example", "connection refused")
    states.failed("jetstream", "js1.example", HOSTILE)
    one = states.get("jetstream", "js1.example")
    assert (one.connected, one.attempts, one.ever_connected) == (False, 2, False)
    assert one.last_error == clean_error(HOSTILE)
    assert not states.ever_connected
    # A failover: the first host stays not connected, the second is tried and connects.
    states.activate("jetstream", "js2.example")
    states.connected("jetstream", "js2.example")
    two = states.get("jetstream", "js2.example")
    assert (one.active, two.active, two.connected, two.attempts) == (False, True, True, 0)
    assert states.ever_connected and two.last_connected_at is not None
    assert metrics.source_connected.labels(source="jetstream", host="js2.example")._value.get() == 1
    assert connected._value.get() == 0
    states.disconnected("jetstream", "js2.example", "closed: no close frame received or sent")
    assert (two.connected, two.last_error) == (False, "closed: no close frame received or sent")
    assert two.since >= two.last_connected_at  # type: ignore[operator]
    assert metrics.source_connected.labels(source="jetstream", host="js2.example")._value.get() == 0
    attempts = metrics.registry.get_sample_value
    assert (
        attempts(
            "plyr_source_connect_attempts_total", {"source": "jetstream", "host": "js1.example", "outcome": "failed"}
        )
        == 2
    )
    assert (
        attempts(
            "plyr_source_connect_attempts_total", {"source": "jetstream", "host": "js2.example", "outcome": "connected"}
        )
        == 1
    )
    # The sink gets copies: what it holds does not change behind its back.
    assert [(s.host, s.connected, s.attempts) for s in sink.seen] == [
        ("js1.example", False, 0),
        ("js1.example", False, 1),
        ("js1.example", False, 2),
        ("js1.example", False, 2),
        ("js2.example", False, 0),
        ("js2.example", True, 0),
        ("js2.example", False, 0),
    ]
    assert [s.active for s in sink.seen[3:5]] == [False, True]


def test_a_failing_sink_never_costs_the_stream() -> None:
    class Broken:
        def update(self, state: SourceState) -> None:
            raise RuntimeError("boom")

    states = ConnectionStates(_states(), sink=Broken())
    states.connected("jetstream", "js1.example")
    assert states.get("jetstream", "js1.example").connected


async def test_recorder_writes_reads_prunes_and_stops(db_url: str) -> None:
    await rows_exec(
        db_url,
        "INSERT INTO source_status (source, host, kind, url, connected) VALUES"
        " ('firehose:old.example', 'old.example', 'firehose', 'wss://old.example', true)",
    )
    states = ConnectionStates(_states())
    async with SourceStatusRecorder(db_url, heartbeat=0.2) as recorder:
        states.sink = recorder
        recorder.track(states.states)
        states.activate("jetstream", "js1.example")
        for _ in range(5):
            states.failed("jetstream", "js1.example", "connection refused")
        states.failed("jetstream", "js1.example", HOSTILE)
        await _until(lambda: _attempts(db_url, "js1.example"), 6)
        # A configuration this indexer no longer follows is gone; both configured hosts are there.
        found = await rows(
            db_url, "SELECT host, active, connected, attempts, last_error FROM source_status ORDER BY host"
        )
        assert found == [
            ("js1.example", True, False, 6, clean_error(HOSTILE)),
            ("js2.example", False, False, 0, None),
        ]
        # Heartbeat: rows are touched without transitions.
        (before,) = (await rows(db_url, "SELECT max(updated_at) FROM source_status"))[0]
        await asyncio.sleep(0.6)
        (after,) = (await rows(db_url, "SELECT max(updated_at) FROM source_status"))[0]
        assert after > before
        states.connected("jetstream", "js1.example")
        await _until(lambda: _connected(db_url, "js1.example"), True)
    # A clean stop: nothing stays "connected"; the reason is kept for the host that was.
    assert await rows(db_url, "SELECT host, active, connected, last_error FROM source_status ORDER BY host") == [
        ("js1.example", False, False, "stopped"),
        ("js2.example", False, False, None),
    ]


async def test_recorder_survives_a_database_that_is_not_there() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://nobody@127.0.0.1:{port}/none?connect_timeout=1"
    recorder = SourceStatusRecorder(url, retry=0.05, timeout=1.0)
    states = ConnectionStates(_states(), sink=recorder)
    recorder.track(states.states)
    async with recorder:
        started = time.monotonic()
        for _ in range(1000):
            states.failed("jetstream", "js1.example", "connection refused")  # never waits on the database
        assert time.monotonic() - started < 0.5
        assert not await recorder.flush()
        await asyncio.sleep(0.2)
    assert recorder.writes == 0


async def test_readers_list_live_sources_with_states_and_replays_apart(db_url: str, validator: Validator) -> None:
    now_us = int(time.time() * 1_000_000)

    def track(n: int, source: str, cursor: int, time_us: int) -> object:
        ev = commit(make_did(n), TRACK, make_tid(1000 + n), make_tid(1000 + n), track_record(f"t{n}"))
        return msgspec.structs.replace(ev, source=source, cursor=cursor, time_us=time_us)

    await ingest(
        db_url,
        validator,
        [
            track(1, "jetstream", now_us - 2_000_000, now_us - 2_000_000),
            track(2, "replay:old.jsonl:0123456789abcdef", 7, 1_750_000_000_000_000),  # a year-old capture
        ],
    )
    states = ConnectionStates(_states())
    recorder = SourceStatusRecorder(db_url)
    recorder.track(states.states)
    states.sink = recorder
    states.activate("jetstream", "js1.example")
    states.failed("jetstream", "js1.example", "connection refused")
    assert await recorder.flush()
    state = await _read(db_url)
    assert [s.source for s in state.sources] == ["jetstream"]
    live = state.sources[0]
    assert live.cursor == now_us - 2_000_000 and live.lag_seconds is not None and 1.0 < live.lag_seconds < 60
    assert live.connected is False
    assert [(h.host, h.active, h.last_error, h.attempts) for h in live.hosts] == [
        ("js1.example", True, "connection refused", 1),
        ("js2.example", False, None, 0),
    ]
    assert [(r.source, r.cursor) for r in state.replays] == [("replay:old.jsonl:0123456789abcdef", 7)]
    problem = state.problem()
    assert problem is not None
    assert problem.startswith("no live source connected (js1.example: connection refused since ")

    states.connected("jetstream", "js1.example")
    assert await recorder.flush()
    state = await _read(db_url)
    assert state.sources[0].connected is True and state.sources[0].current is not None
    assert state.sources[0].current.host == "js1.example"
    assert state.problem() is None
    # The newest committed event too old for the threshold.
    problem = (await _read(db_url)).problem(max_lag=1.0)
    assert problem is not None
    assert problem.startswith("newest committed event is ") and "over the 1 s allowed" in problem

    # An indexer that stopped touching its rows is not believed.
    await rows_exec(db_url, f"UPDATE source_status SET updated_at = now() - interval '{STALE_SECONDS + 5} seconds'")
    state = await _read(db_url)
    assert all(h.stale and not h.up for h in state.sources[0].hosts)
    problem = state.problem()
    assert problem is not None and "the indexer has not reported since" in problem
    await recorder.aclose()


async def test_verdict_without_any_reported_state(db_url: str) -> None:
    state = await _read(db_url)
    assert state.sources == [] and state.replays == []
    assert state.problem() == "no live source has reported its state (is the indexer running?)"


async def _read(db_url: str) -> IngestState:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        return await read_ingest(conn)


async def _attempts(db_url: str, host: str) -> object:
    found = await rows(db_url, "SELECT attempts FROM source_status WHERE host = %s", host)
    return found[0][0] if found else None


async def _connected(db_url: str, host: str) -> object:
    found = await rows(db_url, "SELECT connected FROM source_status WHERE host = %s", host)
    return found[0][0] if found else None


async def _until(probe: object, expected: object, within: float = 5.0) -> None:
    assert callable(probe)
    deadline = time.monotonic() + within
    got = None
    while time.monotonic() < deadline:
        got = await probe()
        if got == expected:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"expected {expected!r}, last saw {got!r}")


async def test_firehose_source_records_its_host() -> None:
    from indexer.firehose.source import FirehoseSource

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink = Sink()
    source = FirehoseSource(f"firehose:ws://127.0.0.1:{port}", status=sink, min_backoff=0.01, max_backoff=0.02)
    agen = source.events()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(0.3):
            await anext(agen)  # type: ignore[call-overload]
    await agen.aclose()  # type: ignore[attr-defined]
    (state,) = source.connection_states.states
    assert (state.source, state.host, state.kind) == (f"firehose:127.0.0.1:{port}", f"127.0.0.1:{port}", "firehose")
    assert (state.active, state.connected, state.last_error) == (True, False, "connection refused")
    assert state.attempts >= 3 and not source.ever_connected
    assert sink.seen[-1].attempts == state.attempts
