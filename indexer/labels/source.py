"""Follows one labeler's `com.atproto.label.subscribeLabels` stream into `labels`.

- Identity: the labeler's DID document (PLC or did:web, through the shared `DidDocuments` cache) names the
  stream's host (`#atproto_labeler` service) and the key labels are signed with (`#atproto_label`). The
  endpoint comes from the network, so the connection goes through the SSRF guard (indexer.atproto.netguard):
  the host name is resolved once, every address checked, and the socket opened to a checked address.
- Frames: DAG-CBOR header `{op: 1, t: "#labels"}` + body `{seq, labels}`; `#info` (logged); error frames
  (`op: -1`) end the connection (`FutureCursor`: the labeler's sequence restarted, so its whole history is read
  again from 0; storing a label again changes nothing).
- Each label is checked (indexer.labels.label), must name the labeler it came from as `src`, and must carry a
  valid signature. A signature that fails re-reads the DID document once (at most every `refresh_interval`
  seconds per labeler: a forged label must not buy a fetch each) and is checked again with the new key if the
  key changed (rotation). Refused labels are counted (`plyr_labels{labeler,outcome}`,
  `plyr_events_rejected{reason}`), logged and kept in `rejections`.
- Cursor: `cursors` row `labeler:<did>`, committed with the frame's labels (indexer.labels.store). A labeler
  never followed before is read from seq 0: its whole history. A frame at or below the committed seq is
  dropped (redelivery after a reconnect).
- Connection state goes to `source_status` like the other sources (kind `labeler`, host = the labeler's DID);
  reconnects back off exponentially, with jitter, up to `max_backoff`. A lost database ends the connection
  too: the next one resumes from the committed cursor, so nothing is skipped.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

import libipld
import psycopg
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from indexer.atproto.identity.did_docs import DidDocuments, DidResolutionError
from indexer.atproto.netguard import ForbiddenHost, NetGuard
from indexer.labels.label import Label, Refusal, evidence, label_key, labeler_endpoint, parse_label, verify_label
from indexer.labels.store import Rejected, committed_cursor, save_frame
from indexer.metrics import Metrics
from indexer.source_status import (
    ConnectionEnd,
    ConnectionStates,
    SourceState,
    SourceStatusRecorder,
    StatusSink,
    describe_connect_error,
)

log = logging.getLogger(__name__)

PREFIX: Final = "labeler:"
SUBSCRIBE_PATH: Final = "/xrpc/com.atproto.label.subscribeLabels"
MAX_FRAME_BYTES: Final = 4 * 1024 * 1024
MAX_LABELS_PER_FRAME: Final = 10_000


def source_name(did: str) -> str:
    return PREFIX + did


class LabelerSource:
    """One labeler's stream, written to the database at `conninfo` (see the module docstring)."""

    def __init__(
        self,
        did: str,
        conninfo: str,
        docs: DidDocuments,
        *,
        guard: NetGuard | None = None,
        metrics: Metrics | None = None,
        status: StatusSink | None = None,
        idle_timeout: float = 300.0,
        open_timeout: float = 10.0,
        min_backoff: float = 1.0,
        max_backoff: float = 300.0,
        refresh_interval: float = 60.0,
    ) -> None:
        self.did = did
        self.source = source_name(did)
        self.conninfo = conninfo
        self.docs = docs
        self.guard = guard or NetGuard()
        self.metrics = metrics
        self.state = SourceState(self.source, did, "labeler", "")
        self.connection_states = ConnectionStates([self.state], sink=status, metrics=metrics)
        self.idle_timeout = idle_timeout
        self.open_timeout = open_timeout
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.refresh_interval = refresh_interval
        self._refreshed_at = -1e18
        self.key: str | None = None
        self.last_seq: int | None = None
        self._conn: psycopg.AsyncConnection[Any] | None = None
        # What this process did, for logs and tests.
        self.accepted = 0
        self.rejected: dict[str, int] = {}
        self.connections = 0
        self._opened = False
        self._frames = 0

    # -- the loop ------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Follow the labeler until cancelled."""
        backoff = self.min_backoff
        self.connection_states.activate(self.source, self.did)
        try:
            while True:
                self._opened = False
                self._frames = 0
                try:
                    await self._follow_once()
                except ConnectionEnd as e:
                    end = e
                if self._opened:
                    self.connection_states.disconnected(self.source, self.did, end.describe())
                else:
                    self.connection_states.failed(self.source, self.did, end.describe())
                if self._frames:
                    backoff = self.min_backoff
                delay = backoff * random.uniform(0.5, 1.0)
                log.warning(
                    "labeler disconnected",
                    extra={"source": self.source, "reason": end.describe()[:500], "retry_in_s": round(delay, 3)},
                )
                if self.metrics is not None:
                    self.metrics.reconnects.labels(source=self.source).inc()
                await asyncio.sleep(delay)
                backoff = min(backoff * 2, self.max_backoff)
        finally:
            self.connection_states.stopped()
            await self._close_db()

    async def _follow_once(self) -> None:
        """One connection, from the committed cursor on; ends only by raising ConnectionEnd."""
        conn = await self._db()
        try:
            committed = await committed_cursor(conn, self.source)
        except psycopg.Error as e:
            await self._close_db()
            raise ConnectionEnd("database", f"{type(e).__name__}: {e}"[:300]) from None
        # The database is the truth (an operator may have rewound the cursor while we were away).
        self.last_seq = committed
        endpoint = await self._identity()
        parts = urlsplit(endpoint)
        host = parts.hostname or ""
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            self.guard.check_url(endpoint)
            addresses = await self.guard.resolve(host, port)
        except ForbiddenHost as e:
            raise ConnectionEnd("forbidden_host", str(e)) from None
        except Exception as e:
            raise ConnectionEnd("connect_failed", describe_connect_error(e)) from None
        scheme = "wss" if parts.scheme == "https" else "ws"
        cursor = 0 if self.last_seq is None else self.last_seq
        url = f"{scheme}://{parts.netloc}{SUBSCRIBE_PATH}?{urlencode({'cursor': str(cursor)})}"
        self.state.url = f"{scheme}://{parts.netloc}{SUBSCRIBE_PATH}"
        ws: ClientConnection | None = None
        try:
            try:
                ws = await connect(
                    url,
                    host=addresses[0],
                    port=port,
                    proxy=None,
                    open_timeout=self.open_timeout,
                    max_size=MAX_FRAME_BYTES,
                    max_queue=16,
                    compression=None,
                    ping_interval=20,
                    ping_timeout=20,
                )
            except InvalidStatus as e:
                body = bytes(e.response.body or b"")[:300].decode("utf-8", "replace")
                raise ConnectionEnd(f"http_{e.response.status_code}", body) from None
            except (OSError, TimeoutError, InvalidHandshake) as e:
                raise ConnectionEnd("connect_failed", describe_connect_error(e, self.open_timeout)) from None
            self._opened = True
            self.connections += 1
            self.connection_states.connected(self.source, self.did)
            log.info("labeler connected", extra={"source": self.source, "ws_url": url})
            while True:
                try:
                    async with asyncio.timeout(self.idle_timeout):
                        msg = await ws.recv(decode=False)
                except TimeoutError:
                    raise ConnectionEnd("idle", f"no frame for {self.idle_timeout:g} s") from None
                except ConnectionClosed as e:
                    raise ConnectionEnd("closed", str(e)) from None
                if self.metrics is not None:
                    self.metrics.events_received.labels(source=self.source).inc()
                await self.handle(msg if isinstance(msg, bytes) else msg.encode())
                self._frames += 1
        finally:
            if ws is not None:
                await ws.close()

    async def _identity(self) -> str:
        """The stream's endpoint, with the signing key loaded; raises ConnectionEnd."""
        try:
            doc = await self.docs.resolve(self.did)
        except DidResolutionError as e:
            raise ConnectionEnd("identity_unavailable", f"{e.reason}: {e.detail}"[:300]) from None
        endpoint = labeler_endpoint(doc)
        if endpoint is None:
            raise ConnectionEnd("identity_unavailable", f"{self.did} names no #atproto_labeler service")
        key = label_key(doc)
        if key is None:
            raise ConnectionEnd("identity_unavailable", f"{self.did} has no usable #atproto_label key")
        if self.key is not None and key != self.key:
            log.info("labeler key changed", extra={"source": self.source})
        self.key = key
        return endpoint

    async def _refresh_key(self) -> bool:
        """Re-read the DID document (rate-limited); True when the label key changed."""
        now = time.monotonic()
        if now - self._refreshed_at < self.refresh_interval:
            return False
        self._refreshed_at = now
        try:
            doc = await self.docs.resolve(self.did, refresh=True)
        except DidResolutionError as e:
            log.warning("labeler DID document not refreshed", extra={"source": self.source, "reason": e.reason})
            return False
        key = label_key(doc)
        if key is None or key == self.key:
            return False
        log.info("labeler key rotated", extra={"source": self.source})
        self.key = key
        return True

    # -- one frame -----------------------------------------------------------------------------------------

    async def handle(self, data: bytes) -> None:
        """Decode, check and store one websocket message. Raises ConnectionEnd on an error frame or a lost
        database."""
        try:
            parts = libipld.decode_dag_cbor_multi(data)
        except Exception as e:
            await self._store(None, [], [self._frame_refusal("label_frame_malformed", f"not DAG-CBOR: {e}", data)])
            return
        if len(parts) != 2 or type(parts[0]) is not dict or type(parts[1]) is not dict:
            await self._store(None, [], [self._frame_refusal("label_frame_malformed", "not a header and a body", data)])
            return
        header, body = parts
        op, kind = header.get("op"), header.get("t")
        if op == -1:
            name = body.get("error")
            name = name if type(name) is str else "unknown"
            if name == "FutureCursor":
                # The labeler's sequence restarted below our cursor: read its whole history again.
                self.last_seq = None
                await self._reset_cursor()
            message = body.get("message")
            raise ConnectionEnd(f"error_frame:{name[:100]}", message[:300] if type(message) is str else "")
        if op != 1:
            await self._store(None, [], [self._frame_refusal("label_frame_malformed", f"op {op!r}", data)])
            return
        if kind == "#info":
            name, message = body.get("name"), body.get("message")
            log.info(
                "labeler info", extra={"source": self.source, "info": str(name)[:100], "detail": str(message)[:300]}
            )
            return
        if kind != "#labels":
            await self._store(None, [], [self._frame_refusal("unknown_frame_type", f"frame type {kind!r}", data)])
            return
        seq, labels = body.get("seq"), body.get("labels")
        if type(seq) is not int or seq < 0 or type(labels) is not list:
            await self._store(
                None, [], [self._frame_refusal("label_frame_malformed", "#labels without seq or labels", data)]
            )
            return
        if self.last_seq is not None and seq <= self.last_seq:
            return  # redelivered after a reconnect
        if len(labels) > MAX_LABELS_PER_FRAME:
            refusal = self._frame_refusal("label_frame_malformed", f"{len(labels)} labels in one frame", b"")
            await self._store(seq, [], [refusal])
            return
        accepted, rejected = await self.check(labels)
        await self._store(seq, accepted, rejected)

    async def check(self, labels: Sequence[object]) -> tuple[list[Label], list[Rejected]]:
        """The labels of one frame, accepted or refused (with a reason)."""
        accepted: list[Label] = []
        refused: dict[int, Rejected] = {}
        unverified: list[tuple[int, Label]] = []
        for i, value in enumerate(labels):
            parsed = parse_label(value)
            if isinstance(parsed, Refusal):
                refused[i] = self._refusal(i, parsed.reason, parsed.detail, value)
            elif parsed.src != self.did:
                detail = f"src {parsed.src[:200]} is not the labeler {self.did}"
                refused[i] = self._refusal(i, "label_src_mismatch", detail, value)
            elif self.key is None or not verify_label(parsed, self.key):
                unverified.append((i, parsed))
            else:
                accepted.append(parsed)
        if unverified and await self._refresh_key():
            retry, unverified = unverified, []
            for i, parsed in retry:
                if self.key is not None and verify_label(parsed, self.key):
                    accepted.append(parsed)
                else:
                    unverified.append((i, parsed))
        for i, parsed in unverified:
            refused[i] = self._refusal(
                i, "label_bad_signature", "signature does not match the #atproto_label key", parsed.raw
            )
        return accepted, [refused[i] for i in sorted(refused)]

    def _refusal(self, position: int, reason: str, detail: str, value: object) -> Rejected:
        did = value.get("src") if isinstance(value, dict) else None
        return Rejected(
            reason=reason,
            detail=detail,
            did=did if type(did) is str else None,
            event=evidence(value),
            position=position,
        )

    def _frame_refusal(self, reason: str, detail: str, data: bytes) -> Rejected:
        return Rejected(reason=reason, detail=detail[:500], did=self.did, event=evidence(data[:2000]), position=-1)

    async def _store(self, seq: int | None, accepted: list[Label], rejected: list[Rejected]) -> None:
        conn = await self._db()
        try:
            await save_frame(conn, self.source, seq, accepted, rejected)
        except psycopg.OperationalError as e:
            await self._close_db()
            raise ConnectionEnd("database", f"{type(e).__name__}: {e}"[:300]) from None
        if seq is not None:
            self.last_seq = seq
        self.accepted += len(accepted)
        for r in rejected:
            self.rejected[r.reason] = self.rejected.get(r.reason, 0) + 1
            log.warning(
                "label rejected",
                extra={"source": self.source, "reason": r.reason, "detail": r.detail[:300], "seq": seq},
            )
        if self.metrics is not None:
            if accepted:
                self.metrics.labels.labels(labeler=self.did, outcome="accepted").inc(len(accepted))
            for r in rejected:
                self.metrics.labels.labels(labeler=self.did, outcome=r.reason).inc()
                self.metrics.events_rejected.labels(reason=r.reason).inc()
            if seq is not None:
                self.metrics.cursor.labels(source=self.source).set(seq)

    async def _reset_cursor(self) -> None:
        conn = await self._db()
        try:
            await conn.execute("DELETE FROM cursors WHERE source = %s", (self.source,))
        except psycopg.OperationalError as e:
            await self._close_db()
            raise ConnectionEnd("database", f"{type(e).__name__}: {e}"[:300]) from None

    # -- the database ----------------------------------------------------------------------------------------

    async def _db(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            try:
                self._conn = await psycopg.AsyncConnection.connect(self.conninfo, autocommit=True)
            except psycopg.OperationalError as e:
                raise ConnectionEnd("database", f"{type(e).__name__}: {e}"[:300]) from None
        return self._conn

    async def _close_db(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close()
            except Exception:
                log.debug("closing the labels connection failed", exc_info=True)


async def follow_labelers(
    conninfo: str,
    labelers: Sequence[str],
    *,
    plc_url: str,
    allow_private_hosts: bool,
    metrics: Metrics | None = None,
) -> None:
    """Follow every configured labeler until cancelled, each on its own connection, reporting connection states
    to `source_status` (rows of the labelers only: the record sources report theirs apart)."""
    if not labelers:
        return
    async with (
        DidDocuments(plc_url, allow_private_hosts=allow_private_hosts) as docs,
        SourceStatusRecorder(conninfo) as recorder,
        asyncio.TaskGroup() as tg,
    ):
        guard = NetGuard(allow_private=allow_private_hosts)
        for did in labelers:
            source = LabelerSource(did, conninfo, docs, guard=guard, metrics=metrics, status=recorder)
            # `update`, not `track`: tracking would delete the rows of the record sources' hosts.
            for state in source.connection_states.states:
                recorder.update(state)
            log.info("following labeler", extra={"source": source.source})
            tg.create_task(source.run(), name=source.source)
