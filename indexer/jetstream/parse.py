"""Jetstream frames to normalized `Event`s.

Every function here is total: any input, however hostile, becomes an `Event`, a `Malformed` (with a short
`reason` code) or `None` ("not ours"), never an exception.

What is ours, given the wanted collections (`indexer.fold.collections.WANTED` by default: `fm.plyr.*` and
teal.fm's plays and statuses): everything but a commit that names a collection we do not want. Such a commit is
None, broken or not, so other apps' garbage never fills the rejections; anything else that cannot become an
`Event` is a `Malformed`. A message that names no collection cannot be shown to be another app's, so it is ours
to reject: a commit without its `commit` body or its `collection`, and a line cut short before its collection. A
line that is not JSON, or not whole (a truncated capture), is judged on its text (`_foreign_text`): it is another
collection's when its first `"collection"` value, even cut short, can no longer be one we want; otherwise it is
rejected as `invalid_json`, whether or not it mentions one.

Each wire is decoded by msgspec into its own typed structs, which are mapped to one wire-independent
`_Envelope`; the `Event` is built from the envelope by one function (`_event`), so both wires accept and
reject the same things with the same reasons. A frame the typed decoder refuses goes through one fallback
(`_invalid`), which recovers the did, cursor and relevance the rejection should carry. Identifier syntax
(DID, NSID, TID, record key, CID) is `indexer.atproto.syntax`, shared with the relay firehose decoder.

Jetstream v1 (`GET /subscribe`)
    One JSON object per websocket message, `{"did", "time_us", "kind", "commit"|"identity"|"account"}`.
    The cursor is `time_us`, a microsecond timestamp local to one instance. With `compress=true` each message
    is a binary websocket message holding one zstd frame made with dictionary id 1612007021.

Jetstream v2 (`GET /xrpc/network.bsky.jetstream.subscribeEvents`)
    Learned from bluesky-social/jetstream: the lexicon
    `lexicons/network/bsky/jetstream/subscribeEvents.json` (the authoritative wire contract), `docs/README.md`
    section 5.2, the frame encoder `internal/subscribe/encoder.go` (`EncodeV2`, `EncodeV2Error`,
    `EncodeV2Info`) and the Go client's live tail `live.go`. Facts used here:

    - Framing is atproto proposal 0015, subprotocol `xrpc.v1.json` (offered via `Sec-WebSocket-Protocol`;
      it is also the default, so an empty echo means the same framing). Every frame is one JSON object,
      either `{"$type":"message","payload":{"$type":"network.bsky.jetstream.subscribeEvents#<kind>", ...}}`
      or a terminal error `{"$type":"error","error":"ConsumerTooSlow","message":"..."}` after which the
      server closes the connection.
    - `#commit` payload: `seq, did, time, rev, operation, collection, rkey` required; `record` (JSON data
      model) and `cid` absent on deletes. `#identity` / `#account` / `#sync` payloads are
      `{seq, did, time, <kind>}` where `<kind>` wraps the upstream `com.atproto.sync.subscribeRepos` event
      verbatim (its own `seq`/`time` are the relay's, not Jetstream's). `#info` is a seq-less advisory
      `{name, message}`, e.g. `OutdatedCursor` when a timestamp cursor was clamped up to the retention floor.
    - `seq` is the cursor: per-instance, monotonic, and inclusive on resume (`cursor=N` replays seq >= N, so
      the last event seen is delivered again). `cursor` values >= 1e15 are read as unix microseconds and
      translated to the first seq at or after that instant. `time` is RFC 3339 with exactly six fractional
      digits (UTC).
    - Query parameters: `kinds` (commit, identity, account, sync), `dids`, `collections` (NSIDs or `x.y.*`;
      constrains commits only), `maxMessageSizeBytes`, `zstdDictionary=<id>`. The v1 names
      (`wantedCollections`, `compress`, `requireHello`) are rejected with HTTP 400.
    - With `zstdDictionary` every frame is a binary message holding one zstd frame whose decompressed bytes
      are exactly the JSON text frame. The current dictionary id is 20260811
      (`internal/subscribe/dictionaries/subscribe_events_20260811.zdict`).
    - Pre-upgrade rejections are HTTP 400 with an XRPC envelope `{"error": name, "message": ...}`:
      `CursorTooOld` (seq cursor below the retention floor), `UnknownZstdDictionary`, `InvalidRequest`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

import msgspec
import zstandard

from indexer.atproto.syntax import is_base32_cid, is_did, is_nsid, is_record_key, is_tid
from indexer.events import Event, Malformed, Operation, Wanted, parse_time_us
from indexer.fold.collections import WANTED
from indexer.jetstream.zstd_dict import V1_DICT_ID, load_dict

RAW_LIMIT: Final = 4096
DEFAULT_MAX_MESSAGE_BYTES: Final = 4 * 1024 * 1024
ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
V2_TYPE_PREFIX: Final = "network.bsky.jetstream.subscribeEvents"
# Postgres bigint: a larger cursor or seq could not be committed.
_MAX_INT64: Final = 2**63 - 1

_KINDS: Final = frozenset(("commit", "identity", "account"))
_OPERATIONS: Final = frozenset(("create", "update", "delete"))

# ----------------------------------------------------------------------------------------------------
# the two wires, as decoded
#
# gc=False: decoded JSON cannot form reference cycles, so these need no cycle collection; it saves the
# collector's bookkeeping on every event.


class _Commit(msgspec.Struct, gc=False):
    """The fields of a commit: v1's `commit` object, or the same fields of a v2 `#commit` payload."""

    rev: str
    operation: str
    collection: str
    rkey: str
    record: dict[str, Any] | None = None
    cid: str | None = None


