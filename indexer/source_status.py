"""Live state of every ingest source the indexer follows: is each host connected, since when, what went wrong.

The committed cursor (`cursors`) says how far ingest got, not whether it is still going: while a Jetstream
host refuses connections the cursor simply stops moving. The indexer process is the only one that knows its
sockets, and the API replicas, `plyr-appview status` and the compose healthcheck run in other processes, so the
state goes through Postgres: one `source_status` row per (source, host).

Writing:
- A source keeps a `ConnectionStates` with one `SourceState` per configured host (so a command such as
  `capture` can ask whether it ever connected, and why not) and reports each transition: a failed attempt, a
  connection, a disconnection with its reason, the host it is using now. Transitions also set the metrics
  `plyr_source_connected{source,host}` and `plyr_source_connect_attempts{source,host,outcome}`.
- `SourceStatusRecorder` is where transitions go. `update()` only stores the latest state of that host and wakes
  the recorder's own task: it never waits on the database and never raises, so event delivery is never slowed
  by it. Transitions between two writes coalesce (the latest state wins); memory is one state per configured
  host. The task upserts every state with its own autocommit connection; a database failure is logged once per
  outage and retried, never raised.
- Between transitions the task touches the rows every `HEARTBEAT_SECONDS`, so a reader can tell a running
  indexer from one that died without saying so: a row untouched for `STALE_SECONDS` counts as not connected.
- `track()` names the hosts this indexer follows; at its first write, rows of other hosts (an earlier
  configuration) are deleted. There is one indexer per database, so its configuration is the truth.
- On a clean stop every host is written as not connected.

Reading (`read_ingest`, one snapshot of `cursors` and `source_status`): live sources, each with its hosts'
states and its committed cursor and lag; finished or running replays (`replay:` cursors) apart, with their
cursor and when they last committed, since a replay's "lag" is the age of its file, not a delay.
`IngestState.problem(max_lag)` is the health verdict `plyr-appview status --check` prints.

Error texts come from the network (a server's HTTP error body): they are cut to `ERROR_CHARS`, made one line
and storable (no NUL, valid UTF-8) before they are kept, and every reader escapes them for its medium.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import errno
import logging
import re
import socket
import ssl
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol

import msgspec
import psycopg

from indexer.metrics import Metrics

log = logging.getLogger(__name__)

SourceKind = Literal["jetstream", "jetstream-v2", "firehose", "labeler"]
REPLAY_PREFIX: Final = "replay:"
ERROR_CHARS: Final = 500
# How often the recorder touches its rows between transitions, and after how long without a touch a reader
# stops believing them (several missed heartbeats: a busy database must not make a live indexer look dead).
HEARTBEAT_SECONDS: Final = 15.0
STALE_SECONDS: Final = 60.0
# `plyr-appview status --check`: the newest committed event of the live sources may be this old.
DEFAULT_MAX_LAG_SECONDS: Final = 300.0

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def clean_error(text: str) -> str:
    """A network-supplied error as something to store and show on one line: valid UTF-8, no NUL (Postgres text
    refuses it), no line breaks or other control characters, at most ERROR_CHARS characters."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    text = _CONTROL.sub(" ", text).strip()
    if len(text) > ERROR_CHARS:
        text = text[: ERROR_CHARS - 1] + "…"
    return text or "unknown error"


def describe_connect_error(exc: BaseException, open_timeout: float | None = None) -> str:
    """Why a connection attempt failed, as an operator reads it: "connection refused", "no answer within 10 s",
    "host name not resolved (...)", rather than a Python exception."""
    if isinstance(exc, ConnectionRefusedError) or (isinstance(exc, OSError) and exc.errno == errno.ECONNREFUSED):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return f"host name not resolved ({exc.strerror or exc})"
    if isinstance(exc, TimeoutError):
        return "no answer" + (f" within {open_timeout:g} s" if open_timeout else "")
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({exc.reason or exc})"
    if isinstance(exc, OSError):
        text = str(exc)
        # asyncio reports every address it tried (IPv4 and IPv6 of `localhost`) in one message.
        refused = f"[Errno {errno.ECONNREFUSED}]"
        if text.startswith("Multiple exceptions") and text.count("[Errno") == text.count(refused):
            return "connection refused"
        return exc.strerror or text or type(exc).__name__
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -------------------------------------------------------------------------------------------------------
# the state of one host, in the indexer's memory


