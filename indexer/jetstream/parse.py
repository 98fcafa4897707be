"""Jetstream frames to normalized `Event`s.

Every function here is total: any input, however hostile, becomes an `Event`, a `Malformed` (with a short
`reason` code) or `None` ("not ours"), never an exception.

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

import functools
import re
import threading
from typing import Any, Final, Literal, cast

import msgspec
import zstandard

from indexer.events import COLLECTION_PREFIX, Event, Malformed, Operation, parse_time_us
from indexer.jetstream.zstd_dict import V1_DICT_ID, load_dict

RAW_LIMIT: Final = 4096
DEFAULT_MAX_MESSAGE_BYTES: Final = 4 * 1024 * 1024
ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
V2_TYPE_PREFIX: Final = "network.bsky.jetstream.subscribeEvents"
# Postgres bigint: a larger cursor or seq could not be committed.
_MAX_INT64: Final = 2**63 - 1

_TID = re.compile(r"[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}")
_DID = re.compile(r"did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]")
_RKEY = re.compile(r"[A-Za-z0-9._:~-]{1,512}")
_NSID = re.compile(r"[a-zA-Z0-9-]+(\.[a-zA-Z0-9-]+)+")
_OPERATIONS: Final = frozenset(("create", "update", "delete"))


class _Commit(msgspec.Struct):
    rev: str
    operation: str
    collection: str
    rkey: str
    record: dict[str, Any] | None = None
    cid: str | None = None


class _Identity(msgspec.Struct):
    did: str
    handle: str | None = None
    seq: int | None = None
    time: str | None = None


class _Account(msgspec.Struct):
    did: str
    active: bool
    status: str | None = None
    seq: int | None = None
    time: str | None = None


class _V1Event(msgspec.Struct):
    did: str
    time_us: int
    kind: str
    commit: _Commit | None = None
    identity: _Identity | None = None
    account: _Account | None = None


class _V2Payload(msgspec.Struct, rename={"type": "$type"}):
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


class _V2Frame(msgspec.Struct, rename={"type": "$type"}):
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
# shared helpers


def _raw_text(data: bytes) -> str:
    return data[:RAW_LIMIT].decode("utf-8", "replace")


def _as_bytes(data: bytes | bytearray | memoryview | str) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8", "surrogatepass")
    return bytes(data) if not isinstance(data, bytes) else data


# DIDs and collections repeat across events, so remembering the ones already checked skips most regex calls.
# Bounded by clearing: a hostile stream of fresh values costs one regex each, never unbounded memory.
_CACHE_LIMIT: Final = 100_000
_good_dids: set[str] = set()
_good_collections: set[str] = set()


def _valid_did(did: str) -> bool:
    if did in _good_dids:
        return True
    if len(did) > 2048 or _DID.fullmatch(did) is None:
        return False
    if len(_good_dids) >= _CACHE_LIMIT:
        _good_dids.clear()
    _good_dids.add(did)
    return True


def _valid_collection(collection: str) -> bool:
    if collection in _good_collections:
        return True
    if len(collection) > 317 or _NSID.fullmatch(collection) is None:
        return False
    if len(_good_collections) >= _CACHE_LIMIT:
        _good_collections.clear()
    _good_collections.add(collection)
    return True


def _valid_int(v: int | None) -> bool:
    return v is None or 0 <= v <= _MAX_INT64


@functools.cache
def _prefix_bytes(prefix: str) -> bytes:
    return prefix.encode()


def _validation_reason(message: str) -> str:
    if message.startswith("Object missing required field"):
        return "missing_field"
    return "invalid_field"


class _Bad(Exception):
    """Internal short-circuit carrying a reason; never escapes this module."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail


