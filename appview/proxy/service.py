"""The write proxy: validate, forward to the repo's own PDS, fold the accepted write at once.

Order of a write: every input check (no network), then the target (the repo's DID → its verified DID document →
`#atproto_pds` endpoint, never a host the client names; refused if private unless allowed), then the PDS, then
the fold. Nothing is folded unless the PDS said yes, so a failed or timed-out write leaves no trace in the index.
If the fold itself fails after the PDS said yes, the client still gets the PDS's answer: the write happened, and
the firehose brings it.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any, TypeVar

import msgspec
from psycopg_pool import AsyncConnectionPool

from appview.http import XrpcError
from appview.moderation import refuse_taken_down_account
from appview.proxy import checks
from appview.proxy.fold import Operation, ProxyFold, commit_event
from appview.proxy.schemas import (
    ApplyWritesInput,
    ApplyWritesOutput,
    CreateRecordInput,
    CreateRecordOutput,
    CreateResult,
    DeleteRecordInput,
    DeleteRecordOutput,
    PutRecordInput,
    PutRecordOutput,
    Record,
    UpdateResult,
    UploadBlobOutput,
    WriteCreate,
    WriteDelete,
    WriteUpdate,
)
from appview.proxy.upstream import Forwarder, UpstreamOk
from appview.ratelimit import charge_write
from indexer.atproto.identity.resolver import IdentityResolver
from indexer.atproto.lexicon import Validator
from indexer.atproto.netguard import ForbiddenHost, NetGuard
from indexer.atproto.syntax import is_cid, is_did, is_record_key, is_tid
from indexer.events import Event
from indexer.metrics import Metrics

log = logging.getLogger(__name__)

REPO = "com.atproto.repo."
T = TypeVar("T")


class Answer(msgspec.Struct, frozen=True):
    """What the PDS answered (decoded) and the headers to pass back to the client."""

    body: Any
    headers: dict[str, str]


class WriteProxy:
    def __init__(
        self,
        *,
        resolver: IdentityResolver,
        read_pool: AsyncConnectionPool,
        fold: ProxyFold,
        validator: Validator,
        metrics: Metrics,
        guard: NetGuard,
        timeout: float,
        max_blob_bytes: int,
        on_folded: Callable[[], None] = lambda: None,
    ) -> None:
        self._resolver = resolver
        # Told after each write folded here, so that this process's own reads show it at once (the page cache).
        self._on_folded = on_folded
        self._pool = read_pool
        self._fold = fold
        self._validator = validator
        self._metrics = metrics
        self._guard = guard
        self._forwarder = Forwarder(guard, timeout=timeout, metrics=metrics)
        self.max_blob_bytes = max_blob_bytes

    async def aclose(self) -> None:
        await self._forwarder.aclose()
        await self._fold.aclose()

    # -- methods --------------------------------------------------------------------------------------------

    async def create_record(self, body: CreateRecordInput, headers: Mapping[str, str]) -> Answer:
        method = "createRecord"
        with self._refusals(method):
            coll = checks.collection(self._validator, body.collection)
            if body.rkey is not None:
                checks.rkey(body.rkey)
            checks.swap_cid(body.swap_commit, "swapCommit")
            record = checks.record(self._validator, coll, body.rkey, body.record)
            did, base = await self._target(body.repo)
        sent = msgspec.structs.replace(body, repo=did, record=record)
        ok = await self._forwarder.post(REPO + method, base, msgspec.json.encode(sent), headers)
        out = self._decode(method, ok, CreateRecordOutput)
        if out.commit is not None:
            key = _rkey_of(out.uri, did, coll)
            if key is not None and (body.rkey is None or key == body.rkey):
                await self._apply(method, [_event(did, coll, key, out.commit.rev, "create", out.cid, record)])
        self._metrics.proxy_writes.labels(method, "ok").inc()
        return Answer(out, ok.headers)

    async def put_record(self, body: PutRecordInput, headers: Mapping[str, str]) -> Answer:
        """putRecord is a create or an update depending on whether the record exists, and the echo of the
        commit says which. The index answers when it holds the record live; otherwise the PDS is asked
        (getRecord) before the write, since the record may exist there unindexed. A write racing ours could
        still change the answer: then the echo adds one event at the same rev, and the record folds to the
        same content and CID either way."""
        method = "putRecord"
        with self._refusals(method):
            coll = checks.collection(self._validator, body.collection)
            key = checks.rkey(body.rkey)
            checks.swap_cid(body.swap_commit, "swapCommit")
            checks.swap_cid(body.swap_record, "swapRecord")
            record = checks.record(self._validator, coll, key, body.record)
            did, base = await self._target(body.repo)
        operation = await self._put_operation(did, base, coll, key)
        sent = msgspec.structs.replace(body, repo=did, record=record)
        ok = await self._forwarder.post(REPO + method, base, msgspec.json.encode(sent), headers)
        out = self._decode(method, ok, PutRecordOutput)
        # No commit: the PDS found the record unchanged and wrote nothing (the firehose says nothing either).
        if out.commit is not None and operation is not None and _rkey_of(out.uri, did, coll) == key:
            await self._apply(method, [_event(did, coll, key, out.commit.rev, operation, out.cid, record)])
        self._metrics.proxy_writes.labels(method, "ok").inc()
        return Answer(out, ok.headers)

    async def delete_record(self, body: DeleteRecordInput, headers: Mapping[str, str]) -> Answer:
        method = "deleteRecord"
        with self._refusals(method):
            coll = checks.collection(self._validator, body.collection)
            key = checks.rkey(body.rkey)
            checks.swap_cid(body.swap_commit, "swapCommit")
            checks.swap_cid(body.swap_record, "swapRecord")
            did, base = await self._target(body.repo)
        sent = msgspec.structs.replace(body, repo=did)
        ok = await self._forwarder.post(REPO + method, base, msgspec.json.encode(sent), headers)
        out = self._decode(method, ok, DeleteRecordOutput)
        # No commit: there was no such record, nothing was written.
        if out.commit is not None:
            await self._apply(method, [_event(did, coll, key, out.commit.rev, "delete", None, None)])
        self._metrics.proxy_writes.labels(method, "ok").inc()
        return Answer(out, ok.headers)

    async def apply_writes(self, body: ApplyWritesInput, headers: Mapping[str, str]) -> Answer:
        method = "applyWrites"
        writes: list[WriteCreate | WriteUpdate | WriteDelete] = []
        records: list[Record | None] = []
        with self._refusals(method):
            if not body.writes:
                raise XrpcError("InvalidRequest", "writes must not be empty")
            if len(body.writes) > checks.MAX_WRITES:
                raise XrpcError("InvalidRequest", f"too many writes: {len(body.writes)} (at most {checks.MAX_WRITES})")
            checks.swap_cid(body.swap_commit, "swapCommit")
            for i, write in enumerate(body.writes):
                try:
                    coll = checks.collection(self._validator, write.collection)
                    if isinstance(write, WriteDelete):
                        checks.rkey(write.rkey)
                        writes.append(write)
                        records.append(None)
                        continue
                    if write.rkey is not None:
                        checks.rkey(write.rkey)
                    record = checks.record(self._validator, coll, write.rkey, write.value)
                except XrpcError as exc:
                    raise XrpcError(exc.error, f"writes[{i}]: {exc.message}", exc.status) from None
                writes.append(msgspec.structs.replace(write, value=record))
                records.append(record)
            did, base = await self._target(body.repo)
        sent = msgspec.structs.replace(body, repo=did, writes=writes)
        ok = await self._forwarder.post(REPO + method, base, msgspec.json.encode(sent), headers)
        out = self._decode(method, ok, ApplyWritesOutput)
        if out.commit is not None and out.results is not None and len(out.results) == len(writes):
            events = _apply_writes_events(did, out.commit.rev, writes, records, out.results)
            if events is not None:
                await self._apply(method, list(events))
            else:
                log.warning("applyWrites results do not match the writes; left to the firehose", extra={"did": did})
        self._metrics.proxy_writes.labels(method, "ok").inc()
        return Answer(out, ok.headers)

    async def upload_blob(
        self,
        chunks: AsyncIterator[bytes],
        headers: Mapping[str, str],
        content_type: str,
        content_length: int | None,
    ) -> Answer:
        """The blob is streamed through chunk by chunk, never held whole; more than `max_blob_bytes` aborts the
        upload with 413. There is no repo in the request: the PDS is the one of the DID the access token was
        issued to (its `sub`, read without verification only to choose where to send it; the PDS verifies it)."""
        method = "uploadBlob"
        with self._refusals(method):
            if content_length is not None and content_length > self.max_blob_bytes:
                raise XrpcError("PayloadTooLarge", f"blob over {self.max_blob_bytes} bytes", 413)
            did = _token_subject(headers.get("authorization"))
            _, base = await self._target(did)

        async def capped() -> AsyncIterator[bytes]:
            size = 0
            async for chunk in chunks:
                size += len(chunk)
                if size > self.max_blob_bytes:
                    raise _BlobTooLarge
                if chunk:
                    yield chunk

        try:
            ok = await self._forwarder.post(
                REPO + method,
                base,
                capped(),
                headers,
                content_type=content_type,
                content_length=content_length,
                total_timeout=False,
            )
        except _BlobTooLarge:
            # The upload to the PDS is abandoned mid-body: it never completes there.
            self._metrics.proxy_writes.labels(method, "invalid").inc()
            raise XrpcError("PayloadTooLarge", f"blob over {self.max_blob_bytes} bytes", 413) from None
        out = self._decode(method, ok, UploadBlobOutput)
        self._metrics.proxy_writes.labels(method, "ok").inc()
        return Answer(out, ok.headers)

    # -- parts ----------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _refusals(self, method: str) -> Iterator[None]:
        """Counts a refusal made before the PDS is contacted."""
        try:
            yield
        except XrpcError as exc:
            outcome = "refused" if isinstance(exc, _Refused) else "rate_limited" if exc.status == 429 else "invalid"
            self._metrics.proxy_writes.labels(method, outcome).inc()
            raise

    async def _target(self, repo: str) -> tuple[str, str]:
        """(did, PDS base URL) of the repo being written."""
        ident = checks.repo_identifier(repo)
        did = ident if is_did(ident) else await self._did_of_handle(ident)
        # The repo's per-DID write limit; its slot is given back unless the PDS accepts the write.
        await charge_write(did)
        try:
            await refuse_taken_down_account(self._pool, did)
        except XrpcError as exc:
            raise _Refused(exc.error, exc.message, exc.status) from None
        endpoint = await self._resolver.pds_endpoint(did)
        if endpoint is None:
            raise XrpcError("InvalidRequest", f"no PDS found for {did}: its DID document could not be resolved")
        try:
            self._guard.check_url(endpoint)
        except ForbiddenHost as exc:
            raise _Refused("InvalidRequest", f"refusing to write to the PDS of {did}: {exc}") from None
        return did, endpoint

    async def _did_of_handle(self, handle: str) -> str:
        # Handles in the index are verified (DID document and handle resolution agree) when identities are
        # resolved, which is the default.
        async with self._pool.connection(timeout=5.0) as conn:
            cur = await conn.execute(
                "SELECT did FROM actors WHERE handle = %s AND status <> 'deleted' LIMIT 2", (handle,)
            )
            found = [str(row[0]) for row in await cur.fetchall()]
        if len(found) != 1:
            raise XrpcError("InvalidRequest", f"unknown handle {handle!r}: pass the repo's DID")
        return found[0]

    async def _put_operation(self, did: str, base: str, coll: str, key: str) -> Operation | None:
        try:
            live = await self._fold.live(did, coll, key)
        except Exception as exc:
            log.warning("record state lookup failed", extra={"did": did, "error": repr(exc)[:300]})
            live = None
        if live:
            return "update"
        status, answer = await self._forwarder.get_json(
            REPO + "getRecord", base, {"repo": did, "collection": coll, "rkey": key}
        )
        if status == 200:
            return "update"
        if status == 400 and isinstance(answer, dict) and answer.get("error") == "RecordNotFound":
            return "create"
        # Unknown: fold nothing rather than guess; the firehose brings the write.
        return None

    def _decode(self, method: str, ok: UpstreamOk, kind: type[T]) -> T:
        try:
            return msgspec.json.decode(ok.body, type=kind)
        except msgspec.DecodeError as exc:
            self._metrics.proxy_writes.labels(method, "upstream_failure").inc()
            log.warning("unreadable PDS answer to a write", extra={"method": method, "error": str(exc)[:300]})
            raise XrpcError(
                "UpstreamFailure", f"the PDS answered {method} with an unexpected body: {str(exc)[:200]}", 502
            ) from None

    async def _apply(self, method: str, events: list[Event | None]) -> None:
        if not events or any(event is None for event in events):
            return
        try:
            await self._fold.apply([event for event in events if event is not None])
            self._on_folded()
        except Exception as exc:
            self._metrics.proxy_fold_failures.labels(method).inc()
            log.error(
                "proxied write accepted by the PDS but not folded; the firehose will bring it",
                extra={"method": method, "error": repr(exc)[:500]},
            )


class _BlobTooLarge(Exception):
    pass


class _Refused(XrpcError):
    """The repo's PDS is at an address we do not connect to."""