@dataclass(slots=True)
class SourceState:
    source: str  # the cursor's source name: "jetstream", "jetstream-v2:<host>", "firehose:<host>"
    host: str
    kind: SourceKind
    url: str
    # The host the source uses or tries now; the others of a failover list wait their turn.
    active: bool = False
    connected: bool = False
    # When the current state (connected, or not) began; for a host never connected, when following began.
    since: dt.datetime = field(default_factory=_utcnow)
    last_connected_at: dt.datetime | None = None
    last_error: str | None = None
    # Consecutive failed connection attempts since the last successful one.
    attempts: int = 0

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.host)

    @property
    def ever_connected(self) -> bool:
        return self.last_connected_at is not None


class StatusSink(Protocol):
    """Where a source's transitions go (`SourceStatusRecorder`). Must not block and must not raise."""

    def update(self, state: SourceState) -> None: ...


class ConnectionStates:
    """The states of the hosts one source follows, with the transitions the source reports. Every transition is
    passed on to the sink (a copy: the source goes on changing its own) and to the metrics."""

    def __init__(
        self, states: Sequence[SourceState], *, sink: StatusSink | None = None, metrics: Metrics | None = None
    ) -> None:
        self._states: dict[tuple[str, str], SourceState] = {}
        for state in states:
            # The same host configured twice is one host.
            self._states.setdefault(state.key, state)
        self.sink = sink
        self.metrics = metrics
        if metrics is not None:
            for state in self._states.values():
                metrics.source_connected.labels(source=state.source, host=state.host).set(0)

    @property
    def states(self) -> list[SourceState]:
        return list(self._states.values())

    @property
    def ever_connected(self) -> bool:
        return any(s.ever_connected for s in self._states.values())

    def get(self, source: str, host: str) -> SourceState:
        return self._states[(source, host)]

    def _report(self, state: SourceState) -> None:
        if self.metrics is not None:
            self.metrics.source_connected.labels(source=state.source, host=state.host).set(1 if state.connected else 0)
        if self.sink is not None:
            try:
                self.sink.update(dataclasses.replace(state))
            except Exception:
                # Reporting must never cost the stream.
                log.exception("source state not reported", extra={"source": state.source, "host": state.host})

    def activate(self, source: str, host: str) -> None:
        """`host` is the one the source tries now (on start, and on a failover switch)."""
        for state in self._states.values():
            active = state.key == (source, host)
            if state.active != active:
                state.active = active
                self._report(state)

    def connected(self, source: str, host: str) -> None:
        state = self.get(source, host)
        now = _utcnow()
        state.connected = True
        state.active = True
        state.since = now
        state.last_connected_at = now
        state.attempts = 0
        if self.metrics is not None:
            self.metrics.connect_attempts.labels(source=source, host=host, outcome="connected").inc()
        self._report(state)

    def failed(self, source: str, host: str, error: str) -> None:
        """A connection attempt that never opened."""
        state = self.get(source, host)
        if state.connected:  # not expected, but the state must stay true to what happened
            state.connected = False
            state.since = _utcnow()
        state.attempts += 1
        state.last_error = clean_error(error)
        if self.metrics is not None:
            self.metrics.connect_attempts.labels(source=source, host=host, outcome="failed").inc()
        self._report(state)

    def disconnected(self, source: str, host: str, error: str) -> None:
        """An open connection ended, for `error`."""
        state = self.get(source, host)
        state.connected = False
        state.since = _utcnow()
        state.last_error = clean_error(error)
        self._report(state)

    def stopped(self) -> None:
        """The consumer stopped reading (the command ends): connections it had are closed."""
        for state in self._states.values():
            if state.connected:
                self.disconnected(state.source, state.host, "stopped")


