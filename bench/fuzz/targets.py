"""Fuzz targets: the three places where bytes from the network first meet our code.

Each target takes arbitrary bytes and checks the contract of the function under test:

* `frames`: `decode_frame` (every collection's ops, or only fm.plyr.*) returns Events, Malformed (with a reason
  and a detail), Control or Checkpoint items; its own catch-all (`decode_error`: "a decoder bug cost one frame")
  counts as a failure.
* `jetstream`: `parse_v1` / `parse_v2` (after `Decompressor.decompress` for compressed input) return an Event, a
  Malformed with a reason, a StreamNotice, or None (a commit of another collection, skipped by design); the only
  exception allowed is `DecompressError` from decompression, which the source turns into a rejection.
* `validator`: `Validator.validate` returns None or an `Invalid` with a rule and a message, for records decoded
  from JSON or DAG-CBOR; its catch-all (`rule == "internal"`) counts as a failure.

A violation raises `PropertyViolation`. The first input byte(s) select a mode, the rest is the payload, so a
mutation fuzzer explores every entry point from one corpus.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import libipld
import msgspec
import zstandard

from indexer.atproto.lexicon import Validator
from indexer.events import Checkpoint, Event, Malformed
from indexer.firehose.frames import Control, decode_frame
from indexer.fold.collections import WANTED
from indexer.jetstream.parse import DecompressError, Decompressor, StreamNotice, parse_v1, parse_v2
from indexer.jetstream.zstd_dict import load_v1_dict

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT.parent / "shared" / "reference" / "corpus"


class PropertyViolation(AssertionError):
    """The function under test broke its contract for this input."""


def _malformed_ok(m: Malformed) -> None:
    if not m.reason or not m.detail:
        raise PropertyViolation(f"rejection without a reason or detail: {m!r}")


def _everything(collection: str) -> bool:
    return True


def check_frame(data: bytes) -> str:
    if not data:
        return "empty"
    # Mode byte: odd decodes every collection's ops (CAR walk, record blocks, CIDs), even only fm.plyr.*.
    items = decode_frame(data[1:], source="fuzz", **({"want": _everything} if data[0] % 2 else {}))
    if not isinstance(items, list):
        raise PropertyViolation(f"decode_frame returned {type(items).__name__}")
    for item in items:
        if isinstance(item, Malformed):
            _malformed_ok(item)
            if item.reason == "decode_error":
                raise PropertyViolation(f"decoder bug caught by the catch-all: {item.detail}")
        elif not isinstance(item, (Event, Control, Checkpoint)):
            raise PropertyViolation(f"decode_frame yielded {type(item).__name__}")
    if not items:
        return "skipped"
    return "rejected" if any(isinstance(i, Malformed) for i in items) else "accepted"


_decompressor = Decompressor()


_events: list[dict[str, object]] = []


def _v2_of(ev: dict[str, object]) -> dict[str, object]:
    """The v2 (`subscribeEvents`) frame carrying the same event as a v1 line."""
    kind = str(ev["kind"])
    payload: dict[str, object] = {
        "$type": f"network.bsky.jetstream.subscribeEvents#{kind}",
        "did": ev["did"],
        "seq": ev["time_us"],
        "time": "2025-06-15T12:00:00.000Z",
    }
    body = ev.get(kind)
    if kind == "commit" and isinstance(body, dict):
        payload.update(body)
    elif body is not None:
        payload[kind] = body
    return {"$type": "message", "payload": payload}


def _structured_event(r: _Bytes, v2: bool) -> bytes:
    """A valid event (v1 line or v2 frame) with one to four fields anywhere in it replaced, deleted or added."""
    if not _events:
        _events.extend(msgspec.json.decode(line) for line in _synth_lines(300))
    ev = msgspec.json.decode(msgspec.json.encode(_events[r.byte() % len(_events)]))
    holder: dict[str, object] = {"root": _v2_of(ev) if v2 else ev}
    for _ in range(1 + r.byte() % 4):
        slots: list[tuple[dict[str, object] | list[object], object]] = [(holder, "root")]
        _slots(holder["root"], slots)
        container, key = slots[r.byte() % len(slots)]
        action = r.byte() % 4
        if action == 0 and isinstance(container, dict) and container is not holder:
            del container[key]  # type: ignore[arg-type]
        elif action == 1 and isinstance(container, dict) and container is not holder:
            container[r.take(r.byte() % 12).decode("utf-8", "replace")] = _value(r)
        else:
            container[key] = _value(r)  # type: ignore[index]
    try:
        # Values JSON cannot carry (bytes) go as their text: still hostile, still JSON.
        return msgspec.json.encode(holder["root"], enc_hook=repr)
    except (msgspec.EncodeError, OverflowError, UnicodeEncodeError):
        # Integers past 64 bits and lone surrogates are valid JSON text all the same (`\ud800` escapes).
        return json.dumps(holder["root"], default=repr).encode()


def check_jetstream(data: bytes) -> str:
    """Mode (first byte): 0 v1 line (the WANTED filter), 1 v1 line (no filter), 2 zstd-compressed v1 line, 3 v2
    frame, 4 a valid v1 event with fields mutated structurally, 5 the same for a v2 frame."""
    if not data:
        return "empty"
    mode, payload = data[0] % 6, data[1:]
    if mode >= 4:
        try:
            payload = _structured_event(_Bytes(payload), v2=mode == 5)
        except (msgspec.EncodeError, OverflowError, UnicodeEncodeError, RecursionError, TypeError):
            return "unencodable"
        mode = 3 if mode == 5 else 0
    if mode == 2:
        try:
            payload = _decompressor.decompress(payload)
        except DecompressError as e:
            if e.reason not in ("bad_compression", "oversize") or not e.detail:
                raise PropertyViolation(f"decompression error without a reason: {e!r}") from None
            return "rejected"
    if mode == 3:
        result: Event | Malformed | StreamNotice | None = parse_v2(payload, "fuzz")
    else:
        result = parse_v1(payload, "fuzz", wanted=None if mode == 1 else WANTED)
    if result is None:
        return "skipped"
    if isinstance(result, Malformed):
        _malformed_ok(result)
        return "rejected"
    if isinstance(result, StreamNotice):
        if not result.name:
            raise PropertyViolation(f"notice without a name: {result!r}")
        return "accepted"
    if not isinstance(result, Event):
        raise PropertyViolation(f"parser returned {type(result).__name__}")
    return "accepted"


_validator: Validator | None = None


def validator() -> Validator:
    global _validator  # a compiled validator per fuzzing process, built on first use
    if _validator is None:
        _validator = Validator.load()
    return _validator


RKEYS = ("self", "3lrnqk7qs2222", "", "3lrnqk7qs222", "a" * 600, "..", "3lrnqk7qs2222\x00", "ß")


class _Bytes:
    """Reads decisions from the fuzzer's bytes; past the end every read is 0, so any input is a full plan."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.i = 0

    def byte(self) -> int:
        b = self.data[self.i] if self.i < len(self.data) else 0
        self.i += 1
        return b

    def take(self, n: int) -> bytes:
        out = self.data[self.i : self.i + n]
        self.i += n
        return out


