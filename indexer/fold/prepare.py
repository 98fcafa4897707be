"""A batch's items turned into the rows `apply` writes, in Python, before any SQL runs.

Contract (`Preparer.prepare`):
- every item is accounted for, exactly once, in `Prepared`: an event becomes an event row (`events`), a
  rejection, both (a record its lexicon refuses still enters the log: its rev orders the record; it is counted
  in `invalid_events` and, as an item, among the rejections), or nothing (`ignored`: a collection we do not
  namespace); a `Malformed` becomes a rejection; a `Checkpoint` only moves its source's cursor (`checkpoints`).
  So `items == len(events) - invalid_events + len(rejections) + ignored + checkpoints`;
- everything that could make a statement fail (unparseable timestamps, NUL characters Postgres refuses in jsonb,
  unencodable strings) is caught here and becomes a counted rejection instead, so one hostile record can never
  fail a batch and stall ingest;
- a redelivered item yields the same dedup key as its first delivery, for events and rejections alike;
- the cursors are the last position per source in the batch: `apply` saves them with the batch.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from indexer.atproto.identity.handles import HandleVerifier, TrustingVerifier
from indexer.atproto.lexicon import Validator
from indexer.atproto.syntax import is_cid, is_did, is_handle, is_nsid, is_record_key, is_tid
from indexer.audio import refs as audio_refs
from indexer.events import Event, Item, Malformed, parse_datetime
from indexer.fold.collections import BY_NSID, WANTED, bsky_profile, track

log = logging.getLogger(__name__)

_encode = msgspec.json.Encoder().encode

EventRow = tuple[Any, ...]
RejectionRow = tuple[Any, ...]

MAX_REJECTED_EVENT_CHARS = 8192


class Rejected(msgspec.Struct):
    row: RejectionRow
    # Some rejected events (lexicon violations) still enter the log: their rev orders the record, so a stale
    # valid version can never come back, and `rebuild` sees them too.
    event_row: EventRow | None = None


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


def _created_field(collection: str) -> str:
    """The record field that holds its creation time: `createdAt`, unless the collection names another (a play's
    `playedTime`, a status's `time`)."""
    known = BY_NSID.get(collection)
    return "createdAt" if known is None else known.created_field


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
    """A `batch_in` row, in `sql.EVENT_COLUMNS` order."""
    return (
        ord_, ev.source, ev.cursor, ev.did, kind, operation, collection, rkey, rev, cid, record, invalid,
        created_at, handle, active, status, ev.seq, event_time, dedup,
    )  # fmt: skip


def event_row(
    ev: Event, ord_: int, validator: Validator, horizon: dt.datetime | None = None
) -> EventRow | Rejected | None:
    """The batch row for `ev`, a rejection, or None for an event that is not ours (another collection).
    `horizon`: the latest network time believed (`believed_until`), by default as of now."""
    if not is_did(ev.did):
        return Rejected(rejection(ev, "invalid_did", f"not a DID: {ev.did[:200]!r}"))
    if ev.kind == "commit":
        return _commit_row(ev, ord_, validator, horizon or believed_until())
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


def _commit_row(ev: Event, ord_: int, validator: Validator, horizon: dt.datetime) -> EventRow | Rejected | None:
    collection, rkey, rev, op = ev.collection, ev.rkey, ev.rev, ev.operation
    if not WANTED(collection):
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
    event_time = _commit_time(ev, horizon)
    if op == "delete":
        return _row(
            ord_, ev, "commit", dedup, operation=op, collection=collection, rkey=rkey, rev=rev, event_time=event_time
        )
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
        created_at=parse_datetime(record.get(_created_field(collection))),
        event_time=event_time,
    )
    if invalid is not None:
        return Rejected(rejection(ev, "invalid_record", str(invalid)), event_row=row)
    return row


# -- one batch ------------------------------------------------------------------------------------------------


@dataclass
class Prepared:
    """One batch, ready for `indexer.fold.apply.apply`."""

    items: int
    events: list[EventRow]
    rejections: list[RejectionRow]
    # source -> (last cursor in the batch, its event time)
    cursors: dict[str, tuple[int, dt.datetime | None]]
    # Events that are not ours (another collection), counted and dropped.
    ignored: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    # Tracks in the batch whose audioUrl names audio stored here: checked once the batch is folded.
    own_audio: list[audio_refs.OwnAudio] = field(default_factory=list)
    # Rows of `events` that are also rejections: records their lexicon refuses, logged for their rev.
    invalid_events: int = 0
    checkpoints: int = 0
    # Items (events or rejections) of Bluesky profiles: kept only for actors the index knows, which the fold
    # decides (indexer/fold/collections/bsky_profile.py); batches without any skip that step.
    bsky_profiles: int = 0


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _event_time(item: Item) -> dt.datetime | None:
    time_us = getattr(item, "time_us", None)
    if isinstance(time_us, int) and 0 < time_us < 253402300799_000000:
        # Exact to the microsecond (a float division is not, for today's timestamps).
        return _EPOCH + dt.timedelta(microseconds=time_us)
    return None