# -------------------------------------------------------------------------------------------------------
# the recorder: states to Postgres, off the event path

_UPSERT = """
INSERT INTO source_status AS s
  (source, host, kind, url, active, connected, since, last_connected_at, last_error, attempts, updated_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())
ON CONFLICT (source, host) DO UPDATE SET
  kind = excluded.kind, url = excluded.url, active = excluded.active, connected = excluded.connected,
  since = excluded.since, attempts = excluded.attempts, updated_at = now(),
  -- History survives a restart: when this host last worked, and what last went wrong.
  last_connected_at = coalesce(excluded.last_connected_at, s.last_connected_at),
  last_error = coalesce(excluded.last_error, s.last_error)
"""

_PRUNE = """
DELETE FROM source_status
WHERE (source, host) NOT IN (SELECT * FROM unnest(%s::text[], %s::text[]))
"""


class SourceStatusRecorder:
    """Writes the states sources report to `source_status` (see the module docstring). Use as an async context
    manager around the sources it records; `update()` and `track()` may be called before it started."""

    def __init__(
        self,
        conninfo: str,
        *,
        heartbeat: float = HEARTBEAT_SECONDS,
        retry: float = 5.0,
        timeout: float = 5.0,
    ) -> None:
        self.conninfo = conninfo
        self.heartbeat = heartbeat
        self.retry = retry
        self.timeout = timeout
        self._states: dict[tuple[str, str], SourceState] = {}
        self._prune = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._failing = False
        self.writes = 0

    async def __aenter__(self) -> SourceStatusRecorder:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="source-status")

    def track(self, states: Iterable[SourceState]) -> None:
        """The hosts this indexer follows: written at once; rows of any other host are deleted."""
        for state in states:
            self._states[state.key] = dataclasses.replace(state)
        self._prune = True
        self._wake.set()

    def update(self, state: SourceState) -> None:
        self._states[state.key] = dataclasses.replace(state)
        self._wake.set()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.heartbeat):
                    await self._wake.wait()
            self._wake.clear()
            while True:
                if await self.flush():
                    break
                # A fixed pause between retries while the database is away; transitions keep coalescing.
                await asyncio.sleep(self.retry)

    async def flush(self) -> bool:
        """Writes every state now; False (logged, not raised) when the database could not take it."""
        if not self._states:
            return True
        rows = [
            (
                s.source,
                s.host,
                s.kind,
                s.url,
                s.active,
                s.connected,
                s.since,
                s.last_connected_at,
                s.last_error,
                s.attempts,
            )
            for s in self._states.values()
        ]
        prune = self._prune
        try:
            async with asyncio.timeout(self.timeout):
                if self._conn is None or self._conn.closed:
                    self._conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
                async with self._conn.transaction():
                    if prune:
                        await self._conn.execute(_PRUNE, ([r[0] for r in rows], [r[1] for r in rows]))
                    async with self._conn.cursor() as cur:
                        await cur.executemany(_UPSERT, rows)
        except Exception as exc:
            await self._drop_connection()
            if not self._failing:
                # Once per outage: the batch writer already reports a lost database loudly.
                log.warning("source status not recorded; retrying", extra={"error": repr(exc)[:300]})
                self._failing = True
            return False
        if prune:
            self._prune = False
        if self._failing:
            log.info("source status recorded again")
            self._failing = False
        self.writes += 1
        return True

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def aclose(self) -> None:
        """Stops the task and writes every host as not connected (the indexer stops): a reader must not see a
        connection that no longer exists for the next STALE_SECONDS."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        now = _utcnow()
        for state in self._states.values():
            state.active = False
            if state.connected:
                state.connected = False
                state.since = now
                state.last_error = "stopped"
        try:
            await self.flush()
        finally:
            await self._drop_connection()


# -------------------------------------------------------------------------------------------------------
# reading: what every reader shows


class ConnectionEnd(Exception):
    """Why one connection of a source ended: `reason` is a short code for logs and metrics (`connect_failed`,
    `http_503`, `idle`, `closed`, ...), `describe()` the line operators see as the source's last error."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason
        self.detail = detail

    def describe(self) -> str:
        """ "connection refused", "HTTP 503: down", "idle: no message for 60 s"."""
        if self.reason == "connect_failed":
            return self.detail or "connection failed"
        if self.reason.startswith("http_"):
            return f"HTTP {self.reason[5:]}" + (f": {self.detail}" if self.detail else "")
        return f"{self.reason}: {self.detail}" if self.detail else self.reason