class _Identity(msgspec.Struct, gc=False):
    did: str
    handle: str | None = None
    seq: int | None = None
    time: str | None = None


class _Account(msgspec.Struct, gc=False):
    did: str
    active: bool
    status: str | None = None
    seq: int | None = None
    time: str | None = None


class _V1Event(msgspec.Struct, gc=False):
    did: str
    time_us: int
    kind: str
    commit: _Commit | None = None
    identity: _Identity | None = None
    account: _Account | None = None


class _V2Payload(msgspec.Struct, rename={"type": "$type"}, gc=False):
    type: str
    seq: int | None = None
    did: str | None = None
    time: str | None = None
    rev: str | None = None
    operation: str | None = None
    collection: str | None = None
    rkey: str | None = None
    record: dict[str, Any] | None = None
    cid: str | None = None
    identity: _Identity | None = None
    account: _Account | None = None
    name: str | None = None
    message: str | None = None


class _V2Frame(msgspec.Struct, rename={"type": "$type"}, gc=False):
    type: str
    payload: _V2Payload | None = None
    error: str | None = None
    message: str | None = None


class StreamNotice(msgspec.Struct, kw_only=True):
    """A v2 frame that is about the stream, not the network: an `#info` advisory (`kind="info"`, e.g.
    `OutdatedCursor`) or a terminal error frame (`kind="error"`, e.g. `ConsumerTooSlow`; the server closes the
    connection right after it)."""

    kind: Literal["info", "error"]
    name: str
    message: str | None = None


_v1_decoder = msgspec.json.Decoder(_V1Event)
_v2_decoder = msgspec.json.Decoder(_V2Frame)
_any_decoder = msgspec.json.Decoder()


# ----------------------------------------------------------------------------------------------------
# decompression