_SPECIAL_STRINGS = (
    "",
    " ",
    "2024-02-30T00:00:00Z",
    "2024-01-01T00:00:00",
    "2024-01-01T00:00:00.000+25:00",
    "0000-01-01T00:00:00Z",
    "9999-12-31T23:59:60Z",
    "at://did:plc:aaaaaaaaaaaaaaaaaaaaaaaa/fm.plyr.track/3lrnqk7qs2222",
    "at://did:plc:aaaaaaaaaaaaaaaaaaaaaaaa/fm.plyr.track/",
    "at://",
    "https://example.com/a.mp3",
    "http://[::1",
    "javascript:alert(1)",
    "did:web:localhost%3A8080",
    "did:plc:",
    "bafyreidqpc7si3dbimffi64lz3xsx2qt45ip7rpna2qpslcddp23itjjzm",
    "b" + "a" * 2000,
    "\x00",
    "\ud800",
    "e\u0301" * 300,
    "\U0001f3b5" * 70,
    "x" * 100_000,
)


def _value(r: _Bytes, depth: int = 0) -> object:
    kind = r.byte() % 13
    if kind == 0:
        return r.take(r.byte()).decode("utf-8", "replace")
    if kind == 1:
        return _SPECIAL_STRINGS[r.byte() % len(_SPECIAL_STRINGS)]
    if kind == 2:
        return int.from_bytes(r.take(8), "little", signed=True)
    if kind == 3:
        return (1 << (64 + r.byte())) * (-1 if r.byte() % 2 else 1)
    if kind == 4:
        return struct.unpack("<d", r.take(8).ljust(8, b"\0"))[0]
    if kind == 5:
        return bool(r.byte() % 2)
    if kind == 6:
        return None
    if kind == 7:
        return r.take(r.byte())
    if kind == 8 and depth < 6:
        return [_value(r, depth + 1) for _ in range(r.byte() % 5)]
    if kind == 9 and depth < 6:
        keys = ("$type", "$link", "$bytes", "ref", "mimeType", "size", "uri", "cid", "did", "val", "values", "x")
        return {keys[r.byte() % len(keys)]: _value(r, depth + 1) for _ in range(r.byte() % 4)}
    if kind == 10:
        deep: object = []
        for _ in range(200 + r.byte() * 20):
            deep = [deep]
        return deep
    if kind == 11:
        return {"$link": _SPECIAL_STRINGS[r.byte() % len(_SPECIAL_STRINGS)]}
    # Distinct objects, as a wire decoder produces them (shared references would make sizes grow exponentially).
    return [{"subject": {"uri": _SPECIAL_STRINGS[7], "cid": _SPECIAL_STRINGS[15]}} for _ in range(r.byte() * 2)]


