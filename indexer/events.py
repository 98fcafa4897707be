"""The normalized event every source produces and the indexer consumes.

Sources (Jetstream v1/v2, raw firehose, backfill, capture replay) differ on the wire; past the parser they are
all `Event`. A frame that cannot become an `Event` becomes a `Malformed` with a reason, which is counted and kept
in the rejections table: hostile input is never fatal and never silently dropped.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any, Literal

import msgspec

Kind = Literal["commit", "identity", "account"]
Operation = Literal["create", "update", "delete"]

# Our own namespace: every collection under it is ours, known or not (a record no lexicon describes is logged and
# rejected, evidence of what was refused), and the write proxy writes only there.
OWN_NAMESPACE = "fm.plyr."


class Event(msgspec.Struct, kw_only=True):
    """One repository event, flattened. Fields not used by a kind stay None."""

    kind: Kind
    did: str
    # Which source delivered it ("jetstream", "jetstream-v2:host", "firehose:host", "replay:<file>",
    # "backfill", ...); cursors are committed per source.
    source: str = ""
    # Position of this event in its source (time_us for Jetstream v1, seq for v2 and the firehose, line
    # number for a replayed file). Only the batch writer reads it, to commit the source cursor.
    cursor: int | None = None
    time_us: int | None = None
    # commit
    operation: Operation | None = None
    collection: str | None = None
    rkey: str | None = None
    rev: str | None = None
    cid: str | None = None
    record: dict[str, Any] | None = None
    # identity and account: relay seq and the originating host's timestamp, used to order status/handle changes
    seq: int | None = None
    time: str | None = None
    # identity
    handle: str | None = None
    # account
    active: bool | None = None
    status: str | None = None


class Malformed(msgspec.Struct, kw_only=True):
    """A frame or line that could not be turned into an Event. `reason` is a short machine-friendly code
    (e.g. "invalid_json", "missing_field") and `detail` the human explanation."""

    reason: str
    detail: str
    source: str = ""
    raw: str | None = None
    did: str | None = None
    cursor: int | None = None


class Checkpoint(msgspec.Struct, kw_only=True):
    """A source position with nothing to store (e.g. a run of frames of other collections). The writer commits
    it with the next batch, so the cursor moves only once everything delivered before it is durable."""

    source: str
    cursor: int


Item = Event | Malformed | Checkpoint


class Wanted:
    """Which commits are ours: whole namespaces (a prefix ending in `.`, e.g. `fm.plyr.`: every collection under
    it) and single collections of other apps' namespaces (e.g. `fm.teal.feed.play`: another app's other records
    are not ours to store or to reject). The registry of projected collections
    (`indexer.fold.collections.WANTED`) builds the one instance every source filters with; a `Wanted` is also
    the predicate `want(collection) -> bool` the firehose, CAR and backfill code take."""

    __slots__ = ("markers", "namespaces", "nsids", "patterns")

    def __init__(self, namespaces: Iterable[str] = (), nsids: Iterable[str] = ()) -> None:
        self.namespaces: tuple[str, ...] = tuple(dict.fromkeys(namespaces))
        if not all(n.endswith(".") and len(n) > 1 for n in self.namespaces):
            raise ValueError(f"a namespace ends with '.': {self.namespaces}")
        self.nsids: frozenset[str] = frozenset(n for n in nsids if not n.startswith(self.namespaces))
        # As Jetstream takes them (`wantedCollections` / `collections`: NSIDs, or `x.y.*` for a namespace), in a
        # stable order so requests are reproducible.
        self.patterns: tuple[str, ...] = (*(n + "*" for n in self.namespaces), *sorted(self.nsids))
        # What a frame that holds one of ours must contain (Jetstream writes NSIDs unescaped).
        self.markers: tuple[bytes, ...] = tuple(p.rstrip("*").encode() for p in self.patterns)

    def __call__(self, collection: str | None) -> bool:
        return collection is not None and (collection in self.nsids or collection.startswith(self.namespaces))

    def may_be(self, named: bytes) -> bool:
        """Whether `named`, a collection name read from text that may be cut short, is or may still become one
        of ours."""
        for marker in self.markers:
            if named.startswith(marker) if marker.endswith(b".") else named == marker:
                return True
            if marker.startswith(named):
                return True
        return False

    def __repr__(self) -> str:
        return f"Wanted({', '.join(self.patterns)})"


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)


def parse_datetime(value: object) -> dt.datetime | None:
    """An RFC 3339 timestamp with a zone (an event's `time`, a record's `createdAt`) as an aware datetime, else
    None: whatever a client wrote there, the index stores a time or nothing."""
    if type(value) is not str or len(value) > 64:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def parse_time_us(value: Any) -> int | None:
    """Microseconds since the epoch for an RFC 3339 timestamp with a zone (the `time` of relay and Jetstream
    events), else None."""
    parsed = parse_datetime(value)
    return None if parsed is None else (parsed - _EPOCH) // _MICROSECOND