class HostState(msgspec.Struct, frozen=True):
    source: str
    host: str
    kind: str
    url: str
    active: bool
    connected: bool  # as last reported
    since: dt.datetime
    last_connected_at: dt.datetime | None
    last_error: str | None
    attempts: int
    updated_at: dt.datetime
    # Not touched for STALE_SECONDS: the indexer that wrote it is gone or stuck, so nothing is known.
    stale: bool

    @property
    def up(self) -> bool:
        return self.connected and not self.stale

    def report(self) -> dict[str, Any]:
        """The host's state as operators read it (`status --json`; `_health` renames the keys to camelCase)."""
        return {
            "host": self.host,
            "kind": self.kind,
            "url": self.url,
            "active": self.active,
            "connected": self.up,
            "stale": self.stale,
            "since": iso_time(self.since),
            "last_connected_at": iso_time(self.last_connected_at),
            "last_error": self.last_error,
            "attempts": self.attempts,
            "reported_at": iso_time(self.updated_at),
        }


def iso_time(t: dt.datetime | None) -> str | None:
    return None if t is None else t.isoformat()


class LiveSource(msgspec.Struct, frozen=True):
    source: str
    # Empty: no connection state is reported for it (a cursor left by a source no longer followed).
    hosts: list[HostState]
    cursor: int | None
    event_time: dt.datetime | None
    committed_at: dt.datetime | None
    lag_seconds: float | None
    last_commit_ago_seconds: float | None

    @property
    def connected(self) -> bool | None:
        """Any host connected; None when no state is reported."""
        return any(h.up for h in self.hosts) if self.hosts else None

    @property
    def current(self) -> HostState | None:
        """The host that speaks for the source: the connected one, else the one being tried, else the latest."""
        connected = [h for h in self.hosts if h.up]
        if connected:
            return connected[0]
        trying = [h for h in self.hosts if h.active and not h.stale]
        if trying:
            return trying[0]
        return max(self.hosts, key=lambda h: h.updated_at, default=None)


class Replay(msgspec.Struct, frozen=True):
    source: str
    cursor: int
    event_time: dt.datetime | None
    committed_at: dt.datetime


class IngestState(msgspec.Struct, frozen=True):
    now: dt.datetime
    sources: list[LiveSource]
    replays: list[Replay]

    @property
    def followed(self) -> list[LiveSource]:
        """The live sources the indexer reports on."""
        return [s for s in self.sources if s.hosts]

    def problem(self, max_lag: float = DEFAULT_MAX_LAG_SECONDS) -> str | None:
        """None when ingest is up: at least one followed source connected, and the newest event committed by a
        followed source at most `max_lag` seconds old. Otherwise one line saying why not. Labelers (`labeler:`
        sources) count neither way: labels are not ingest."""
        followed = [s for s in self.followed if not s.source.startswith("labeler:")]
        if not followed:
            return "no live source has reported its state (is the indexer running?)"
        if not any(s.connected for s in followed):
            hosts = [h for s in followed for h in s.hosts if h.active or h.attempts or h.last_error or h.stale]
            details = "; ".join(_down(h) for h in (hosts or [h for s in followed for h in s.hosts]))
            return f"no live source connected ({details})"
        times = [(s.event_time, s.source) for s in followed if s.event_time is not None]
        if not times:
            names = ", ".join(s.source for s in followed)
            return f"connected, but no event committed yet by {names}"
        newest, source = max(times)
        lag = (self.now - newest).total_seconds()
        if lag > max_lag:
            return (
                f"newest committed event is {lag:.0f} s old, over the {max_lag:g} s allowed"
                f" ({source}, event time {newest.isoformat(timespec='seconds')})"
            )
        return None


