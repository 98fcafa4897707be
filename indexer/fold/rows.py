"""Turn parsed items into rows for the batch tables, in Python, before any SQL runs.

Everything that could make a statement fail (unparseable timestamps, NUL characters Postgres refuses in jsonb,
unencodable strings) is caught here and becomes a counted rejection instead, so one hostile record can never
fail a batch and stall ingest.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

import msgspec

from indexer.atproto.lexicon import Validator
from indexer.atproto.lexicon.formats import is_cid, is_did, is_handle, is_nsid, is_record_key, is_tid
from indexer.events import Event, Malformed, is_relevant_collection

_encode = msgspec.json.Encoder().encode

# Order of the columns of the `batch_in` temp table (see indexer/fold/sql.py).
EVENT_COLUMNS = (
    "ord",
    "source",
    "source_cursor",
    "did",
    "kind",
    "operation",
    "collection",
    "rkey",
    "rev",
    "cid",
    "record",
    "invalid",
    "created_at",
    "handle",
    "active",
    "status",
    "seq",
    "event_time",
    "dedup",
)
REJECTION_COLUMNS = (
    "source",
    "source_cursor",
    "reason",
    "detail",
    "did",
    "collection",
    "rkey",
    "rev",
    "event",
    "dedup",
)

EventRow = tuple[Any, ...]
RejectionRow = tuple[Any, ...]

MAX_REJECTED_EVENT_CHARS = 8192


class Rejected(msgspec.Struct):
    row: RejectionRow
    # Some rejected events (lexicon violations) still enter the log: their rev orders the record, so a stale
    # valid version can never come back, and `rebuild` sees them too.
    event_row: EventRow | None = None


def parse_datetime(value: object) -> dt.datetime | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed


def _digest(*parts: object) -> bytes:
    return hashlib.blake2b("\x00".join("" if p is None else str(p) for p in parts).encode(), digest_size=16).digest()


def _event_text(ev: Event | Malformed) -> str:
    if isinstance(ev, Malformed):
        text = ev.raw or ""
    else:
        try:
            text = _encode(ev).decode()
        except (msgspec.EncodeError, UnicodeError):
            text = repr(ev)
    # Postgres text cannot hold NUL; keep the evidence readable instead.
    return text.replace("\x00", "\\u0000")[:MAX_REJECTED_EVENT_CHARS]


def _delivery_free(ev: Event | Malformed) -> Event | Malformed:
    """The item without what varies between deliveries of the same input (source, position, the source's
    receive time), so a redelivered bad event is one rejection, like a redelivered good one is one event."""
    if isinstance(ev, Malformed):
        return msgspec.structs.replace(ev, source="", cursor=None)
    return msgspec.structs.replace(ev, source="", cursor=None, time_us=None)


def rejection(ev: Event | Malformed, reason: str, detail: str) -> RejectionRow:
    text = _event_text(ev)
    if isinstance(ev, Malformed):
        did, collection, rkey, rev = ev.did, None, None, None
    else:
        did, collection, rkey, rev = ev.did, ev.collection, ev.rkey, ev.rev
    clean = [None if v is None else str(v).replace("\x00", "") for v in (did, collection, rkey, rev)]
    return (
        ev.source,
        ev.cursor,
        reason,
        detail.replace("\x00", "")[:2000],
        *clean,
        text,
        _digest(reason, _event_text(_delivery_free(ev))),
    )


def malformed_row(item: Malformed) -> RejectionRow:
    return rejection(item, item.reason, item.detail)


_OPS = ("create", "update", "delete")


def _row(
    ord_: int,
    ev: Event,
    kind: str,
    dedup: bytes,
    *,
    operation: str | None = None,
    collection: str | None = None,
    rkey: str | None = None,
    rev: str | None = None,
    cid: str | None = None,
    record: str | None = None,
    invalid: str | None = None,
    created_at: dt.datetime | None = None,
    handle: str | None = None,
    active: bool | None = None,
    status: str | None = None,
    event_time: dt.datetime | None = None,
) -> EventRow:
    """A `batch_in` row, in EVENT_COLUMNS order."""
    return (
        ord_, ev.source, ev.cursor, ev.did, kind, operation, collection, rkey, rev, cid, record, invalid,
        created_at, handle, active, status, ev.seq, event_time, dedup,
    )  # fmt: skip


def event_row(ev: Event, ord_: int, validator: Validator) -> EventRow | Rejected | None:
    """The batch row for `ev`, a rejection, or None for an event that is not ours (another collection)."""
    if not is_did(ev.did):
        return Rejected(rejection(ev, "invalid_did", f"not a DID: {ev.did[:200]!r}"))
    if ev.kind == "commit":
        return _commit_row(ev, ord_, validator)
    if ev.kind == "identity":
        handle = ev.handle.lower() if ev.handle and is_handle(ev.handle) else None
        dedup = _digest("identity", ev.did, ev.seq, ev.time, handle)
        return _row(ord_, ev, "identity", dedup, handle=handle, event_time=parse_datetime(ev.time))
    if ev.kind == "account":
        if ev.active is None:
            return Rejected(rejection(ev, "missing_field", "account event without `active`"))
        status = None if ev.status is None else ev.status[:64].replace("\x00", "")
        dedup = _digest("account", ev.did, ev.seq, ev.time, ev.active, status)
        return _row(ord_, ev, "account", dedup, active=ev.active, status=status, event_time=parse_datetime(ev.time))
    return Rejected(rejection(ev, "unknown_kind", f"unknown event kind {ev.kind!r}"))


def _commit_row(ev: Event, ord_: int, validator: Validator) -> EventRow | Rejected | None:
    collection, rkey, rev, op = ev.collection, ev.rkey, ev.rev, ev.operation
    if not is_relevant_collection(collection):
        return None
    assert collection is not None
    if not is_nsid(collection):
        return Rejected(rejection(ev, "invalid_collection", f"not an NSID: {collection[:200]!r}"))
    if op not in _OPS:
        return Rejected(rejection(ev, "invalid_operation", f"unknown operation {op!r}"))
    if rev is None or not is_tid(rev):
        return Rejected(rejection(ev, "invalid_rev", f"rev is not a TID: {rev!r}"))
    if rkey is None or not is_record_key(rkey):
        return Rejected(rejection(ev, "invalid_rkey", f"not a record key: {rkey!r}"))
    dedup = _digest(ev.did, collection, rkey, rev, op)
    if op == "delete":
        return _row(ord_, ev, "commit", dedup, operation=op, collection=collection, rkey=rkey, rev=rev)
    record = ev.record
    if record is None or not isinstance(record, dict):
        return Rejected(rejection(ev, "missing_record", f"{op} without a record"))
    if not ev.cid or not is_cid(ev.cid):
        return Rejected(rejection(ev, "invalid_cid", f"{op} without a valid cid: {ev.cid!r:.200}"))
    try:
        record_json = _encode(record)
    except (msgspec.EncodeError, UnicodeError, OverflowError) as exc:
        return Rejected(rejection(ev, "unstorable_record", f"record cannot be encoded: {exc}"))
    if b"\\u0000" in record_json:
        return Rejected(rejection(ev, "unstorable_record", "record contains a NUL character"))
    invalid = validator.validate(collection, rkey, record)
    row = _row(
        ord_,
        ev,
        "commit",
        dedup,
        operation=op,
        collection=collection,
        rkey=rkey,
        rev=rev,
        cid=ev.cid,
        record=record_json.decode(),
        invalid=None if invalid is None else str(invalid),
        created_at=parse_datetime(record.get("createdAt")),
    )
    if invalid is not None:
        return Rejected(rejection(ev, "invalid_record", str(invalid)), event_row=row)
    return row