def _commit_fields(
    did: str,
    rev: str,
    operation: str,
    collection: str,
    rkey: str,
    record: dict[str, Any] | None,
    cid: str | None,
) -> tuple[dict[str, Any] | None, str | None]:
    """Validate a commit that is already known to be for a wanted collection; returns (record, cid) with both
    cleared for deletes."""
    if not _valid_did(did):
        raise _Bad("invalid_did", f"did {did[:100]!r} is not a DID")
    if operation not in _OPERATIONS:
        raise _Bad("invalid_operation", f"commit operation {operation[:50]!r} is not create, update or delete")
    if _TID.fullmatch(rev) is None:
        raise _Bad("invalid_rev", f"commit rev {rev[:50]!r} is not a TID")
    if not _valid_collection(collection):
        raise _Bad("invalid_collection", f"collection {collection[:100]!r} is not an NSID")
    if _RKEY.fullmatch(rkey) is None or rkey in (".", ".."):
        raise _Bad("invalid_rkey", f"record key {rkey[:100]!r} is not valid")
    if operation == "delete":
        return None, None
    if record is None:
        raise _Bad("missing_record", f"commit {operation} without a record")
    if cid is None:
        raise _Bad("missing_cid", f"commit {operation} without a cid")
    if not (len(cid) <= 512 and cid[:1] == "b" and cid.isascii() and cid.isalnum() and cid.islower()):
        raise _Bad("invalid_cid", f"cid {cid[:100]!r} is not a base32 CIDv1")
    return record, cid


def _commit_event(
    did: str,
    rev: str,
    operation: str,
    collection: str,
    rkey: str,
    record: dict[str, Any] | None,
    cid: str | None,
    *,
    source: str,
    cursor: int,
    time_us: int | None,
) -> Event:
    record, cid = _commit_fields(did, rev, operation, collection, rkey, record, cid)
    return Event(
        kind="commit",
        did=did,
        source=source,
        cursor=cursor,
        time_us=time_us,
        operation=cast(Operation, operation),
        collection=collection,
        rkey=rkey,
        rev=rev,
        cid=cid,
        record=record,
    )


def _identity_event(
    did: str, i: _Identity | None, *, missing: str, source: str, cursor: int, time_us: int | None
) -> Event:
    if i is None:
        raise _Bad("missing_field", missing)
    if i.did != did:
        raise _Bad("did_mismatch", f"identity.did {i.did[:100]!r} differs from the event did")
    if not _valid_int(i.seq):
        raise _Bad("invalid_field", f"identity.seq {i.seq} is out of range")
    return Event(
        kind="identity",
        did=did,
        source=source,
        cursor=cursor,
        time_us=time_us,
        seq=i.seq,
        time=i.time,
        handle=i.handle,
    )


def _account_event(
    did: str, a: _Account | None, *, missing: str, source: str, cursor: int, time_us: int | None
) -> Event:
    if a is None:
        raise _Bad("missing_field", missing)
    if a.did != did:
        raise _Bad("did_mismatch", f"account.did {a.did[:100]!r} differs from the event did")
    if not _valid_int(a.seq):
        raise _Bad("invalid_field", f"account.seq {a.seq} is out of range")
    return Event(
        kind="account",
        did=did,
        source=source,
        cursor=cursor,
        time_us=time_us,
        seq=a.seq,
        time=a.time,
        active=a.active,
        status=a.status,
    )


# ----------------------------------------------------------------------------------------------------
# v1

_V1_COMMIT_MARK: Final = b'"kind":"commit"'


