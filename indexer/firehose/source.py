"""Raw firehose source: follows `com.atproto.sync.subscribeRepos` on a relay or a PDS and yields items for the
batch writer.

- Cursor: the relay `seq`, one source per host (`firehose:<host>`); a reconnect resumes after the last seq
  yielded and drops re-delivered frames (`seq <= last`).
- Ours: a commit with ops we want (`WANTED`), except one whose only wanted ops are of collections kept for known
  actors only (`KNOWN_ONLY`: Bluesky's profile) from a DID the `KnownActors` set lacks: that one is foreign like
  any other app's commit (a checkpoint, its rev noted for the chain below, nothing else). The set is loaded from
  the database, reloaded every `refresh_seconds` and learns at once the DID of every op of our namespace this
  source yields. Without a set (`known=None`) every wanted op is ours and the fold alone drops strangers'
  profiles.
- Signatures: with a `DidDocuments`, every commit that is ours is checked against its DID's
  `#atproto` key. The check itself is synchronous (inside `decode_frame`), so a frame whose key is not cached
  yet is decoded again once the DID document arrived; a signature that fails with a cached key is retried
  once with a freshly fetched document (the key may have been rotated). What still fails is a Malformed,
  counted by the writer like any other rejection.
- Repairs: `#sync`, a legacy `tooBig` commit, a gap in a repo's rev chain (a commit whose `since` is not the
  last rev seen for that repo), and a DID that cannot be resolved mark the repo in `repo_sync`;
  `#info OutdatedCursor` marks every repo we index. Marks are committed before the frame's item is yielded,
  so the cursor never moves past a mark that could still be lost. `plyr-appview resync` (and the periodic
  job inside `index`) fetches marked repos.
- Connection state: `connection_states` holds the host's `SourceState` (connected or not, since when, the last
  error, consecutive failed attempts); each transition also goes to `status` (the indexer's
  `SourceStatusRecorder`, which must not block) and to the metrics.
- Bad input never ends the stream: every frame becomes Events, a Checkpoint or Malformed items; an unknown
  frame type is a Malformed("unknown_frame_type"); a frame over `max_frame_bytes` is a
  Malformed("frame_too_large"). Frames far above that (over the websocket limit) close the connection; the
  source then resumes one seq further on and records the skipped position as a rejection.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Any, Final, Protocol
from urllib.parse import urlencode, urlsplit, urlunsplit

import libipld
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from indexer.atproto.identity.did_docs import DidDocuments, DidResolutionError
from indexer.atproto.repo.signatures import verify_commit_with_key
from indexer.events import OWN_NAMESPACE, Checkpoint, Event, Item, Malformed
from indexer.firehose.commit import malformed
from indexer.firehose.frames import DEFAULT_MAX_FRAME_BYTES, Control, Decoded, decode_frame
from indexer.fold.collections import WANTED
from indexer.metrics import Metrics
from indexer.source_status import ConnectionEnd, ConnectionStates, SourceState, StatusSink, describe_connect_error
from indexer.sync.known import KnownActors

log = logging.getLogger(__name__)

PREFIX: Final = "firehose:"
SUBSCRIBE_PATH: Final = "/xrpc/com.atproto.sync.subscribeRepos"
_CLOSE_MESSAGE_TOO_BIG: Final = 1009


class FirehoseError(Exception):
    """A condition reconnecting cannot fix (a bad URL)."""


class Marker(Protocol):
    """Where repo marks go; `indexer.sync.marks.RepoMarker` writes them to `repo_sync`."""

    async def mark(self, did: str, reason: str) -> None: ...

    async def mark_known(self, reason: str) -> int: ...


def is_firehose_url(url: str) -> bool:
    return url.strip().startswith(PREFIX)


def parse_firehose_url(url: str) -> tuple[str, str]:
    """`firehose:wss://relay.example` (or a PDS's http(s) URL) -> (websocket URL of subscribeRepos, host)."""
    text = url.strip()
    if text.startswith(PREFIX):
        text = text[len(PREFIX) :]
    if "://" not in text:
        text = "wss://" + text
    parts = urlsplit(text)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss") or not parts.hostname:
        raise FirehoseError(f"not a firehose URL: {url!r}")
    path = parts.path.rstrip("/")
    if path in ("", SUBSCRIBE_PATH):
        path = SUBSCRIBE_PATH
    else:
        raise FirehoseError(f"unexpected path {parts.path!r} in firehose URL {url!r}")
    return urlunsplit((scheme, parts.netloc, path, "", "")), parts.netloc


def source_name(url: str) -> str:
    return PREFIX + parse_firehose_url(url)[1]


class _KeyHook:
    """The synchronous `verify` hook of `decode_frame`, fed from the DID document cache."""

    def __init__(self, docs: DidDocuments) -> None:
        self.docs = docs
        self.missing: str | None = None
        self.failed: str | None = None

    def reset(self) -> None:
        self.missing = None
        self.failed = None

    def __call__(self, did: str, commit: dict[str, Any]) -> str | None:
        key = self.docs.cached_key(did)
        if key is None:
            self.missing = did
            return "signing key not resolved"
        reason = verify_commit_with_key(commit, key)
        if reason is not None:
            self.failed = did
        return reason


class FirehoseSource:
    def __init__(
        self,
        url: str,
        *,
        start_cursor: int | None = None,
        docs: DidDocuments | None = None,
        marker: Marker | None = None,
        metrics: Metrics | None = None,
        want: Callable[[str], bool] = WANTED,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        idle_timeout: float = 60.0,
        open_timeout: float = 10.0,
        min_backoff: float = 1.0,
        max_backoff: float = 60.0,
        refresh_interval: float = 60.0,
        rev_cache_size: int = 1_000_000,
        status: StatusSink | None = None,
        known: KnownActors | None = None,
    ) -> None:
        self.ws_url, self.host = parse_firehose_url(url)
        self.source = PREFIX + self.host
        self.connection_states = ConnectionStates(
            [SourceState(self.source, self.host, "firehose", self.ws_url)], sink=status, metrics=metrics
        )
        self.last_seq = start_cursor
        self.docs = docs
        self.marker = marker
        self.metrics = metrics
        self.want = want
        self.known = known
        self.max_frame_bytes = max_frame_bytes
        self.idle_timeout = idle_timeout
        self.open_timeout = open_timeout
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        # A forged frame must not buy an unlimited number of DID document fetches.
        self.refresh_interval = refresh_interval
        self._refreshed: dict[str, float] = {}
        self._hook = _KeyHook(docs) if docs is not None else None
        # Last rev seen per repo (every commit, not only ours: `since` chains through all of a repo's commits).
        self._revs: OrderedDict[str, str] = OrderedDict()
        self._rev_cache_size = rev_cache_size
        self.connections = 0
        self.frames = 0

    # -- the stream ----------------------------------------------------------------------------------

    def _url(self) -> str:
        if self.last_seq is None:
            return self.ws_url
        return self.ws_url + "?" + urlencode({"cursor": str(self.last_seq)})

    @property
    def ever_connected(self) -> bool:
        return self.connection_states.ever_connected

    async def events(self) -> AsyncIterator[Item]:
        # One flat generator (a wrapper would cost a layer per frame); `finally` notes that reading stopped.
        try:
            backoff = self.min_backoff
            self.connection_states.activate(self.source, self.host)
            while True:
                url = self._url()
                ws: ClientConnection | None = None
                valid = 0
                reason = "closed"
                opened = False
                try:
                    try:
                        ws = await connect(
                            url,
                            open_timeout=self.open_timeout,
                            max_size=self.max_frame_bytes * 4,
                            max_queue=64,
                            compression=None,
                            ping_interval=20,
                            ping_timeout=20,
                        )
                    except InvalidURI as e:
                        self.connection_states.failed(self.source, self.host, f"invalid URL: {e}")
                        raise FirehoseError(f"invalid firehose URL {url!r}: {e}") from e
                    except InvalidStatus as e:
                        body = bytes(e.response.body or b"")[:300].decode("utf-8", "replace")
                        raise ConnectionEnd(f"http_{e.response.status_code}", body) from None
                    except (OSError, TimeoutError, InvalidHandshake) as e:
                        raise ConnectionEnd("connect_failed", describe_connect_error(e, self.open_timeout)) from None
                    opened = True
                    self.connections += 1
                    self.connection_states.connected(self.source, self.host)
                    log.info("firehose connected", extra={"source": self.source, "ws_url": url})
                    received = None if self.metrics is None else self.metrics.events_received.labels(source=self.source)
                    while True:
                        try:
                            async with asyncio.timeout(self.idle_timeout):
                                msg = await ws.recv(decode=False)
                        except TimeoutError:
                            raise ConnectionEnd("idle", f"no frame for {self.idle_timeout} s") from None
                        except ConnectionClosed as e:
                            raise self._closed(e) from None
                        self.frames += 1
                        if received is not None:
                            received.inc()
                        data = msg if isinstance(msg, bytes) else msg.encode()
                        try:
                            items = await self.handle(data)
                        except ConnectionEnd:
                            raise
                        except Exception as e:
                            # A bug must cost one frame, not the stream.
                            log.exception("firehose frame handling failed", extra={"source": self.source})
                            items = [malformed(data, self.source, "internal_error", f"{type(e).__name__}: {e}"[:500])]
                        if any(not isinstance(i, Malformed) for i in items):
                            valid += 1
                        for item in items:
                            yield item
                except ConnectionEnd as e:
                    reason = e.reason
                    if opened:
                        self.connection_states.disconnected(self.source, self.host, e.describe())
                    else:
                        self.connection_states.failed(self.source, self.host, e.describe())
                    if e.reason == "oversize":
                        # The frame after the last seq is too large for the socket: skip that seq so the next
                        # connection does not meet it again, and keep a trace of what was skipped.
                        skipped = None if self.last_seq is None else self.last_seq + 1
                        yield Malformed(
                            reason="frame_too_large",
                            detail=f"websocket message over {self.max_frame_bytes * 4} bytes after seq {self.last_seq}",
                            source=self.source,
                            cursor=skipped,
                        )
                        if skipped is not None:
                            self.last_seq = skipped
                    if e.detail:
                        reason = f"{e.reason}: {e.detail}"
                finally:
                    if ws is not None:
                        await ws.close()
                if valid:
                    backoff = self.min_backoff
                delay = backoff * random.uniform(0.5, 1.0)
                log.warning(
                    "firehose disconnected",
                    extra={"source": self.source, "reason": reason[:500], "retry_in_s": round(delay, 3)},
                )
                if self.metrics is not None:
                    self.metrics.reconnects.labels(source=self.source).inc()
                await asyncio.sleep(delay)
                backoff = min(backoff * 2, self.max_backoff)
        finally:
            self.connection_states.stopped()

    def _closed(self, e: ConnectionClosed) -> ConnectionEnd:
        codes = {e.sent.code if e.sent else None, e.rcvd.code if e.rcvd else None}
        if _CLOSE_MESSAGE_TOO_BIG in codes:
            return ConnectionEnd("oversize", str(e))
        return ConnectionEnd("closed", str(e))

    # -- one frame -------------------------------------------------------------------------------------

    async def handle(self, data: bytes) -> list[Item]:
        """One websocket message to the items to yield (marks written first). Raises ConnectionEnd on an error frame."""
        peek = _peek(data) if len(data) <= self.max_frame_bytes else None
        seq = peek.get("seq") if peek is not None else None
        if type(seq) is int and self.last_seq is not None and seq <= self.last_seq:
            return []  # re-delivered after a reconnect
        if self.known is not None:
            await self.known.refresh_if_due()
        decoded = await self._decode(data)
        out: list[Item] = []
        for item in decoded:
            if isinstance(item, Control):
                out.extend(await self._control(item, data))
            else:
                if (
                    self.known is not None
                    and isinstance(item, Event)
                    and (item.collection or "").startswith(OWN_NAMESPACE)
                ):
                    self.known.learn(item.did)
                out.append(item)
        if peek is not None and peek.get("$t") == "#commit" and any(isinstance(i, Event | Checkpoint) for i in out):
            await self._check_chain(peek)
        for item in out:
            if item.cursor is not None and (self.last_seq is None or item.cursor > self.last_seq):
                self.last_seq = item.cursor
        return out

    def _decode_once(self, data: bytes) -> list[Decoded]:
        if self._hook is not None:
            self._hook.reset()
        return decode_frame(
            data,
            source=self.source,
            want=self.want,
            max_frame_bytes=self.max_frame_bytes,
            verify=self._hook,
            checkpoint=True,
            keep=None if self.known is None else self.known.keeps,
        )

    async def _decode(self, data: bytes) -> list[Decoded]:
        items = self._decode_once(data)
        hook = self._hook
        if hook is None:
            return items
        if hook.missing is not None:
            did = hook.missing
            try:
                await hook.docs.signing_key(did)
            except DidResolutionError as e:
                # Without a key nothing of this commit can be trusted; it is refused, and the repo is marked so
                # its state is fetched (and verified) once the identity resolves again.
                await self._mark(did, "identity_unavailable")
                seq = _int(_peek(data), "seq")
                return [malformed(data, self.source, "identity_unavailable", f"{did}: {e}", did, seq)]
            items = self._decode_once(data)
        if hook.failed is not None:
            did = hook.failed
            now = time.monotonic()
            if now - self._refreshed.get(did, -1e18) >= self.refresh_interval:
                self._refreshed[did] = now
                if len(self._refreshed) > 100_000:
                    self._refreshed.clear()
                old = hook.docs.cached_key(did)
                new: str | None
                try:
                    new = await hook.docs.signing_key(did, refresh=True)
                except DidResolutionError:
                    new = old
                if new != old:
                    log.info("signing key rotated", extra={"did": did})
                    items = self._decode_once(data)
        return items

    async def _control(self, c: Control, data: bytes) -> list[Item]:
        cp: list[Item] = [] if c.cursor is None else [Checkpoint(source=self.source, cursor=c.cursor)]
        if c.kind == "sync" and c.did is not None:
            await self._mark(c.did, "sync")
            if c.rev is not None:
                self._set_rev(c.did, c.rev)
            return cp
        if c.kind == "too_big" and c.did is not None:
            await self._mark(c.did, "too_big")
            return cp
        if c.kind == "info":
            if c.name == "OutdatedCursor":
                n = await self._mark_known("outdated_cursor")
                log.warning("firehose cursor outdated; known repos marked for resync", extra={"repos": n})
            else:
                log.info("firehose info", extra={"source": self.source, "info": c.name, "detail": c.message})
            return cp
        if c.kind == "error":
            if c.name == "FutureCursor":
                # The host's sequence went backwards (a reset PDS or relay): our seq means nothing there. Start
                # at its tip and repair everything we know from the repos themselves.
                self.last_seq = None
                await self._mark_known("future_cursor")
            raise ConnectionEnd(f"error_frame:{c.name}", c.message or "")
        return [
            malformed(
                data,
                self.source,
                "unknown_frame_type",
                f"frame type {c.name!r} is not handled",
                c.did,
                c.cursor,
            )
        ]

    async def _check_chain(self, body: dict[str, Any]) -> None:
        repo, rev, since = body.get("repo"), body.get("rev"), body.get("since")
        if type(repo) is not str or type(rev) is not str:
            return
        last = self._revs.get(repo)
        if last is not None and rev > last and since != last:
            log.warning(
                "rev chain gap; repo marked for resync",
                extra={"source": self.source, "did": repo, "since": since, "last_rev": last, "rev": rev},
            )
            await self._mark(repo, "rev_gap")
        self._set_rev(repo, rev)

    def _set_rev(self, did: str, rev: str) -> None:
        last = self._revs.get(did)
        if last is None or rev > last:
            self._revs[did] = rev
        self._revs.move_to_end(did)
        if len(self._revs) > self._rev_cache_size:
            self._revs.popitem(last=False)

    async def _mark(self, did: str, reason: str) -> None:
        if self.marker is not None:
            await self.marker.mark(did, reason)

    async def _mark_known(self, reason: str) -> int:
        return 0 if self.marker is None else await self.marker.mark_known(reason)


def _peek(data: bytes) -> dict[str, Any] | None:
    """The frame's body (with the header's `t` as `$t`), or None when it does not decode."""
    try:
        parts = libipld.decode_dag_cbor_multi(data)
    except Exception:
        return None
    if len(parts) != 2 or type(parts[0]) is not dict or type(parts[1]) is not dict:
        return None
    body: dict[str, Any] = dict(parts[1])
    body["$t"] = parts[0].get("t")
    return body


def _int(body: dict[str, Any] | None, key: str) -> int | None:
    value = None if body is None else body.get(key)
    return value if type(value) is int else None