def _slots(value: object, out: list[tuple[dict[str, object] | list[object], object]], depth: int = 0) -> None:
    """Every (container, key) of a record down to a few levels, to pick mutation points from."""
    if depth > 8 or len(out) > 200:
        return
    if isinstance(value, dict):
        for key, child in value.items():
            out.append((value, key))
            _slots(child, out, depth + 1)
    elif isinstance(value, list):
        for i, child in enumerate(value[:20]):
            out.append((value, i))
            _slots(child, out, depth + 1)


_templates: dict[str, list[dict[str, object]]] = {}


def _template(collection: str, choice: int) -> dict[str, object]:
    if not _templates:
        for line in _synth_lines(300):
            obj = msgspec.json.decode(line)
            record = obj.get("commit", {}).get("record")
            if isinstance(record, dict):
                _templates.setdefault(str(record.get("$type")), []).append(record)
        blob = {"$type": "blob", "ref": {"$link": _SPECIAL_STRINGS[15]}, "mimeType": "audio/mpeg", "size": 1000}
        for rec in _templates.get("fm.plyr.track", [])[:5]:
            rec.update(
                features=[{"did": "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", "handle": "a.test", "displayName": "A"}],
                audioBlob=blob,
                labels={"$type": "com.atproto.label.defs#selfLabels", "values": [{"val": "nudity"}]},
                album="Album",
                description="notes",
            )
    found = _templates.get(collection) or [{"$type": collection}]
    return msgspec.json.decode(msgspec.json.encode(found[choice % len(found)]))  # a private deep copy