def parse_v1(
    data: bytes | bytearray | memoryview | str,
    source: str = "jetstream",
    *,
    collection_prefix: str | None = COLLECTION_PREFIX,
) -> Event | Malformed | None:
    """One Jetstream v1 JSON event. Returns None for a commit whose collection does not start with
    `collection_prefix` (None keeps every collection). Identity and account events are always kept."""
    b = _as_bytes(data)
    if collection_prefix is not None and _prefix_bytes(collection_prefix) not in b and _V1_COMMIT_MARK in b:
        # Cheap reject without decoding: a commit frame whose bytes never mention the prefix cannot be for a
        # wanted collection (Jetstream writes NSIDs unescaped). Frames that do mention it are decoded and
        # filtered exactly below.
        return None
    try:
        ev = _v1_decoder.decode(b)
    except msgspec.ValidationError as e:
        return _v1_invalid(b, source, str(e), collection_prefix)
    except (msgspec.DecodeError, UnicodeDecodeError) as e:  # bad UTF-8 in a string raises the latter
        return Malformed(reason="invalid_json", detail=f"not valid JSON: {e}", raw=_raw_text(b), source=source)

    did = ev.did
    cursor = ev.time_us if 0 < ev.time_us <= _MAX_INT64 else None
    try:
        if cursor is None:
            raise _Bad("invalid_field", f"time_us {ev.time_us} is out of range")
        kind = ev.kind
        if kind == "commit":
            c = ev.commit
            if c is None:
                raise _Bad("missing_field", "commit event without a `commit` object")
            if collection_prefix is not None and not c.collection.startswith(collection_prefix):
                return None
            return _commit_event(
                did,
                c.rev,
                c.operation,
                c.collection,
                c.rkey,
                c.record,
                c.cid,
                source=source,
                cursor=cursor,
                time_us=cursor,
            )
        if not _valid_did(did):
            raise _Bad("invalid_did", f"did {did[:100]!r} is not a DID")
        if kind == "identity":
            return _identity_event(
                did,
                ev.identity,
                missing="identity event without an `identity` object",
                source=source,
                cursor=cursor,
                time_us=cursor,
            )
        if kind == "account":
            return _account_event(
                did,
                ev.account,
                missing="account event without an `account` object",
                source=source,
                cursor=cursor,
                time_us=cursor,
            )
        raise _Bad("unknown_kind", f"unknown event kind {kind[:50]!r}")
    except _Bad as bad:
        return Malformed(reason=bad.reason, detail=bad.detail, raw=_raw_text(b), did=did, cursor=cursor, source=source)


def _v1_invalid(b: bytes, source: str, message: str, collection_prefix: str | None) -> Malformed | None:
    """The typed decode failed: recover what can be known (did, cursor, relevance) from an untyped decode."""
    try:
        obj = _any_decoder.decode(b)
    except (msgspec.DecodeError, UnicodeDecodeError) as e:  # bad UTF-8 in a field the typed decoder skipped
        return Malformed(reason="invalid_json", detail=f"not valid JSON: {e}", raw=_raw_text(b), source=source)
    if not isinstance(obj, dict):
        return Malformed(
            reason="not_object",
            detail=f"event is not a JSON object: {message}",
            raw=_raw_text(b),
            source=source,
        )
    if collection_prefix is not None and obj.get("kind") == "commit":
        commit = obj.get("commit")
        collection = commit.get("collection") if isinstance(commit, dict) else None
        if isinstance(collection, str) and not collection.startswith(collection_prefix):
            return None
    did = obj.get("did")
    time_us = obj.get("time_us")
    cursor = time_us if type(time_us) is int and 0 < time_us <= _MAX_INT64 else None
    return Malformed(
        reason=_validation_reason(message),
        detail=message,
        raw=_raw_text(b),
        did=did if isinstance(did, str) else None,
        cursor=cursor,
        source=source,
    )


# ----------------------------------------------------------------------------------------------------
# v2

_V2_COMMIT_MARK: Final = b'subscribeEvents#commit"'


def _v2_kind(type_: str) -> str | None:
    """`network.bsky.jetstream.subscribeEvents#commit` (or the bare `#commit` form) to `commit`."""
    head, sep, frag = type_.partition("#")
    if not sep or head not in ("", V2_TYPE_PREFIX):
        return None
    return frag


