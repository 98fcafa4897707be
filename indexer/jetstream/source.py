"""Jetstream websocket source: connects, filters to the collections we want (`fm.plyr.*` and teal.fm plays and
statuses: `indexer.fold.collections.WANTED`), survives anything the network does, and
yields normalized items.

Cursor rules (see NOTES.md, failure 3: a host switch that rewound only 10 s lost events for good):

- v1 (`/subscribe`): the cursor is `time_us`, local to one instance but close across instances, so every v1
  host reports as the single source "jetstream". Reconnecting to the same host resumes at the last yielded
  cursor minus `rewind_on_reconnect_us`, because `time_us` is not delivered in order (the reference corpus
  shows an event arriving 33 ms "late"). A switch to another host, and the very first connection (whose
  start cursor may have come from any host), rewind by `rewind_on_switch_us` instead. Duplicates are
  expected; the event log drops them.
- v2 (`/xrpc/network.bsky.jetstream.subscribeEvents`): the cursor is the instance's own `seq`, inclusive on
  resume, so a reconnect to the same host resumes at the last yielded seq and drops any re-delivered
  `seq <= last`. Seqs of two instances are unrelated, so each v2 host is its own source
  "jetstream-v2:<host>". On a switch the seq is useless to the new host; the source resumes with a
  *timestamp* cursor instead (the v2 server reads cursor values >= 1e15 as unix microseconds and translates
  them to its first seq at or after that instant), taken from the `time` of the last yielded event minus
  `rewind_on_switch_us`. From then on events carry the new host's source name and seqs; the writer commits
  them as a separate source, and the old host's cursor simply stops moving.
- Before anything was yielded, a switch (or a start without `start_cursor`) falls back to the wall clock of
  the first connection attempt, so a failover right after start never jumps to the live tip.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.typing import Subprotocol

from indexer.atproto.hosts import is_loopback_host
from indexer.events import Checkpoint, Event, Item, Malformed, Wanted
from indexer.fold.collections import WANTED
from indexer.jetstream.parse import (
    DEFAULT_MAX_MESSAGE_BYTES,
    ZSTD_MAGIC,
    DecompressError,
    Decompressor,
    StreamNotice,
    frame_cursor_v1,
    frame_position_v2,
    malformed_from_decompress_error,
    parse_v1,
    parse_v2,
)
from indexer.jetstream.zstd_dict import V1_DICT_ID, V2_DICT_ID
from indexer.metrics import Metrics
from indexer.source_status import ConnectionEnd, ConnectionStates, SourceState, StatusSink, describe_connect_error

logger = logging.getLogger(__name__)

V1_PATH: Final = "/subscribe"
V2_PATH: Final = "/xrpc/network.bsky.jetstream.subscribeEvents"
V2_SUBPROTOCOL: Final = Subprotocol("xrpc.v1.json")
V1_SOURCE: Final = "jetstream"
# Jetstream's limit on `wantedCollections` (and v2 `collections`) per connection.
MAX_WANTED_COLLECTIONS: Final = 100
# The v2 server reads cursors at or above this as unix microseconds rather than seqs.
V2_TIMESTAMP_CURSOR_MIN: Final = 10**15
# Query parameters this source sets itself; copies in a configured URL are dropped.
_MANAGED_PARAMS: Final = frozenset(
    {
        "cursor",
        "compress",
        "wantedCollections",
        "collections",
        "kinds",
        "zstdDictionary",
        "maxMessageSizeBytes",
    }
)
# The kinds `Event` can express. `#sync` is left out on purpose (see parse_v2) but still handled if sent.
_V2_KINDS: Final = ("commit", "identity", "account")
_CLOSE_MESSAGE_TOO_BIG: Final = 1009


class JetstreamError(Exception):
    """A condition reconnecting cannot fix; raised out of `events()` / `raw()`."""


class CursorTooOldError(JetstreamError):
    """A v2 host refused the seq cursor as older than its retention floor: events between the cursor and the
    floor are gone from the live stream and need an archive backfill (`planSnapshot`)."""


class RequestRejectedError(JetstreamError):
    """A v2 host refused the request itself (`InvalidRequest`): a configuration error."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One configured Jetstream URL. `url` is scheme://netloc/path with no query; `params` are query
    parameters from the configured URL that this source does not manage (e.g. `wantedDids`)."""

    url: str
    version: Literal[1, 2]
    host: str
    params: tuple[tuple[str, str], ...] = ()

    @property
    def source(self) -> str:
        return V1_SOURCE if self.version == 1 else f"jetstream-v2:{self.host}"


def parse_endpoint(url: str) -> Endpoint:
    """`wss://host` and `wss://host/subscribe` are v1, `wss://host/xrpc/network.bsky.jetstream.subscribeEvents`
    is v2. A missing scheme means wss (ws for loopback); http(s) are accepted as ws(s)."""
    text = url.strip()
    if "://" not in text:
        host_part = text.split("/", 1)[0]
        hostname = urlsplit("//" + host_part).hostname or ""
        text = ("ws://" if is_loopback_host(hostname) else "wss://") + text
    parts = urlsplit(text)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"not a Jetstream websocket URL: {url!r}")
    path = parts.path.rstrip("/")
    version: Literal[1, 2]
    if path in ("", V1_PATH):
        version, path = 1, V1_PATH
    elif path == V2_PATH:
        version = 2
    else:
        raise ValueError(f"unknown Jetstream endpoint path {parts.path!r} in {url!r}")
    host = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    if ":" in parts.hostname:
        host = f"[{parts.hostname}]" + ("" if parts.port is None else f":{parts.port}")
    params = tuple((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in _MANAGED_PARAMS)
    return Endpoint(url=urlunsplit((scheme, parts.netloc, path, "", "")), version=version, host=host, params=params)


class _XrpcError(msgspec.Struct):
    error: str = ""
    message: str = ""


class JetstreamSource:
    """Websocket source for one or more Jetstream URLs (the first is preferred; the others are failover).

    `events()` yields `Event`, `Malformed` and occasional `Checkpoint` items; `raw()` yields each received
    message as decompressed JSON bytes (for capture files). Both reconnect forever with jittered exponential
    backoff (`min_backoff` doubling up to `max_backoff`, reset by a connection that delivered a valid frame)
    and move to the next URL after `failures_before_switch` consecutive connections that delivered nothing
    valid. Only `JetstreamError` escapes.

    `start_cursor` is the committed cursor to resume from: `time_us` for v1; for v2 a seq of the first URL's
    host, or (when >= 1e15) unix microseconds. `start_time_us` optionally gives the wall time of that position
    for v2, used if the source must switch hosts before it has yielded anything.

    Backpressure: nothing is read from the socket while the consumer is busy; websockets buffers at most
    `max_queue` frames, then TCP flow control pushes back on the server. A message over `max_message_bytes`
    (wire size, and again after decompression) becomes a `Malformed` with reason "oversize"; the servers are
    asked (`maxMessageSizeBytes`) to skip such events, so a reconnect does not meet the same one again.

    A socket that delivers nothing for `idle_timeout` seconds is treated as dead. With collection filtering
    the stream still carries every account and identity event of the network, so a minute of silence is
    not normal. Websocket ping/pong (`ping_interval`, `ping_timeout`) catches dead TCP sooner.

    Every `checkpoint_every` consecutive frames that were not for us, a `Checkpoint` at the last one is
    yielded so the committed cursor can move past long stretches of foreign traffic (a host that ignores the
    collection filter).

    Connection state: `states` holds one `SourceState` per configured host (connected or not, since when, the
    last error, consecutive failed attempts, whether it ever connected); every transition also goes to `status`
    (the indexer's `SourceStatusRecorder`, which must not block) and to the metrics.

    Not reentrant: iterate one generator per instance at a time.
    """

    def __init__(
        self,
        urls: Sequence[str],
        *,
        start_cursor: int | None,
        start_time_us: int | None = None,
        compress: bool = True,
        metrics: Metrics | None = None,
        wanted: Wanted = WANTED,
        rewind_on_switch_us: int = 600_000_000,
        rewind_on_start_us: int | None = None,
        rewind_on_reconnect_us: int = 1_000_000,
        min_backoff: float = 0.5,
        max_backoff: float = 30.0,
        failures_before_switch: int = 3,
        idle_timeout: float = 60.0,
        open_timeout: float = 10.0,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        close_timeout: float = 2.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_queue: int = 16,
        checkpoint_every: int = 1000,
        user_agent: str = "plyr-appview",
        status: StatusSink | None = None,
    ) -> None:
        if not urls:
            raise ValueError("JetstreamSource needs at least one URL")
        self.endpoints = [parse_endpoint(u) for u in urls]
        if len({e.version for e in self.endpoints}) > 1:
            # Cursors of the two protocols are not comparable, so failover between them cannot resume.
            raise ValueError("all Jetstream URLs must use the same protocol version (v1 or v2)")
        self.version: Literal[1, 2] = self.endpoints[0].version
        self.connection_states = ConnectionStates(
            [
                SourceState(ep.source, ep.host, "jetstream" if ep.version == 1 else "jetstream-v2", ep.url)
                for ep in self.endpoints
            ],
            sink=status,
            metrics=metrics,
        )
        self.start_cursor = start_cursor
        self.start_time_us = start_time_us
        self.compress = compress
        self.metrics = metrics
        if not 0 < len(wanted.patterns) <= MAX_WANTED_COLLECTIONS:
            raise ValueError(f"Jetstream takes 1 to {MAX_WANTED_COLLECTIONS} collections, not {len(wanted.patterns)}")
        self.wanted = wanted
        self.rewind_on_switch_us = rewind_on_switch_us
        self.rewind_on_start_us = rewind_on_switch_us if rewind_on_start_us is None else rewind_on_start_us
        self.rewind_on_reconnect_us = rewind_on_reconnect_us
        self.min_backoff = min_backoff
        self.max_backoff = max(max_backoff, min_backoff)
        self.failures_before_switch = max(1, failures_before_switch)
        self.idle_timeout = idle_timeout
        self.open_timeout = open_timeout
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        self.max_message_bytes = max_message_bytes
        self.max_queue = max_queue
        self.checkpoint_every = checkpoint_every
        self.user_agent = user_agent

        self._index = 0
        self._running = False
        self._v2_compress = compress
        self._decompressor: Decompressor | None = None
        self._started_at_us: int | None = None
        # Resume state. v1: `_base` is the last yielded time_us and `_rewind` what to subtract on the next
        # connection. v2: `_last_seq` is the last yielded seq on the current host (None after a switch) and
        # `_last_time_us` the wall time of the last yielded event, usable on any host.
        self._base: int | None = start_cursor
        self._rewind = self.rewind_on_start_us
        self._last_seq: int | None = None
        self._last_time_us: int | None = None
        if self.version == 2 and start_cursor is not None:
            if start_cursor >= V2_TIMESTAMP_CURSOR_MIN:
                self._last_time_us = start_cursor
            else:
                self._last_seq = start_cursor
                self._last_time_us = start_time_us

    # -- public ------------------------------------------------------------------------------------------

    @property
    def endpoint(self) -> Endpoint:
        return self.endpoints[self._index]

    @property
    def source(self) -> str:
        """Source name of the current endpoint, as put in `Event.source`."""
        return self.endpoint.source

    @property
    def states(self) -> list[SourceState]:
        """The connection state of each configured host."""
        return self.connection_states.states

    @property
    def ever_connected(self) -> bool:
        return self.connection_states.ever_connected

    def __aiter__(self) -> AsyncGenerator[Item, None]:
        return self.events()

    def events(self) -> AsyncGenerator[Item, None]:
        return self._stream(raw=False)  # type: ignore[return-value]  # raw=False yields only items

    def raw(self) -> AsyncGenerator[bytes, None]:
        return self._stream(raw=True)  # type: ignore[return-value]  # raw=True yields only bytes

    def url_for_next_connection(self) -> str:
        """The URL, query included, that the next connection attempt will use."""
        return self._url(self._wire_cursor())

    # -- cursor / URL ------------------------------------------------------------------------------------

    def _now_us(self) -> int:
        return time.time_ns() // 1000

    def _wire_cursor(self) -> int | None:
        if self.version == 1:
            base = self._base if self._base is not None else self._started_at_us
            if base is None:
                return None
            return max(1, base - self._rewind)
        if self._last_seq is not None:
            return self._last_seq
        t = self._last_time_us if self._last_time_us is not None else self._started_at_us
        return None if t is None else max(V2_TIMESTAMP_CURSOR_MIN, t - self._rewind)

    def _url(self, cursor: int | None) -> str:
        ep = self.endpoint
        q: list[tuple[str, str]] = list(ep.params)
        # One parameter per NSID or namespace (`x.y.*`), repeated, on both protocols.
        if ep.version == 1:
            q.extend(("wantedCollections", w) for w in self.wanted.patterns)
            if self.compress:
                q.append(("compress", "true"))
        else:
            q.extend(("kinds", k) for k in _V2_KINDS)
            q.extend(("collections", w) for w in self.wanted.patterns)
            if self._v2_compress:
                q.append(("zstdDictionary", str(V2_DICT_ID)))
        q.append(("maxMessageSizeBytes", str(self.max_message_bytes)))
        if cursor is not None:
            q.append(("cursor", str(cursor)))
        return ep.url + "?" + urlencode(q, safe="*:")

    def _switch_host(self) -> None:
        old = self.endpoint
        self._index = (self._index + 1) % len(self.endpoints)
        self._rewind = self.rewind_on_switch_us
        # v2 seqs belong to one instance; the timestamp cursor takes over until the new host yields one.
        self._last_seq = None
        # A failover must not depend on a dictionary the previous host happened to reject.
        self._v2_compress = self.compress
        logger.warning(
            "jetstream switching host",
            extra={"source": old.source, "from_host": old.host, "to_host": self.endpoint.host},
        )

    def _advance(self, cursor: int | None, time_us: int | None) -> None:
        if cursor is None:
            return
        if self.version == 1:
            self._base = cursor
            self._rewind = self.rewind_on_reconnect_us
        else:
            self._last_seq = cursor
            if time_us is not None:
                self._last_time_us = time_us

    # -- main loop ---------------------------------------------------------------------------------------

    def _decoder(self) -> Decompressor:
        dict_id = V1_DICT_ID if self.version == 1 else V2_DICT_ID
        if self._decompressor is None or self._decompressor.dict_id != dict_id:
            self._decompressor = Decompressor(dict_id, max_output_size=self.max_message_bytes)
        return self._decompressor

    async def _stream(self, raw: bool) -> AsyncGenerator[bytes | Item, None]:
        # One flat generator on purpose: nested async generators cost a layer per message and, when the
        # consumer never closes them, race each other in the event loop's shutdown_asyncgens.
        if self._running:
            raise RuntimeError("JetstreamSource is already being iterated")
        self._running = True
        try:
            failures = 0
            backoff = self.min_backoff
            while True:
                ep = self.endpoint
                self.connection_states.activate(ep.source, ep.host)
                cursor = self._wire_cursor()
                if self._started_at_us is None:
                    # Without a start cursor the first connection starts at the live tip; later ones that
                    # have nothing better resume from this moment.
                    self._started_at_us = self._now_us()
                url = self._url(cursor)
                session = _Session(ep, raw)
                ws: ClientConnection | None = None
                watchdog: asyncio.Task[None] | None = None
                end = ConnectionEnd("closed")
                try:
                    ws = await self._connect(ep, url)
                    session.opened_at = time.monotonic()
                    self.connection_states.connected(ep.source, ep.host)
                    watchdog = asyncio.create_task(self._watch(ws, session))
                    logger.info(
                        "jetstream connected",
                        extra={"source": ep.source, "host": ep.host, "ws_url": url, "cursor": cursor},
                    )
                    loop = asyncio.get_running_loop()
                    received = None if self.metrics is None else self.metrics.events_received.labels(source=ep.source)
                    while True:
                        session.waiting_since = loop.time()
                        try:
                            msg = await ws.recv(decode=False)
                        except ConnectionClosed as e:
                            raise self._closed(e, session) from None
                        session.waiting_since = None
                        session.frames += 1
                        if received is not None:
                            received.inc()
                        data = msg if isinstance(msg, bytes) else msg.encode()
                        try:
                            out = self._handle(session, data)
                        except ConnectionEnd:
                            raise
                        except Exception as e:
                            # A bug must cost one frame, not the stream.
                            logger.exception("jetstream frame handling failed", extra={"source": ep.source})
                            out = None
                            if not raw:
                                out = Malformed(
                                    reason="internal_error",
                                    detail=f"{type(e).__name__}: {e}"[:500],
                                    raw=data[:4096].decode("utf-8", "replace"),
                                    source=ep.source,
                                )
                            elif self.metrics is not None:
                                self.metrics.events_rejected.labels(reason="internal_error").inc()
                        if out is not None:
                            yield out
                except ConnectionEnd as e:
                    end = e
                except JetstreamError as e:
                    self.connection_states.failed(ep.source, ep.host, str(e))
                    raise
                finally:
                    if watchdog is not None:
                        watchdog.cancel()
                    if ws is not None:
                        await ws.close()
                if session.opened_at is None:
                    self.connection_states.failed(ep.source, ep.host, end.describe())
                else:
                    self.connection_states.disconnected(ep.source, ep.host, end.describe())
                if end.reason == "oversize" and not raw:
                    yield Malformed(
                        reason="oversize",
                        detail=f"over {self.max_message_bytes} bytes, connection dropped: {end.detail}",
                        source=ep.source,
                    )
                if session.valid > 0:
                    failures = 0
                    backoff = self.min_backoff
                else:
                    failures += 1
                switching = failures >= self.failures_before_switch and len(self.endpoints) > 1
                delay = backoff * random.uniform(0.5, 1.0)
                logger.warning(
                    "jetstream disconnected",
                    extra={
                        "source": ep.source,
                        "host": ep.host,
                        "reason": end.reason,
                        "detail": end.detail[:500],
                        "frames": session.frames,
                        "connected_s": round(session.connected_s(), 3),
                        "consecutive_failures": failures,
                        "retry_in_s": round(delay, 3),
                        "switch_host": switching,
                    },
                )
                if switching:
                    self._switch_host()
                    failures = 0
                if self.metrics is not None:
                    self.metrics.reconnects.labels(source=self.endpoint.source).inc()
                await asyncio.sleep(delay)
                backoff = min(backoff * 2, self.max_backoff)
        finally:
            self._running = False
            self.connection_states.stopped()

    async def _watch(self, ws: ClientConnection, session: _Session) -> None:
        """Aborts the connection when a `recv` has waited `idle_timeout` seconds. Time the consumer spends
        between reads does not count: a slow consumer is backpressure, not a dead socket. (A watchdog instead
        of a timeout around every `recv`, which would cost more than parsing the message.)"""
        loop = asyncio.get_running_loop()
        interval = max(min(self.idle_timeout / 4, 5.0), 0.01)
        while True:
            await asyncio.sleep(interval)
            since = session.waiting_since
            if since is not None and loop.time() - since >= self.idle_timeout:
                session.idle = True
                ws.transport.abort()
                return

    def _handle(self, session: _Session, data: bytes) -> bytes | Item | None:
        """One received message to what the generator yields (None: nothing)."""
        ep = session.endpoint
        if data[:4] == ZSTD_MAGIC:
            try:
                data = self._decoder().decompress(data)
            except DecompressError as e:
                bad = malformed_from_decompress_error(e, data, ep.source)
                if not session.raw:
                    return bad
                # raw() has no writer behind it to count rejects, so count them here.
                if self.metrics is not None:
                    self.metrics.events_rejected.labels(reason=bad.reason).inc()
                logger.warning(
                    "jetstream frame rejected",
                    extra={"source": ep.source, "reason": bad.reason, "detail": bad.detail},
                )
                return None

        item: Event | Malformed | StreamNotice | None
        if ep.version == 1:
            item = parse_v1(data, ep.source, wanted=self.wanted)
        else:
            item = parse_v2(data, ep.source, wanted=self.wanted)

        if item is None:
            # Valid, just not ours.
            session.valid += 1
            session.skipped += 1
            if not session.raw and session.skipped < self.checkpoint_every:
                return None
            c, t = self._position(ep, data)
            if self._redelivered(c):
                return None
            self._advance(c, t)
            if session.raw:
                return data
            if c is None:
                return None
            session.skipped = 0
            return Checkpoint(source=ep.source, cursor=c)
        if isinstance(item, StreamNotice):
            self._notice(ep, item)
            return None

        session.skipped = 0
        c = item.cursor
        if self._redelivered(c):
            return None
        if isinstance(item, Event):
            session.valid += 1
            self._advance(c, item.time_us)
        else:
            self._advance(c, None)
        return data if session.raw else item

    async def _connect(self, ep: Endpoint, url: str) -> ClientConnection:
        try:
            return await connect(
                url,
                subprotocols=[V2_SUBPROTOCOL] if ep.version == 2 else None,
                # Compressed streams are zstd already; for plain JSON let the server deflate if it can.
                compression=None if (self.compress or ep.version == 2) else "deflate",
                open_timeout=self.open_timeout,
                ping_interval=self.ping_interval,
                ping_timeout=self.ping_timeout,
                close_timeout=self.close_timeout,
                max_size=self.max_message_bytes,
                max_queue=self.max_queue,
                user_agent_header=self.user_agent,
            )
        except InvalidStatus as e:
            raise self._rejected(ep, e) from None
        except InvalidURI as e:
            raise JetstreamError(f"invalid Jetstream URL {url!r}: {e}") from e
        except (OSError, TimeoutError, InvalidHandshake) as e:
            raise ConnectionEnd("connect_failed", describe_connect_error(e, self.open_timeout)) from None

    def _rejected(self, ep: Endpoint, e: InvalidStatus) -> Exception:
        status = e.response.status_code
        body = bytes(e.response.body or b"")
        if ep.version == 2 and status == 400:
            try:
                err = msgspec.json.decode(body, type=_XrpcError)
            except msgspec.MsgspecError:
                err = _XrpcError()
            if err.error == "CursorTooOld":
                return CursorTooOldError(f"{ep.host}: {err.message or 'cursor below the retention floor'}")
            if err.error == "InvalidRequest":
                return RequestRejectedError(f"{ep.host}: {err.message}")
            if err.error == "UnknownZstdDictionary":
                # The host retired the bundled dictionary; plain JSON keeps the stream going.
                self._v2_compress = False
                logger.warning(
                    "jetstream zstd dictionary refused, continuing uncompressed",
                    extra={"source": ep.source, "host": ep.host, "detail": err.message},
                )
                return ConnectionEnd("dictionary_refused", err.message)
        return ConnectionEnd(f"http_{status}", body[:300].decode("utf-8", "replace"))

    def _closed(self, e: ConnectionClosed, session: _Session) -> ConnectionEnd:
        if session.idle:
            return ConnectionEnd("idle", f"no message for {self.idle_timeout} s")
        sent = e.sent.code if e.sent is not None else None
        rcvd = e.rcvd.code if e.rcvd is not None else None
        if _CLOSE_MESSAGE_TOO_BIG in (sent, rcvd):
            return ConnectionEnd("oversize", str(e))
        return ConnectionEnd("closed", str(e))

    def _notice(self, ep: Endpoint, notice: StreamNotice) -> None:
        if notice.kind == "error":
            # Terminal by contract (e.g. ConsumerTooSlow): the server closes right after it.
            raise ConnectionEnd(f"server_error:{notice.name}", notice.message or "")
        logger.warning(
            "jetstream notice",
            extra={"source": ep.source, "host": ep.host, "notice": notice.name, "detail": notice.message},
        )

    def _redelivered(self, cursor: int | None) -> bool:
        # The inclusive v2 cursor re-delivers the last event of the previous connection.
        return self.version == 2 and cursor is not None and self._last_seq is not None and cursor <= self._last_seq

    def _position(self, ep: Endpoint, data: bytes) -> tuple[int | None, int | None]:
        if ep.version == 1:
            c = frame_cursor_v1(data)
            return c, c
        return frame_position_v2(data)


class _Session:
    """State of one connection."""

    __slots__ = ("endpoint", "frames", "idle", "opened_at", "raw", "skipped", "valid", "waiting_since")

    def __init__(self, endpoint: Endpoint, raw: bool) -> None:
        self.endpoint = endpoint
        self.raw = raw
        self.frames = 0
        # Frames that parsed (events, or valid frames of other collections); Malformed ones do not count.
        self.valid = 0
        self.skipped = 0
        self.opened_at: float | None = None
        self.waiting_since: float | None = None
        self.idle = False

    def connected_s(self) -> float:
        return 0.0 if self.opened_at is None else time.monotonic() - self.opened_at