def _rkey_of(uri: str, did: str, coll: str) -> str | None:
    """The rkey of `at://did/coll/rkey`, or None if the PDS answered about another record."""
    prefix = f"at://{did}/{coll}/"
    if not uri.startswith(prefix):
        return None
    key = uri[len(prefix) :]
    return key if is_record_key(key) else None


def _event(
    did: str, coll: str, key: str, rev: str, operation: Operation, cid: str | None, record: Record | None
) -> Event | None:
    """The commit event the firehose will carry for this write, or None if the PDS's answer is not usable
    (the write stands; the firehose brings it)."""
    if not is_tid(rev) or (cid is not None and not is_cid(cid)):
        log.warning("PDS answered a write with an invalid rev or CID", extra={"did": did, "rev": rev[:100]})
        return None
    return commit_event(did, coll, key, rev, operation, cid, record)


def _apply_writes_events(
    did: str,
    rev: str,
    writes: list[WriteCreate | WriteUpdate | WriteDelete],
    records: list[Record | None],
    results: list[Any],
) -> list[Event] | None:
    events: list[Event] = []
    for write, record, result in zip(writes, records, results, strict=True):
        event: Event | None
        if isinstance(write, WriteDelete):
            event = _event(did, write.collection, write.rkey, rev, "delete", None, None)
            if event is None:
                return None
            events.append(event)
            continue
        expected = CreateResult if isinstance(write, WriteCreate) else UpdateResult
        if not isinstance(result, expected):
            return None
        key = _rkey_of(result.uri, did, write.collection)
        if key is None or (write.rkey is not None and key != write.rkey):
            return None
        operation: Operation = "create" if isinstance(write, WriteCreate) else "update"
        event = _event(did, write.collection, key, rev, operation, result.cid, record)
        if event is None:
            return None
        events.append(event)
    return events


def _token_subject(authorization: str | None) -> str:
    """The `sub` of a `Bearer`/`DPoP` JWT, unverified (it only picks the PDS, which verifies the token)."""
    refuse = XrpcError(
        "AuthenticationRequired", "uploadBlob needs an access token (Bearer or DPoP) whose sub is the repo's DID", 401
    )
    if not authorization:
        raise refuse
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() not in ("bearer", "dpop"):
        raise refuse
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise refuse
    try:
        payload = msgspec.json.decode(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise refuse from None
    sub = payload.get("sub") if isinstance(payload, dict) else None
    if not isinstance(sub, str) or not is_did(sub):
        raise refuse
    return sub