# How far ahead of our clock a commit's network time may be and still be believed (clocks drift a little).
MAX_CLOCK_AHEAD = dt.timedelta(minutes=10)


def believed_until() -> dt.datetime:
    """The latest network time a commit may claim and be believed (`_commit_time`), as of now."""
    return dt.datetime.now(dt.UTC) + MAX_CLOCK_AHEAD


def _commit_time(ev: Event, horizon: dt.datetime) -> dt.datetime | None:
    """The network's time for a commit (Jetstream `time_us`, the firehose commit's `time`), which orders the
    record in feeds (see `ARRIVAL` in indexer/fold/collections/projection.py). None when the source gives none
    (backfill) or when it lies beyond `horizon`, in the future: a source that could claim one (a PDS followed
    directly sets its own `time`) would otherwise rank its records above everything that arrives later, for as
    long as that lasts."""
    at = _event_time(ev)
    if at is None or at > horizon:
        return None
    return at


class Preparer:
    def __init__(
        self,
        validator: Validator,
        *,
        verifier: HandleVerifier | None = None,
        own_audio_host: str | None = None,
    ) -> None:
        self._validator = validator
        # Decides whether the handle an identity event claims counts (None: trusted as delivered).
        self._verifier = verifier or TrustingVerifier()
        # Our public host: tracks whose audioUrl names an object uploaded here are checked at ingest (flagged
        # when the object is missing). A check beside the fold, never part of it: projections do not depend on it.
        self._own_audio_host = own_audio_host

    async def prepare(self, items: Sequence[Item]) -> Prepared:
        events: list[EventRow] = []
        rejections: list[RejectionRow] = []
        cursors: dict[str, tuple[int, dt.datetime | None]] = {}
        ignored = invalid_events = checkpoints = 0
        by_reason: Counter[str] = Counter()
        horizon = believed_until()  # once per batch: a batch is prepared in well under a second
        # Each source's last positioned item: its cursor and event time are what the batch saves.
        last: dict[str, Item] = {}
        identities = [it for it in items if isinstance(it, Event) and it.kind == "identity"]
        if identities:
            verified = await asyncio.gather(*(self._verifier.verify(ev.did, ev.handle) for ev in identities))
            for ev, handle in zip(identities, verified, strict=True):
                ev.handle = handle
        for ord_, item in enumerate(items):
            if isinstance(item, Event):
                row = event_row(item, ord_, self._validator, horizon)
                if row is None:
                    ignored += 1
                elif isinstance(row, Rejected):
                    rejections.append(row.row)
                    by_reason[row.row[2]] += 1
                    if row.event_row is not None:
                        events.append(row.event_row)
                        invalid_events += 1
                else:
                    events.append(row)
            elif isinstance(item, Malformed):
                rejections.append(malformed_row(item))
                by_reason[item.reason] += 1
            else:
                checkpoints += 1
            if item.cursor is not None and item.source:
                last[item.source] = item
        for source, item in last.items():
            assert item.cursor is not None
            cursors[source] = (item.cursor, _event_time(item))
        if rejections:
            # One line per batch, not per item: a flood of bad input must not become a flood of logs.
            sample = rejections[0]
            log.warning(
                "rejected items",
                extra={
                    "by_reason": dict(by_reason),
                    "sample_reason": sample[2],
                    "sample_detail": sample[3][:300],
                    "sample_did": sample[4],
                },
            )
        return Prepared(
            len(items),
            events,
            rejections,
            cursors,
            ignored,
            by_reason,
            self._own_audio(items),
            invalid_events=invalid_events,
            checkpoints=checkpoints,
            bsky_profiles=sum(1 for r in events if r[6] == bsky_profile.NSID)
            + sum(1 for r in rejections if r[5] == bsky_profile.NSID),
        )

    def _own_audio(self, items: Sequence[Item]) -> list[audio_refs.OwnAudio]:
        host = self._own_audio_host
        if host is None:
            return []
        own: set[audio_refs.OwnAudio] = set()
        for it in items:
            if isinstance(it, Event) and it.collection == track.NSID and it.record is not None and it.rkey:
                url = it.record.get("audioUrl")
                if audio_refs.mentions_own(url, host):
                    sha256 = audio_refs.own_sha256(str(url), host)
                    if sha256 is not None:
                        own.add((it.did, it.rkey, str(url), sha256))
        return sorted(own)


def refused(item: Event | Malformed, error: str) -> Prepared:
    """The batch that keeps one item Postgres refused, as an `unstorable` rejection, and moves its cursor."""
    return Prepared(
        items=1,
        events=[],
        rejections=[rejection(item, "unstorable", f"refused by the database: {error}"[:2000])],
        cursors={item.source: (item.cursor, None)} if item.cursor is not None and item.source else {},
        by_reason=Counter({"unstorable": 1}),
    )