class DecompressError(Exception):
    """`reason` is "bad_compression" or "oversize"."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


class Decompressor:
    """Decompresses single-frame zstd messages made with one Jetstream dictionary.

    Holds one `ZstdDecompressor` (so its context is reused) and is therefore not thread-safe: use one per
    source. Output is capped at `max_output_size`; a frame header that declares more is refused before
    anything is allocated, because zstandard trusts a declared content size over `max_output_size`."""

    def __init__(self, dict_id: int = V1_DICT_ID, *, max_output_size: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self.dict_id = dict_id
        self.max_output_size = max_output_size
        self._dctx = zstandard.ZstdDecompressor(dict_data=load_dict(dict_id))

    def decompress(self, data: bytes) -> bytes:
        try:
            params = zstandard.get_frame_parameters(data)
        except zstandard.ZstdError as e:
            raise DecompressError("bad_compression", f"not a zstd frame: {e}") from None
        if params.dict_id not in (0, self.dict_id):
            raise DecompressError(
                "bad_compression",
                f"frame needs zstd dictionary {params.dict_id}, this stream uses {self.dict_id}",
            )
        size = params.content_size
        if size < zstandard.CONTENTSIZE_ERROR and size > self.max_output_size:
            raise DecompressError(
                "oversize", f"frame declares {size} decompressed bytes, limit is {self.max_output_size}"
            )
        try:
            return self._dctx.decompress(data, max_output_size=self.max_output_size)
        except zstandard.ZstdError as e:
            raise DecompressError("bad_compression", f"zstd frame failed to decompress: {e}") from None


_local = threading.local()


def decompress(data: bytes) -> bytes:
    """Decompress one Jetstream v1 `compress=true` message. Raises `DecompressError`; sources use their own
    `Decompressor` and `malformed_from_decompress_error` instead."""
    dec: Decompressor | None = getattr(_local, "v1", None)
    if dec is None:
        dec = _local.v1 = Decompressor(V1_DICT_ID)
    return dec.decompress(data)


def malformed_from_decompress_error(err: DecompressError, data: bytes, source: str) -> Malformed:
    # Compressed bytes are not text; keep a hex prefix so an operator can still look at the frame header.
    return Malformed(reason=err.reason, detail=err.detail, raw=data[:256].hex(), source=source)


# ----------------------------------------------------------------------------------------------------
# what both wires become


@dataclass(frozen=True, slots=True)
class _Wire:
    """What still differs between the wires once an event is in an envelope: the wording of a few rejections,
    and where an event that failed typed decoding keeps its fields."""

    unit: str  # what one message is called: "event" (v1) or "frame" (v2)
    missing_body: Mapping[str, str]  # kind -> detail when the kind's object is absent
    # untyped message -> (commit collection or None, did, cursor), each as found, unchecked
    salvage: Callable[[dict[str, Any]], tuple[Any, Any, Any]]


class _Envelope(msgspec.Struct, gc=False):
    """One event, whichever wire carried it. `cursor` is the source position (v1 `time_us`, v2 `seq`) and
    `time_us` the event time (v1 `time_us`, v2 `time`); both are already range-checked. For a v2 payload the
    kind is one of `_KINDS` and a commit's fields are all present; v1 leaves both checks to `_event`."""

    wire: _Wire
    kind: str
    did: str
    cursor: int
    time_us: int
    commit: _Commit | None
    identity: _Identity | None
    account: _Account | None