def check_record(data: bytes) -> str:
    """Mode (first byte): 0 mutates a valid record of the chosen collection structurally (every input reaches
    the validator), 1 decodes the rest as JSON, 2 as DAG-CBOR; an undecodable payload falls back to mode 0."""
    v = validator()
    r = _Bytes(data)
    mode = r.byte() % 3
    collections = sorted(v.collections)
    pick = r.byte()
    collection = collections[pick % len(collections)] if pick < 250 else r.take(8).decode("utf-8", "replace")
    rkey_byte = r.byte()
    rkey = "self" if collection.endswith(".profile") else "3lrnqk7qs2222"
    if rkey_byte >= 200:
        rkey = RKEYS[rkey_byte % len(RKEYS)]
    record: object = None
    decoded = False
    if mode:
        payload = data[r.i :]
        try:
            record = libipld.decode_dag_cbor(payload) if mode == 2 else msgspec.json.decode(payload)
            decoded = True
        except (ValueError, TypeError, OverflowError, RecursionError, msgspec.DecodeError):
            r.i = 3
    if not decoded:
        record = _template(collection, r.byte())
        for _ in range(1 + r.byte() % 4):
            slots: list[tuple[dict[str, object] | list[object], object]] = [({"root": record}, "root")]
            _slots(record, slots)
            container, key = slots[r.byte() % len(slots)]
            action = r.byte() % 4
            if action == 0 and isinstance(container, dict) and key != "root":
                del container[key]  # type: ignore[arg-type]
            elif action == 1 and isinstance(container, dict) and isinstance(record, dict):
                record[r.take(r.byte() % 16).decode("utf-8", "replace")] = _value(r)
            else:
                container[key] = _value(r)  # type: ignore[index]
            record = slots[0][0]["root"]  # type: ignore[index]
    invalid = v.validate(collection, rkey, record)
    if invalid is None:
        return "accepted"
    if invalid.rule == "internal":
        raise PropertyViolation(f"validator bug caught by the catch-all: {invalid}")
    if not invalid.rule or not invalid.message:
        raise PropertyViolation(f"rejection without a rule or message: {invalid!r}")
    return "rejected"


TARGETS: dict[str, Callable[[bytes], str]] = {
    "frames": check_frame,
    "jetstream": check_jetstream,
    "validator": check_record,
}


# -- seeds ---------------------------------------------------------------------------------------------------


def _corpus_frames() -> Iterator[bytes]:
    path = CORPUS / "frames.bin.zst"
    if not path.exists():
        return
    data = zstandard.ZstdDecompressor().stream_reader(path.open("rb")).read()
    i = 0
    while i + 4 <= len(data):
        (n,) = struct.unpack_from("<I", data, i)
        yield data[i + 4 : i + 4 + n]
        i += 4 + n


def _corpus_lines() -> Iterator[bytes]:
    for name in ("jetstream_v1_golden.jsonl", "expected_v1.jsonl"):
        path = CORPUS / name
        if path.exists():
            yield from (line for line in path.read_bytes().splitlines() if line)


def _synth_lines(n: int) -> list[bytes]:
    from bench.synth import workload

    return [msgspec.json.encode(obj) for obj in workload(n, seed=99)]


def seeds(target: str, limit: int = 400) -> list[bytes]:
    """Starting inputs for `target`: the reference corpus (production frames and Jetstream lines) and
    synthetic events, in the target's input layout."""
    if target == "frames":
        frames = list(_corpus_frames())
        frames += [libipld.encode_dag_cbor({"op": 1, "t": "#info"}) + libipld.encode_dag_cbor({"name": "x"})]
        return [bytes([mode]) + f for f in frames for mode in (0, 1)][:limit]
    lines = list(_corpus_lines()) + _synth_lines(200)
    if target == "jetstream":
        cctx = zstandard.ZstdCompressor(dict_data=load_v1_dict())
        out = []
        for i, line in enumerate(lines):
            out.append(bytes([i % 2]) + line)
            if i % 5 == 0:
                out.append(bytes([2]) + cctx.compress(line))
        out.append(bytes([3]) + b'{"$type":"message","payload":{"$type":"#commit","did":"did:plc:a","seq":1}}')
        return out[:limit]
    collections = sorted(validator().collections)
    out = []
    for line in lines:
        obj = msgspec.json.decode(line)
        record = obj.get("commit", {}).get("record") if isinstance(obj, dict) else None
        if not isinstance(record, dict) or record.get("$type") not in collections:
            continue
        index = bytes([collections.index(record["$type"])])
        out.append(b"\x01" + index + b"\x00" + msgspec.json.encode(record))
        out.append(b"\x02" + index + b"\x00" + libipld.encode_dag_cbor(record))
    out += [bytes([0, i, 0, i, 1, i % 7, 0, 5]) for i in range(len(collections))]
    return out[:limit]