def _down(h: HostState) -> str:
    if h.stale:
        return f"{h.host}: the indexer has not reported since {_clock(h.updated_at)}"
    reason = _one_line(h.last_error) if h.last_error else "not connected"
    return f"{h.host}: {reason} since {_clock(h.since)}"


def _clock(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%H:%M:%S UTC")


def _one_line(text: str | None) -> str:
    return "" if text is None else _CONTROL.sub(" ", text)[:ERROR_CHARS]


_CURSORS = "SELECT source, cursor, event_time, updated_at FROM cursors ORDER BY source"
_STATES = f"""
SELECT source, host, kind, url, active, connected, since, last_connected_at, left(last_error, {ERROR_CHARS}),
       attempts, updated_at
FROM source_status ORDER BY source, host
"""


async def read_ingest(conn: psycopg.AsyncConnection[Any]) -> IngestState:
    """Live sources and replays, from `cursors` and `source_status` (a database not migrated to 0006 has no
    states). Run it inside the caller's snapshot transaction for numbers that agree with the rest of a page."""
    cur = await conn.execute("SELECT now(), to_regclass('source_status') IS NOT NULL")
    row = await cur.fetchone()
    assert row is not None
    now: dt.datetime = row[0]
    has_states = bool(row[1])
    cur = await conn.execute(_CURSORS)
    cursors = list(await cur.fetchall())
    states: list[tuple[Any, ...]] = []
    if has_states:
        cur = await conn.execute(_STATES)
        states = list(await cur.fetchall())

    hosts: dict[str, list[HostState]] = {}
    for source, host, kind, url, active, connected, since, last_at, error, attempts, updated_at in states:
        hosts.setdefault(str(source), []).append(
            HostState(
                source=str(source),
                host=str(host),
                kind=str(kind),
                url=str(url),
                active=bool(active),
                connected=bool(connected),
                since=since,
                last_connected_at=last_at,
                last_error=None if error is None else str(error),
                attempts=int(attempts),
                updated_at=updated_at,
                stale=(now - updated_at).total_seconds() > STALE_SECONDS,
            )
        )
    committed: dict[str, tuple[int, dt.datetime | None, dt.datetime]] = {}
    replays: list[Replay] = []
    for source, position, event_time, updated_at in cursors:
        name = str(source)
        if name.startswith(REPLAY_PREFIX):
            replays.append(Replay(name, int(position), event_time, updated_at))
        else:
            committed[name] = (int(position), event_time, updated_at)
    live: list[LiveSource] = []
    for name in sorted(set(hosts) | set(committed)):
        position, event_time, committed_at = committed.get(name, (None, None, None))
        live.append(
            LiveSource(
                source=name,
                hosts=hosts.get(name, []),
                cursor=position,
                event_time=event_time,
                committed_at=committed_at,
                lag_seconds=None if event_time is None else max(0.0, (now - event_time).total_seconds()),
                last_commit_ago_seconds=(
                    None if committed_at is None else max(0.0, (now - committed_at).total_seconds())
                ),
            )
        )
    replays.sort(key=lambda r: r.committed_at, reverse=True)
    return IngestState(now=now, sources=live, replays=replays)
