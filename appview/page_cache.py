"""Whole responses of anonymous reads, kept in memory per process until the index changes.

Most read traffic is the same few anonymous requests (the discovery feed's first page, a popular artist, a
shared track), and an anonymous answer is a function of the index alone. So each API process keeps the bytes
it sent, and sends them again until a change to the index could make them wrong.

Invariants (tests/test_page_cache.py):
- only anonymous GETs of the reads it is given (appview/xrpc's `CACHED_READS`) are kept: a request with an
  `Authorization` header (a viewer, an operator) always runs its handler. The key is the path, the query string
  and the accepted labelers (the only request header an anonymous read depends on); only complete 200 responses
  are stored.
- every committed change to a table the reads read notifies the channel `CHANNEL` (a statement trigger, migration
  0015, so every writer is covered: the fold, rebuild, takedowns, labels, the write proxy), and each notification
  empties the cache. A response is stored only if no notification arrived while it was computed (the generation
  it started at is still the current one), so nothing stored predates a change this process has heard of: a
  commit is visible through the cache as soon as its notification arrives, a few milliseconds after it.
- while the listening connection is down, nothing is served from or stored in the cache: the process cannot hear
  changes then, so it does not pretend to.
- an entry is never older than `ttl` seconds: what time alone changes (a label's or a status's expiry, top-track
  windows) and, with a read replica, the replica's lag stay bounded. It is at most the `max-age` the response
  already carries, which allows any shared cache as much.
- memory is bounded: at most `max_bytes` of bodies, the least recently used entry leaves first.
- single flight: concurrent misses of one key run the handler once; the others wait for its answer (or, if it is
  not storable, run their own).

Served from the cache, a response is the handler's, byte for byte: status, body and headers (ETag included, so a
matching `If-None-Match` gets its 304 here too). The rate limiter runs outside (appview/ratelimit.py), so a hit
is charged like any request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import cast

import psycopg
from litestar.enums import ScopeType
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    HTTPScope,
    Message,
    Receive,
    Scope,
    Send,
)

from indexer.db.notify import INDEX_CHANGED as CHANNEL
from indexer.metrics import Metrics

log = logging.getLogger(__name__)

# Longest an entry lives when reads come from a replica, whose lag behind the notified changes is unknown.
REPLICA_PAGE_TTL = 1.0

# What a stored response is known by: path, query string, accepted labelers.
Key = tuple[str, bytes, bytes]

# Bookkeeping per entry on top of its body, so that many tiny entries are bounded too.
_ENTRY_OVERHEAD = 512


@dataclass(frozen=True, slots=True)
class Entry:
    headers: list[tuple[bytes, bytes]]
    body: bytes
    etag: bytes | None
    stored_at: float

    @property
    def size(self) -> int:
        return len(self.body) + _ENTRY_OVERHEAD + sum(len(k) + len(v) for k, v in self.headers)


class PageCache:
    """The responses one process keeps (see the module docstring). `max_bytes` 0 keeps nothing."""

    def __init__(
        self,
        paths: frozenset[str],
        max_bytes: int,
        ttl: float,
        metrics: Metrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.paths = paths
        self.max_bytes = max_bytes
        self.ttl = ttl
        self.metrics = metrics
        self.clock = clock
        self._entries: OrderedDict[Key, Entry] = OrderedDict()
        self._bytes = 0
        # Bumped by every change heard of, and whenever hearing stops or starts.
        self.generation = 0
        # True while the listening connection is up (`listen`).
        self.live = False
        self._flights: dict[Key, asyncio.Future[None]] = {}

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0 and self.ttl > 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        return self._bytes

    def changed(self) -> None:
        """The index changed (or may have, unheard): nothing kept so far may be served again."""
        self.generation += 1
        if self._entries:
            self._entries = OrderedDict()
            self._bytes = 0
        self.metrics.page_cache_invalidations.inc()

    def key(self, scope: HTTPScope) -> Key | None:
        """The key of a request whose response may be kept, None for any other."""
        if not self.live or scope["method"] != "GET" or scope["path"] not in self.paths:
            return None
        labelers = b""
        for name, value in scope["headers"]:
            name = name.lower()
            if name == b"authorization":
                return None
            if name == b"atproto-accept-labelers":
                labelers = value
        return scope["path"], scope["query_string"], labelers

    def get(self, key: Key) -> Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self.clock() - entry.stored_at >= self.ttl:
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry

    def put(self, key: Key, entry: Entry, generation: int) -> bool:
        """Keep `entry` if nothing changed since `generation`, when its computation started."""
        if not self.live or generation != self.generation or entry.size > self.max_bytes:
            return False
        self._drop(key)
        while self._entries and self._bytes + entry.size > self.max_bytes:
            self._drop(next(iter(self._entries)))
        self._entries[key] = entry
        self._bytes += entry.size
        return True

    def _drop(self, key: Key) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry.size

    @contextlib.asynccontextmanager
    async def flight(self, key: Key) -> AsyncIterator[bool]:
        """Single flight per key: yields True to the one request that should compute, after waiting for any
        other that was computing it (then False if that one left an entry to serve)."""
        while (ahead := self._flights.get(key)) is not None:
            await asyncio.shield(ahead)
            if self.get(key) is not None:
                yield False
                return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._flights[key] = done
        try:
            yield True
        finally:
            del self._flights[key]
            done.set_result(None)


async def listen(url: str, cache: PageCache, *, retry_seconds: float = 1.0) -> None:
    """Empties `cache` at each change notified on the primary at `url`, for as long as it runs (a task of the
    app's lifespan). The cache is live only while the connection is up; after a loss it reconnects every
    `retry_seconds` and starts from empty, since changes made meanwhile were not heard."""
    # Said once per outage, not once per attempt; and said again when it comes back.
    quiet = False
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                await conn.execute(f"LISTEN {CHANNEL}")
                cache.live = True
                cache.changed()
                if quiet:
                    log.info("page cache on: hearing the index's changes again")
                    quiet = False
                async for _ in conn.notifies():
                    cache.changed()
        except (psycopg.Error, OSError) as e:
            if not quiet:
                log.warning("page cache off: cannot hear the index's changes (%s); retrying", e)
                quiet = True
        finally:
            if cache.live:
                cache.live = False
                cache.changed()
        await asyncio.sleep(retry_seconds)


@contextlib.asynccontextmanager
async def listening(url: str, cache: PageCache) -> AsyncIterator[None]:
    """`listen` while the context is open, if the cache is enabled (else the cache stays off: never live)."""
    if not cache.enabled:
        yield
        return
    listener = asyncio.create_task(listen(url, cache), name="page-cache-listener")
    try:
        yield
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener


class PageCacheMiddleware:
    """Serves kept responses, and keeps the storable ones the handlers send (the cache is the app context's:
    `ctx.pages`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        cache: PageCache = scope["litestar_app"].state.ctx.pages
        if scope["type"] != ScopeType.HTTP or (key := cache.key(scope)) is None:
            await self.app(scope, receive, send)
            return
        metrics = cache.metrics
        entry = cache.get(key)
        if entry is not None:
            metrics.page_cache_requests.labels("hit").inc()
            await _serve(entry, scope, send)
            return
        async with cache.flight(key) as compute:
            if not compute and (entry := cache.get(key)) is not None:
                metrics.page_cache_requests.labels("hit").inc()
                await _serve(entry, scope, send)
                return
            metrics.page_cache_requests.labels("miss").inc()
            generation = cache.generation
            capture = _Capture(send)
            await self.app(scope, receive, capture)
            kept = capture.entry(cache.clock())
            if kept is not None:
                cache.put(key, kept, generation)


async def _serve(entry: Entry, scope: HTTPScope, send: Send) -> None:
    if entry.etag is not None:
        for name, value in scope["headers"]:
            if name.lower() == b"if-none-match" and value == entry.etag:
                headers = [(k, v) for k, v in entry.headers if k not in (b"content-length", b"content-type")]
                await send({"type": "http.response.start", "status": 304, "headers": headers})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return
    await send({"type": "http.response.start", "status": 200, "headers": entry.headers})
    await send({"type": "http.response.body", "body": entry.body, "more_body": False})


class _Capture:
    """Forwards a response as it is sent, and keeps a copy of a plain, complete 200."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.parts: list[bytes] = []
        self.complete = False
        self.plain = True

    async def __call__(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            start = cast("HTTPResponseStartEvent", message)
            self.status = start["status"]
            self.headers = [(bytes(k).lower(), bytes(v)) for k, v in start.get("headers", ())]
        elif kind == "http.response.body":
            body = cast("HTTPResponseBodyEvent", message)
            self.parts.append(bytes(body.get("body", b"")))
            self.complete = not body.get("more_body", False)
        else:
            self.plain = False
        await self.send(message)

    def entry(self, now: float) -> Entry | None:
        if self.status != 200 or not self.complete or not self.plain:
            return None
        if any(k == b"set-cookie" for k, _ in self.headers):
            return None
        etag = next((v for k, v in self.headers if k == b"etag"), None)
        return Entry(self.headers, b"".join(self.parts), etag, now)