def parse_v2(
    data: bytes | bytearray | memoryview | str,
    source: str,
    *,
    collection_prefix: str | None = COLLECTION_PREFIX,
) -> Event | Malformed | StreamNotice | None:
    """One Jetstream v2 (`subscribeEvents`, xrpc.v1.json) frame. `Event.cursor` is Jetstream's `seq`;
    `Event.time_us` is the envelope `time`; for identity/account `Event.seq`/`Event.time` are the upstream
    relay's. `#info` and error frames become a `StreamNotice`; `#sync`, which `Event` cannot express yet,
    becomes a `Malformed` with reason `unsupported_kind` so it is counted and kept rather than lost."""
    b = _as_bytes(data)
    if collection_prefix is not None and _prefix_bytes(collection_prefix) not in b and _V2_COMMIT_MARK in b:
        return None
    try:
        frame = _v2_decoder.decode(b)
    except msgspec.ValidationError as e:
        return _v2_invalid(b, source, str(e), collection_prefix)
    except (msgspec.DecodeError, UnicodeDecodeError) as e:  # bad UTF-8 in a string raises the latter
        return Malformed(reason="invalid_json", detail=f"not valid JSON: {e}", raw=_raw_text(b), source=source)

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

    did = p.did
    seq = p.seq if p.seq is not None and 0 < p.seq <= _MAX_INT64 else None
    try:
        if kind not in ("commit", "identity", "account"):
            raise _Bad(
                "unsupported_kind" if kind == "sync" else "unknown_kind",
                f"unsupported message {p.type[:100]!r}",
            )
        if did is None or p.seq is None or p.time is None:
            missing = [n for n, v in (("did", did), ("seq", p.seq), ("time", p.time)) if v is None]
            raise _Bad("missing_field", f"#{kind} payload without {', '.join(missing)}")
        if seq is None:
            raise _Bad("invalid_field", f"seq {p.seq} is out of range")
        time_us = parse_time_us(p.time)
        if time_us is None:
            raise _Bad("invalid_time", f"time {p.time[:50]!r} is not an RFC 3339 datetime with offset")
        if kind == "commit":
            if p.rev is None or p.operation is None or p.collection is None or p.rkey is None:
                missing = [
                    n
                    for n, v in (
                        ("rev", p.rev),
                        ("operation", p.operation),
                        ("collection", p.collection),
                        ("rkey", p.rkey),
                    )
                    if v is None
                ]
                raise _Bad("missing_field", f"#commit payload without {', '.join(missing)}")
            if collection_prefix is not None and not p.collection.startswith(collection_prefix):
                return None
            return _commit_event(
                did,
                p.rev,
                p.operation,
                p.collection,
                p.rkey,
                p.record,
                p.cid,
                source=source,
                cursor=seq,
                time_us=time_us,
            )
        if not _valid_did(did):
            raise _Bad("invalid_did", f"did {did[:100]!r} is not a DID")
        if kind == "identity":
            return _identity_event(
                did,
                p.identity,
                missing="#identity payload without `identity`",
                source=source,
                cursor=seq,
                time_us=time_us,
            )
        return _account_event(
            did, p.account, missing="#account payload without `account`", source=source, cursor=seq, time_us=time_us
        )
    except _Bad as bad:
        return Malformed(reason=bad.reason, detail=bad.detail, raw=_raw_text(b), did=did, cursor=seq, source=source)


def _v2_invalid(b: bytes, source: str, message: str, collection_prefix: str | None) -> Malformed | None:
    try:
        obj = _any_decoder.decode(b)
    except (msgspec.DecodeError, UnicodeDecodeError) as e:  # bad UTF-8 in a field the typed decoder skipped
        return Malformed(reason="invalid_json", detail=f"not valid JSON: {e}", raw=_raw_text(b), source=source)
    if not isinstance(obj, dict):
        return Malformed(
            reason="not_object",
            detail=f"frame is not a JSON object: {message}",
            raw=_raw_text(b),
            source=source,
        )
    payload = obj.get("payload")
    did: Any = None
    seq: Any = None
    if isinstance(payload, dict):
        collection = payload.get("collection")
        if (
            collection_prefix is not None
            and isinstance(payload.get("$type"), str)
            and _v2_kind(payload["$type"]) == "commit"
            and isinstance(collection, str)
            and not collection.startswith(collection_prefix)
        ):
            return None
        did = payload.get("did")
        seq = payload.get("seq")
    return Malformed(
        reason=_validation_reason(message),
        detail=message,
        raw=_raw_text(b),
        did=did if isinstance(did, str) else None,
        cursor=seq if type(seq) is int and 0 < seq <= _MAX_INT64 else None,
        source=source,
    )


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
    return t if 0 < t <= _MAX_INT64 else None


def frame_position_v2(data: bytes) -> tuple[int | None, int | None]:
    """(`seq`, `time` in unix microseconds) of a v2 message frame, each None when absent or invalid."""
    try:
        p = _v2_position_decoder.decode(data).payload
    except (msgspec.MsgspecError, UnicodeDecodeError):
        return None, None
    if p is None:
        return None, None
    seq = p.seq if p.seq is not None and 0 < p.seq <= _MAX_INT64 else None
    return seq, (parse_time_us(p.time) if p.time is not None else None)