class _Bad(Exception):
    """Internal short-circuit carrying a reason; never escapes this module."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail


def _raw_text(data: bytes) -> str:
    return data[:RAW_LIMIT].decode("utf-8", "replace")


def _as_bytes(data: bytes | bytearray | memoryview | str) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8", "surrogatepass")
    return bytes(data) if not isinstance(data, bytes) else data


def _position(value: Any) -> int | None:
    """A cursor (v1 `time_us`, v2 `seq`) if `value` is one, else None."""
    return value if type(value) is int and 0 < value <= _MAX_INT64 else None


def _valid_int(v: int | None) -> bool:
    return v is None or 0 <= v <= _MAX_INT64


# DIDs and collections repeat across events, so remembering the ones already checked skips most syntax checks.
# Bounded by clearing: a hostile stream of fresh values costs one check each, never unbounded memory.
_CACHE_LIMIT: Final = 100_000
_good_dids: set[str] = set()
_good_collections: set[str] = set()


def _valid_did(did: str) -> bool:
    if did in _good_dids:
        return True
    if not is_did(did):
        return False
    if len(_good_dids) >= _CACHE_LIMIT:
        _good_dids.clear()
    _good_dids.add(did)
    return True


def _valid_collection(collection: str) -> bool:
    if collection in _good_collections:
        return True
    if not is_nsid(collection):
        return False
    if len(_good_collections) >= _CACHE_LIMIT:
        _good_collections.clear()
    _good_collections.add(collection)
    return True


def _event(env: _Envelope, source: str, wanted: Wanted | None) -> Event | None:
    """The Event for `env`, or None for a commit of a collection `wanted` does not want.
    Raises `_Bad` for an event that is ours but invalid."""
    kind = env.kind
    did = env.did
    if kind == "commit":
        c = env.commit
        if c is None:
            raise _Bad("missing_field", env.wire.missing_body[kind])
        collection = c.collection
        if wanted is not None and not wanted(collection):
            return None
        operation = c.operation
        if not _valid_did(did):
            raise _Bad("invalid_did", f"did {did[:100]!r} is not a DID")
        if operation not in _OPERATIONS:
            raise _Bad("invalid_operation", f"commit operation {operation[:50]!r} is not create, update or delete")
        if not is_tid(c.rev):
            raise _Bad("invalid_rev", f"commit rev {c.rev[:50]!r} is not a TID")
        if not _valid_collection(collection):
            raise _Bad("invalid_collection", f"collection {collection[:100]!r} is not an NSID")
        if not is_record_key(c.rkey):
            raise _Bad("invalid_rkey", f"record key {c.rkey[:100]!r} is not valid")
        record: dict[str, Any] | None = None
        cid: str | None = None
        if operation != "delete":
            record, cid = c.record, c.cid
            if record is None:
                raise _Bad("missing_record", f"commit {operation} without a record")
            if cid is None:
                raise _Bad("missing_cid", f"commit {operation} without a cid")
            if not is_base32_cid(cid):
                raise _Bad("invalid_cid", f"cid {cid[:100]!r} is not a base32 CIDv1")
        return Event(
            kind="commit",
            did=did,
            source=source,
            cursor=env.cursor,
            time_us=env.time_us,
            operation=cast(Operation, operation),
            collection=collection,
            rkey=c.rkey,
            rev=c.rev,
            cid=cid,
            record=record,
        )
    if not _valid_did(did):
        raise _Bad("invalid_did", f"did {did[:100]!r} is not a DID")
    if kind == "identity":
        i = env.identity
        if i is None:
            raise _Bad("missing_field", env.wire.missing_body[kind])
        if i.did != did:
            raise _Bad("did_mismatch", f"identity.did {i.did[:100]!r} differs from the event did")
        if not _valid_int(i.seq):
            raise _Bad("invalid_field", f"identity.seq {i.seq} is out of range")
        return Event(
            kind="identity",
            did=did,
            source=source,
            cursor=env.cursor,
            time_us=env.time_us,
            seq=i.seq,
            time=i.time,
            handle=i.handle,
        )
    if kind == "account":
        a = env.account
        if a is None:
            raise _Bad("missing_field", env.wire.missing_body[kind])
        if a.did != did:
            raise _Bad("did_mismatch", f"account.did {a.did[:100]!r} differs from the event did")
        if not _valid_int(a.seq):
            raise _Bad("invalid_field", f"account.seq {a.seq} is out of range")
        return Event(
            kind="account",
            did=did,
            source=source,
            cursor=env.cursor,
            time_us=env.time_us,
            seq=a.seq,
            time=a.time,
            active=a.active,
            status=a.status,
        )
    raise _Bad("unknown_kind", f"unknown event kind {kind[:50]!r}")


def _rejected(bad: _Bad, b: bytes, source: str, did: str | None, cursor: int | None) -> Malformed:
    return Malformed(reason=bad.reason, detail=bad.detail, raw=_raw_text(b), did=did, cursor=cursor, source=source)


def _not_json(b: bytes, source: str, err: Exception) -> Malformed:
    return Malformed(reason="invalid_json", detail=f"not valid JSON: {err}", raw=_raw_text(b), source=source)


_COLLECTION_KEY: Final = b'"collection"'
# An NSID is at most 317 characters; the window also covers the whitespace a hostile writer may add.
_COLLECTION_WINDOW: Final = 400


def _named_collection(b: bytes) -> bytes | None:
    """The value of the first `"collection"` key of a text that may not be JSON, or as much of it as the text
    holds when it ends inside it; None when there is no such key. Both wires write a commit's collection before
    its record, so a key of the record itself comes later."""
    at = b.find(_COLLECTION_KEY)
    if at < 0:
        return None
    rest = b[at + len(_COLLECTION_KEY) : at + len(_COLLECTION_KEY) + _COLLECTION_WINDOW].lstrip()
    if not rest.startswith(b":"):
        return None
    rest = rest[1:].lstrip()
    if not rest.startswith(b'"'):
        return None
    end = rest.find(b'"', 1)
    return rest[1:] if end < 0 else rest[1:end]


def _foreign_text(b: bytes, wanted: Wanted) -> bool:
    """Whether a text that may not be JSON names a collection we do not want: its first `"collection"` value,
    even cut short, can no longer be one of ours."""
    named = _named_collection(b)
    return named is not None and not wanted.may_be(named)


def _cheap_foreign(b: bytes, wanted: Wanted | None, commit_mark: bytes) -> bool:
    """The test before decoding, which spares a JSON decode of every other collection's commit: a commit whose
    text names another collection and never mentions one we want is not ours (Jetstream writes NSIDs
    unescaped). Whatever else is decoded, and judged exactly."""
    if wanted is None:
        return False
    return commit_mark in b and not any(m in b for m in wanted.markers) and _foreign_text(b, wanted)


def _unreadable(b: bytes, source: str, err: Exception, wanted: Wanted | None) -> Malformed | None:
    """A text that is not (whole) JSON: None when it names another collection (`_foreign_text`), else
    `invalid_json`."""
    if wanted is not None and _foreign_text(b, wanted):
        return None
    return _not_json(b, source, err)


def _validation_reason(message: str) -> str:
    if message.startswith("Object missing required field"):
        return "missing_field"
    return "invalid_field"


def _invalid(b: bytes, source: str, message: str, wanted: Wanted | None, wire: _Wire) -> Malformed | None:
    """The typed decode failed with `message`: recover what can be known (did, cursor, relevance) from an
    untyped decode. None for a commit of a collection we do not want, which is not ours even when broken."""
    try:
        obj = _any_decoder.decode(b)
    except (msgspec.DecodeError, UnicodeDecodeError) as e:  # bad UTF-8 in a field the typed decoder skipped
        return _unreadable(b, source, e, wanted)
    if not isinstance(obj, dict):
        return Malformed(
            reason="not_object",
            detail=f"{wire.unit} is not a JSON object: {message}",
            raw=_raw_text(b),
            source=source,
        )
    collection, did, cursor = wire.salvage(obj)
    if wanted is not None and isinstance(collection, str) and not wanted(collection):
        return None
    return Malformed(
        reason=_validation_reason(message),
        detail=message,
        raw=_raw_text(b),
        did=did if isinstance(did, str) else None,
        cursor=_position(cursor),
        source=source,
    )


# ----------------------------------------------------------------------------------------------------
# v1

_V1_COMMIT_MARK: Final = b'"kind":"commit"'


def _v1_salvage(obj: dict[str, Any]) -> tuple[Any, Any, Any]:
    commit = obj.get("commit")
    collection = commit.get("collection") if obj.get("kind") == "commit" and isinstance(commit, dict) else None
    return collection, obj.get("did"), obj.get("time_us")


_V1: Final = _Wire(
    unit="event",
    missing_body={
        "commit": "commit event without a `commit` object",
        "identity": "identity event without an `identity` object",
        "account": "account event without an `account` object",
    },
    salvage=_v1_salvage,
)


def parse_v1(
    data: bytes | bytearray | memoryview | str,
    source: str = "jetstream",
    *,
    wanted: Wanted | None = WANTED,
) -> Event | Malformed | None:
    """One Jetstream v1 JSON event. Returns None for a commit of a collection `wanted` does not want (None keeps
    every collection). Identity and account events are always kept."""
    b = _as_bytes(data)
    if _cheap_foreign(b, wanted, _V1_COMMIT_MARK):
        # Frames that mention a wanted collection are decoded and filtered exactly in `_event`.
        return None
    try:
        ev = _v1_decoder.decode(b)
    except msgspec.ValidationError as e:
        return _invalid(b, source, str(e), wanted, _V1)
    except (msgspec.DecodeError, UnicodeDecodeError) as e:  # bad UTF-8 in a string raises the latter
        return _unreadable(b, source, e, wanted)
    cursor = _position(ev.time_us)
    try:
        if cursor is None:
            raise _Bad("invalid_field", f"time_us {ev.time_us} is out of range")
        env = _Envelope(_V1, ev.kind, ev.did, cursor, cursor, ev.commit, ev.identity, ev.account)
        return _event(env, source, wanted)
    except _Bad as bad:
        return _rejected(bad, b, source, ev.did, cursor)


# ----------------------------------------------------------------------------------------------------
# v2

_V2_COMMIT_MARK: Final = b'subscribeEvents#commit"'


def _v2_kind(type_: str) -> str | None:
    """`network.bsky.jetstream.subscribeEvents#commit` (or the bare `#commit` form) to `commit`."""
    head, sep, frag = type_.partition("#")
    if not sep or head not in ("", V2_TYPE_PREFIX):
        return None
    return frag


def _v2_salvage(obj: dict[str, Any]) -> tuple[Any, Any, Any]:
    payload = obj.get("payload")
    if not isinstance(payload, dict):
        return None, None, None
    type_ = payload.get("$type")
    is_commit = isinstance(type_, str) and _v2_kind(type_) == "commit"
    return payload.get("collection") if is_commit else None, payload.get("did"), payload.get("seq")


_V2: Final = _Wire(
    unit="frame",
    missing_body={
        "identity": "#identity payload without `identity`",
        "account": "#account payload without `account`",
    },
    salvage=_v2_salvage,
)


def _missing(kind: str, fields: tuple[tuple[str, object], ...]) -> _Bad:
    absent = [name for name, value in fields if value is None]
    return _Bad("missing_field", f"#{kind} payload without {', '.join(absent)}")


def _v2_envelope(p: _V2Payload, kind: str | None, seq: int | None) -> _Envelope:
    """The envelope of a `#commit`, `#identity` or `#account` payload. Raises `_Bad` for what only a v2
    payload can get wrong: an unsupported kind, a missing or invalid seq or time, missing commit fields."""
    if kind is None or kind not in _KINDS:
        raise _Bad("unsupported_kind" if kind == "sync" else "unknown_kind", f"unsupported message {p.type[:100]!r}")
    did, time = p.did, p.time
    if did is None or p.seq is None or time is None:
        raise _missing(kind, (("did", did), ("seq", p.seq), ("time", time)))
    if seq is None:
        raise _Bad("invalid_field", f"seq {p.seq} is out of range")
    time_us = parse_time_us(time)
    if time_us is None:
        raise _Bad("invalid_time", f"time {time[:50]!r} is not an RFC 3339 datetime with offset")
    commit = None
    if kind == "commit":
        rev, operation, collection, rkey = p.rev, p.operation, p.collection, p.rkey
        if rev is None or operation is None or collection is None or rkey is None:
            raise _missing(kind, (("rev", rev), ("operation", operation), ("collection", collection), ("rkey", rkey)))
        commit = _Commit(rev, operation, collection, rkey, p.record, p.cid)
    return _Envelope(_V2, kind, did, seq, time_us, commit, p.identity, p.account)


def parse_v2(
    data: bytes | bytearray | memoryview | str,
    source: str,
    *,
    wanted: Wanted | None = WANTED,
) -> Event | Malformed | StreamNotice | None:
    """One Jetstream v2 (`subscribeEvents`, xrpc.v1.json) frame. `Event.cursor` is Jetstream's `seq`;
    `Event.time_us` is the envelope `time`; for identity/account `Event.seq`/`Event.time` are the upstream
    relay's. `#info` and error frames become a `StreamNotice`; `#sync`, which `Event` cannot express yet,
    becomes a `Malformed` with reason `unsupported_kind` so it is counted and kept rather than lost."""
    b = _as_bytes(data)
    if _cheap_foreign(b, wanted, _V2_COMMIT_MARK):
        return None
    try:
        frame = _v2_decoder.decode(b)
    except msgspec.ValidationError as e:
        return _invalid(b, source, str(e), wanted, _V2)
    except (msgspec.DecodeError, UnicodeDecodeError) as e:  # bad UTF-8 in a string raises the latter
        return _unreadable(b, source, e, wanted)

    if frame.type == "error":
        return StreamNotice(kind="error", name=frame.error or "Unknown", message=frame.message)
    if frame.type != "message":
        return Malformed(
            reason="unknown_frame",
            detail=f"unknown frame $type {frame.type[:50]!r}",
            raw=_raw_text(b),
            source=source,
        )
    p = frame.payload
    if p is None:
        return Malformed(
            reason="missing_field", detail="message frame without a payload", raw=_raw_text(b), source=source
        )
    kind = _v2_kind(p.type)
    if kind == "info":
        return StreamNotice(kind="info", name=p.name or "Unknown", message=p.message)
    seq = _position(p.seq)
    try:
        return _event(_v2_envelope(p, kind, seq), source, wanted)
    except _Bad as bad:
        return _rejected(bad, b, source, p.did, seq)


# ----------------------------------------------------------------------------------------------------
# positions of frames that are otherwise skipped


class _V1Position(msgspec.Struct):
    time_us: int


class _V2PositionPayload(msgspec.Struct):
    seq: int | None = None
    time: str | None = None


class _V2Position(msgspec.Struct):
    payload: _V2PositionPayload | None = None


_v1_position_decoder = msgspec.json.Decoder(_V1Position)
_v2_position_decoder = msgspec.json.Decoder(_V2Position)


def frame_cursor_v1(data: bytes) -> int | None:
    """`time_us` of a v1 frame without building the event, or None if the frame has none."""
    try:
        t = _v1_position_decoder.decode(data).time_us
    except (msgspec.MsgspecError, UnicodeDecodeError):
        return None
    return _position(t)


def frame_position_v2(data: bytes) -> tuple[int | None, int | None]:
    """(`seq`, `time` in unix microseconds) of a v2 message frame, each None when absent or invalid."""
    try:
        p = _v2_position_decoder.decode(data).payload
    except (msgspec.MsgspecError, UnicodeDecodeError):
        return None, None
    if p is None:
        return None, None
    return _position(p.seq), (parse_time_us(p.time) if p.time is not None else None)
