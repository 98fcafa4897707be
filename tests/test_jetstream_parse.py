"""Jetstream v1/v2 frame parsing: real events, every rejection reason, the collection filter, zstd."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import msgspec
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.events import Event, Malformed
from indexer.jetstream.parse import (
    RAW_LIMIT,
    DecompressError,
    Decompressor,
    StreamNotice,
    decompress,
    frame_cursor_v1,
    frame_position_v2,
    malformed_from_decompress_error,
    parse_v1,
    parse_v2,
)
from indexer.jetstream.zstd_dict import V1_DICT_ID, V2_DICT_ID, dict_bytes, load_dict

REFERENCE = Path(os.environ.get("PLYR_REFERENCE_DIR") or Path(__file__).resolve().parents[2] / "shared" / "reference")
GOLDEN = REFERENCE / "corpus" / "jetstream_v1_golden.jsonl"
EXPECTED = REFERENCE / "corpus" / "expected_v1.jsonl"

DID = "did:plc:hqvhxrowqbemo5e4wjnj6zao"
REV = "3mptbypluud2a"
CID = "bafyreiguce4jh7kcbmof3pmcvasifqtw24b6isakj5ve5ga2b4z4alpc4i"
T_US = 1783175888085434


@cache
def golden() -> tuple[bytes, ...]:
    return tuple(line.rstrip(b"\n") for line in GOLDEN.read_bytes().splitlines() if line.strip())


@cache
def expected() -> tuple[bytes, ...]:
    return tuple(line.rstrip(b"\n") for line in EXPECTED.read_bytes().splitlines() if line.strip())


def commit(**over: Any) -> dict[str, Any]:
    c: dict[str, Any] = {
        "rev": REV,
        "operation": "create",
        "collection": "fm.plyr.track",
        "rkey": "3mptbyplj5d2a",
        "record": {"$type": "fm.plyr.track", "title": "a song"},
        "cid": CID,
    }
    c.update(over)
    return {k: v for k, v in c.items() if v is not _DROP}


_DROP: Any = object()


def v1(kind: str = "commit", **over: Any) -> bytes:
    ev: dict[str, Any] = {"did": DID, "time_us": T_US, "kind": kind}
    if kind == "commit":
        ev["commit"] = commit()
    elif kind == "identity":
        ev["identity"] = {"did": DID, "handle": "a.example.com", "seq": 7, "time": "2026-07-04T14:38:07.877Z"}
    elif kind == "account":
        ev["account"] = {
            "active": False,
            "status": "deactivated",
            "did": DID,
            "seq": 8,
            "time": "2026-07-04T14:38:07Z",
        }
    ev.update(over)
    return json.dumps({k: v for k, v in ev.items() if v is not _DROP}).encode()


def as_dict(item: Any) -> dict[str, Any]:
    return msgspec.structs.asdict(item)


# ----------------------------------------------------------------------------------------------------
# v1: real data


def test_expected_corpus_parses_to_the_same_fields() -> None:
    lines = expected()
    assert len(lines) == 152
    kinds: dict[str, int] = {}
    for line in lines:
        raw = json.loads(line)
        ev = parse_v1(line, "jetstream", wanted=None)
        assert isinstance(ev, Event), ev
        kinds[ev.kind] = kinds.get(ev.kind, 0) + 1
        assert ev.did == raw["did"] and ev.kind == raw["kind"] and ev.source == "jetstream"
        assert ev.cursor == ev.time_us == raw["time_us"]
        if ev.kind == "commit":
            c = raw["commit"]
            assert (ev.operation, ev.collection, ev.rkey, ev.rev) == (
                c["operation"],
                c["collection"],
                c["rkey"],
                c["rev"],
            )
            assert ev.record == c.get("record") and ev.cid == c.get("cid")
        elif ev.kind == "identity":
            i = raw["identity"]
            assert (ev.seq, ev.time, ev.handle) == (i["seq"], i["time"], i.get("handle"))
        else:
            a = raw["account"]
            assert (ev.seq, ev.time, ev.active, ev.status) == (
                a["seq"],
                a["time"],
                a["active"],
                a.get("status"),
            )
    assert kinds == {"commit": 150, "identity": 1, "account": 1}


def test_golden_covers_every_operation_and_delete_has_no_record() -> None:
    events = [parse_v1(line, "jetstream", wanted=None) for line in golden()]
    assert all(isinstance(e, Event) for e in events)
    ops = {e.operation for e in events if isinstance(e, Event) and e.kind == "commit"}
    assert ops == {"create", "update", "delete"}
    deletes = [e for e in events if isinstance(e, Event) and e.operation == "delete"]
    assert deletes and all(e.record is None and e.cid is None for e in deletes)


def test_collection_filter_keeps_identity_and_account_only_for_foreign_collections() -> None:
    kept = [parse_v1(line, "jetstream") for line in expected()]
    # The window's one wanted commit is a teal.fm now-playing status; the other 149 commits are other apps'.
    assert sum(1 for k in kept if k is None) == 149
    assert sorted(e.kind for e in kept if isinstance(e, Event)) == ["account", "commit", "identity"]
    assert [e.collection for e in kept if isinstance(e, Event) and e.kind == "commit"] == ["fm.teal.alpha.actor.status"]


def test_relevant_commit_is_kept_and_str_input_matches_bytes() -> None:
    line = v1()
    ev = parse_v1(line, "jetstream")
    assert isinstance(ev, Event)
    assert (ev.collection, ev.operation, ev.rev, ev.cid, ev.record) == (
        "fm.plyr.track",
        "create",
        REV,
        CID,
        {"$type": "fm.plyr.track", "title": "a song"},
    )
    assert as_dict(parse_v1(line.decode(), "jetstream")) == as_dict(ev)


def test_filter_is_exact_even_when_a_foreign_record_mentions_the_prefix() -> None:
    line = v1(commit=commit(collection="app.bsky.feed.post", record={"text": "listen on fm.plyr.track"}))
    assert parse_v1(line, "jetstream") is None
    # Also for a broken foreign commit: not ours, so not a rejection either.
    broken = v1(commit=commit(collection="app.bsky.feed.post", rev=5, record={"text": "fm.plyr."}))
    assert parse_v1(broken, "jetstream") is None


def test_prefix_is_not_a_substring_match() -> None:
    assert parse_v1(v1(commit=commit(collection="fm.plyrx.track")), "jetstream") is None
    assert parse_v1(v1(commit=commit(collection="xfm.plyr.track")), "jetstream") is None


def test_other_commit_kinds_are_filtered_without_decoding() -> None:
    # Not even JSON past the kind: the cheap check rejects it as foreign before decoding.
    assert parse_v1(b'{"did":"x","kind":"commit","commit":{"collection":"app.bsky.feed.like"', "j") is None


# ----------------------------------------------------------------------------------------------------
# v1: rejections


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"not json", "invalid_json"),
        (b'{"did":"' + DID.encode() + b'","time_us":1', "invalid_json"),
        (b"", "invalid_json"),
        (b"\xff\xfe{}", "invalid_json"),
        (b"[1,2,3]", "not_object"),
        (b'"a string"', "not_object"),
        (b"42", "not_object"),
        (b"null", "not_object"),
        (v1(did=_DROP), "missing_field"),
        (v1(time_us=_DROP), "missing_field"),
        (v1(kind=_DROP), "missing_field"),
        (v1(time_us="1783175888085434"), "invalid_field"),
        (v1(time_us=True), "invalid_field"),
        (v1(time_us=-5), "invalid_field"),
        (v1(time_us=2**70), "invalid_field"),
        (v1(did=12), "invalid_field"),
        (v1(kind="sync"), "unknown_kind"),
        (v1(commit=_DROP), "missing_field"),
        (v1(commit=commit(record=_DROP)), "missing_record"),
        (v1(commit=commit(operation="update", record=None)), "missing_record"),
        (v1(commit=commit(cid=_DROP)), "missing_cid"),
        (v1(commit=commit(cid="Qm not a cid")), "invalid_cid"),
        (v1(commit=commit(record="a string")), "invalid_field"),
        (v1(commit=commit(rev=_DROP)), "missing_field"),
        (v1(commit=commit(rev="3mptbypluud2")), "invalid_rev"),
        (v1(commit=commit(rev="3mptbypluud2aa")), "invalid_rev"),
        (v1(commit=commit(rev="kmptbypluud2a")), "invalid_rev"),
        (v1(commit=commit(rev="3MPTBYPLUUD2A")), "invalid_rev"),
        (v1(commit=commit(rev="3mptbypluud1a")), "invalid_rev"),
        (v1(commit=commit(operation="upsert")), "invalid_operation"),
        (v1(commit=commit(rkey="")), "invalid_rkey"),
        (v1(commit=commit(rkey="..")), "invalid_rkey"),
        (v1(commit=commit(rkey="a/b")), "invalid_rkey"),
        (v1(commit=commit(collection="fm.plyr.")), "invalid_collection"),
        (v1(commit=commit(collection="fm.plyr.tr ack")), "invalid_collection"),
        (v1(did="plc:abc"), "invalid_did"),
        (v1(did="did:PLC:abc"), "invalid_did"),
        (v1(did="did:plc:" + "a" * 3000), "invalid_did"),
        (v1("identity", did="not-a-did"), "invalid_did"),
        (v1("identity", identity=_DROP), "missing_field"),
        (v1("identity", identity={"did": "did:plc:someoneelse"}), "did_mismatch"),
        (v1("account", account={"did": DID, "seq": 1, "time": "2026-07-04T14:38:07Z"}), "missing_field"),
        (v1("account", account={"did": DID, "active": "yes"}), "invalid_field"),
        (v1("account", account={"did": "did:plc:someoneelse", "active": True}), "did_mismatch"),
        (v1("account", account={"did": DID, "active": True, "seq": -1}), "invalid_field"),
    ],
)
def test_v1_rejections(data: bytes, reason: str) -> None:
    out = parse_v1(data, "jetstream")
    assert isinstance(out, Malformed), out
    assert out.reason == reason, out
    assert out.source == "jetstream" and out.detail
    assert out.raw == data[:RAW_LIMIT].decode("utf-8", "replace")


def test_rejection_keeps_did_and_cursor_when_known() -> None:
    bad_rev = parse_v1(v1(commit=commit(rev="nope")), "jetstream")
    assert isinstance(bad_rev, Malformed) and (bad_rev.did, bad_rev.cursor) == (DID, T_US)
    # The typed decode fails here, and the fallback still finds both.
    bad_type = parse_v1(v1(commit=commit(rkey=5)), "jetstream")
    assert isinstance(bad_type, Malformed) and (bad_type.did, bad_type.cursor) == (DID, T_US)
    bad_json = parse_v1(b'{"did":"' + DID.encode() + b'"', "jetstream")
    assert isinstance(bad_json, Malformed) and bad_json.did is None and bad_json.cursor is None


def test_raw_is_truncated_to_limit() -> None:
    huge = v1(commit=commit(rev="bad", record={"text": "x" * 100_000}))
    out = parse_v1(huge, "jetstream")
    assert isinstance(out, Malformed) and out.reason == "invalid_rev"
    assert out.raw is not None and len(out.raw) == RAW_LIMIT and huge.decode().startswith(out.raw)


def test_unknown_fields_are_ignored() -> None:
    # Jetstream v2 serving the v1 wire adds a "cursor" field (its seq); v1 clients must ignore it.
    data = json.loads(v1())
    data["cursor"] = 12345
    data["commit"]["extra"] = {"x": 1}
    ev = parse_v1(json.dumps(data), "jetstream")
    assert isinstance(ev, Event) and ev.cursor == T_US


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_v1_never_raises_on_bytes(data: bytes) -> None:
    out = parse_v1(data, "jetstream")
    assert out is None or isinstance(out, (Event, Malformed))


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["did", "time_us", "kind", "commit", "identity", "account"]),
    _json,
    st.sampled_from(["commit", "identity", "account"]),
)
def test_v1_never_raises_on_mutated_events(field: str, value: Any, kind: str) -> None:
    ev = json.loads(v1(kind))
    ev[field] = value
    out = parse_v1(json.dumps(ev), "jetstream")
    assert out is None or isinstance(out, (Event, Malformed))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["rev", "operation", "collection", "rkey", "record", "cid"]), _json)
def test_v1_mutated_commit_fields_never_raise(field: str, value: Any) -> None:
    out = parse_v1(v1(commit=commit(**{field: value})), "jetstream")
    assert out is None or isinstance(out, (Event, Malformed))
    if isinstance(out, Event):
        assert out.collection is not None and out.collection.startswith("fm.plyr.")


# ----------------------------------------------------------------------------------------------------
# decompression


def test_bundled_dictionaries_match_the_reference_and_ids() -> None:
    assert dict_bytes(V1_DICT_ID) == (REFERENCE / "zstd" / "jetstream_v1.zdict").read_bytes()
    assert dict_bytes(V2_DICT_ID) == (REFERENCE / "zstd" / "jetstream_v2_20260811.zdict").read_bytes()
    assert load_dict(V1_DICT_ID).dict_id() == 1612007021
    assert load_dict(V2_DICT_ID).dict_id() == 20260811
    with pytest.raises(KeyError):
        dict_bytes(1)


def _compressor(path: str = "jetstream_v1.zdict", **kw: Any) -> zstandard.ZstdCompressor:
    d = zstandard.ZstdCompressionDict((REFERENCE / "zstd" / path).read_bytes())
    return zstandard.ZstdCompressor(dict_data=d, **kw)


def test_decompress_round_trips_golden_events() -> None:
    c = _compressor()
    for line in golden():
        frame = c.compress(line)
        assert frame[:4] == b"\x28\xb5\x2f\xfd" and len(frame) < len(line)
        assert decompress(frame) == line
    # Frames without a declared content size, as a streaming encoder may produce them.
    c2 = _compressor(write_content_size=False)
    assert decompress(c2.compress(golden()[0])) == golden()[0]


@pytest.mark.parametrize(
    "frame",
    [
        b"garbage",
        b"\x28\xb5\x2f\xfd" + b"\x00" * 20,
        b"",
    ],
)
def test_decompress_rejects_garbage(frame: bytes) -> None:
    with pytest.raises(DecompressError) as e:
        decompress(frame)
    assert e.value.reason == "bad_compression"


def test_decompress_rejects_truncated_and_other_dictionary_frames() -> None:
    frame = _compressor().compress(golden()[1])
    with pytest.raises(DecompressError) as e:
        decompress(frame[:-5])
    assert e.value.reason == "bad_compression"
    other = _compressor("jetstream_v2_20260811.zdict").compress(golden()[1])
    with pytest.raises(DecompressError) as e:
        decompress(other)
    assert e.value.reason == "bad_compression" and "20260811" in e.value.detail
    # The v2 decompressor reads it.
    assert Decompressor(V2_DICT_ID).decompress(other) == golden()[1]


def test_decompress_refuses_bombs_before_allocating() -> None:
    dec = Decompressor(V1_DICT_ID, max_output_size=1000)
    declared = zstandard.ZstdCompressor().compress(b"a" * 50_000)
    with pytest.raises(DecompressError) as e:
        dec.decompress(declared)
    assert e.value.reason == "oversize" and "50000" in e.value.detail
    undeclared = zstandard.ZstdCompressor(write_content_size=False).compress(b"a" * 50_000)
    with pytest.raises(DecompressError) as e:
        dec.decompress(undeclared)
    assert e.value.reason in ("bad_compression", "oversize")
    assert dec.decompress(zstandard.ZstdCompressor().compress(b"a" * 900)) == b"a" * 900


def test_malformed_from_decompress_error() -> None:
    try:
        decompress(b"\x28\xb5\x2f\xfdjunk")
    except DecompressError as e:
        m = malformed_from_decompress_error(e, b"\x28\xb5\x2f\xfdjunk", "jetstream")
    assert m.reason == "bad_compression" and m.source == "jetstream" and m.raw == "28b52ffd6a756e6b"


# ----------------------------------------------------------------------------------------------------
# v2


def _iso(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def v2_from_v1(line: bytes, seq: int) -> bytes:
    """The v2 frame Jetstream would send for the same event (lexicon subscribeEvents#commit etc.)."""
    ev = json.loads(line)
    t = "network.bsky.jetstream.subscribeEvents#" + ev["kind"]
    payload: dict[str, Any] = {"$type": t, "seq": seq, "did": ev["did"], "time": _iso(ev["time_us"])}
    if ev["kind"] == "commit":
        payload.update(ev["commit"])
    else:
        payload[ev["kind"]] = ev[ev["kind"]]
    return json.dumps({"$type": "message", "payload": payload}).encode()


def test_v2_frames_parse_like_v1_with_seq_cursor() -> None:
    for n, line in enumerate(golden()):
        one = parse_v1(line, "jetstream", wanted=None)
        two = parse_v2(v2_from_v1(line, 1000 + n), "jetstream-v2:h", wanted=None)
        assert isinstance(one, Event) and isinstance(two, Event), two
        a, b = as_dict(one), as_dict(two)
        assert b.pop("cursor") == 1000 + n and b.pop("source") == "jetstream-v2:h"
        a.pop("cursor"), a.pop("source")
        assert a == b


def test_v2_filter_and_short_type_form() -> None:
    foreign = v2_from_v1(golden()[0], 1)
    assert parse_v2(foreign, "s") is None
    ours = json.loads(v2_from_v1(v1(), 2))
    assert isinstance(parse_v2(json.dumps(ours), "s"), Event)
    ours["payload"]["$type"] = "#commit"
    assert isinstance(parse_v2(json.dumps(ours), "s"), Event)


def test_v2_info_and_error_frames_are_notices() -> None:
    info = parse_v2(
        b'{"$type":"message","payload":{"$type":"network.bsky.jetstream.subscribeEvents#info",'
        b'"name":"OutdatedCursor","message":"resumed at seq 5"}}',
        "s",
    )
    assert info == StreamNotice(kind="info", name="OutdatedCursor", message="resumed at seq 5")
    err = parse_v2(b'{"$type":"error","error":"ConsumerTooSlow","message":"bye"}', "s")
    assert err == StreamNotice(kind="error", name="ConsumerTooSlow", message="bye")


def _v2(payload: dict[str, Any], frame_type: str = "message") -> bytes:
    return json.dumps({"$type": frame_type, "payload": payload}).encode()


_P = {
    "$type": "network.bsky.jetstream.subscribeEvents#commit",
    "seq": 9,
    "did": DID,
    "time": "2026-07-04T14:38:08.085434Z",
    **commit(),
}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"{", "invalid_json"),
        (b"[]", "not_object"),
        (b'{"$type":"ping"}', "unknown_frame"),
        (b'{"$type":"message"}', "missing_field"),
        (_v2({**_P, "$type": "network.bsky.jetstream.subscribeEvents#sync"}), "unsupported_kind"),
        (_v2({**_P, "$type": "network.bsky.jetstream.subscribeEvents#bogus"}), "unknown_kind"),
        (_v2({**_P, "$type": "com.example.other#commit"}), "unknown_kind"),
        (_v2({k: v for k, v in _P.items() if k != "seq"}), "missing_field"),
        (_v2({**_P, "seq": -1}), "invalid_field"),
        (_v2({**_P, "seq": "9"}), "invalid_field"),
        (_v2({**_P, "time": "yesterday"}), "invalid_time"),
        (_v2({**_P, "time": "2026-07-04T14:38:08"}), "invalid_time"),
        (_v2({k: v for k, v in _P.items() if k != "rkey"}), "missing_field"),
        (_v2({**_P, "rev": "zzz"}), "invalid_rev"),
        (_v2({**_P, "did": "nobody"}), "invalid_did"),
        (_v2({k: v for k, v in _P.items() if k != "record"}), "missing_record"),
        (
            _v2({**_P, "$type": "network.bsky.jetstream.subscribeEvents#account", "account": {"did": DID}}),
            "missing_field",
        ),
        (_v2({**_P, "$type": "network.bsky.jetstream.subscribeEvents#identity"}), "missing_field"),
        (
            _v2(
                {
                    **_P,
                    "$type": "network.bsky.jetstream.subscribeEvents#identity",
                    "identity": {"did": "did:web:x.y"},
                }
            ),
            "did_mismatch",
        ),
    ],
)
def test_v2_rejections(data: bytes, reason: str) -> None:
    out = parse_v2(data, "jetstream-v2:h")
    assert isinstance(out, Malformed), out
    assert out.reason == reason, out
    assert out.source == "jetstream-v2:h"


def test_v2_rejection_keeps_seq_and_did() -> None:
    out = parse_v2(_v2({**_P, "rev": "zzz"}), "s")
    assert isinstance(out, Malformed) and (out.did, out.cursor) == (DID, 9)
    typed = parse_v2(_v2({**_P, "rkey": 5}), "s")
    assert isinstance(typed, Malformed) and (typed.did, typed.cursor) == (DID, 9)


def test_v2_account_uses_upstream_seq_and_time() -> None:
    payload = {
        "$type": "network.bsky.jetstream.subscribeEvents#account",
        "seq": 77,
        "did": DID,
        "time": "2026-07-04T14:38:08.000001Z",
        "account": {
            "did": DID,
            "active": False,
            "status": "takendown",
            "seq": 31527015471,
            "time": "2026-07-04T14:38:07.877Z",
        },
    }
    ev = parse_v2(_v2(payload), "s")
    assert isinstance(ev, Event)
    assert (ev.cursor, ev.seq, ev.time, ev.time_us) == (
        77,
        31527015471,
        "2026-07-04T14:38:07.877Z",
        1783175888000001,
    )
    assert (ev.active, ev.status) == (False, "takendown")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_v2_never_raises_on_bytes(data: bytes) -> None:
    out = parse_v2(data, "s")
    assert out is None or isinstance(out, (Event, Malformed, StreamNotice))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([*_P.keys(), "identity", "account", "payload"]), _json)
def test_v2_never_raises_on_mutated_frames(field: str, value: Any) -> None:
    frame: dict[str, Any] = {"$type": "message", "payload": dict(_P)}
    if field == "payload":
        frame["payload"] = value
    else:
        frame["payload"][field] = value
    out = parse_v2(json.dumps(frame), "s")
    assert out is None or isinstance(out, (Event, Malformed, StreamNotice))


def test_frame_positions() -> None:
    assert frame_cursor_v1(golden()[0]) == json.loads(golden()[0])["time_us"]
    assert frame_cursor_v1(b"{}") is None and frame_cursor_v1(b"nope") is None
    assert frame_position_v2(_v2(_P)) == (9, 1783175888085434)
    assert frame_position_v2(b'{"$type":"error"}') == (None, None)


@pytest.mark.parametrize(
    "over",
    [
        {"rev": "3mptbypluud2"},
        {"operation": "upsert"},
        {"collection": "fm.plyr"},
        {"collection": "fm.plyr.tr ack"},
        {"rkey": ".."},
        {"record": None},
        {"cid": None},
        {"cid": "zdj7WWeQ43G6JJvLWQWZpyHuAMq6uYWRjkBXFad11vE2LHhQ7"},
    ],
    ids=repr,
)
def test_v1_and_v2_judge_a_commit_alike(over: dict[str, Any]) -> None:
    # Both wires build their Event in one place, so a bad commit gets the same reason and detail from either.
    line = v1(commit={k: v for k, v in commit(**over).items() if v is not None})
    one = parse_v1(line, "jetstream", wanted=None)
    two = parse_v2(v2_from_v1(line, 9), "jetstream-v2:h", wanted=None)
    assert isinstance(one, Malformed) and isinstance(two, Malformed), (one, two)
    assert (one.reason, one.detail, one.did) == (two.reason, two.detail, two.did)


# ----------------------------------------------------------------------------------------------------
# what is ours when a line is broken: the watched namespace decides, never the shape of the damage

_LIKE_OF_OUR_TRACK = commit(
    collection="app.bsky.feed.like",
    record={"$type": "app.bsky.feed.like", "subject": {"uri": f"at://{DID}/fm.plyr.track/3mptbyplj5d2a"}},
)


def _cut(data: bytes, after: bytes) -> bytes:
    """`data` truncated right after the first `after`, as a capture killed mid-line leaves it."""
    return data[: data.index(after) + len(after)]


def _on_wire(line: bytes, wire: str, spacing: str) -> bytes:
    """A whole v1 line as `wire` carries it, compact (as Jetstream writes) or spaced (as json.dumps does)."""
    data = v2_from_v1(line, 9) if wire == "v2" else line
    return json.dumps(json.loads(data), separators=(",", ":") if spacing == "compact" else None).encode()


# (line, cut after, expected reason or None for "not ours")
_BROKEN: list[tuple[bytes, bytes | None, str | None]] = [
    # Ours, truncated: in the record, or inside the collection once the namespace is written.
    (v1(), b'"a song', "invalid_json"),
    (v1(), b"fm.plyr.tr", "invalid_json"),
    (v1(), b'"fm.pl', "invalid_json"),
    # Another collection's, truncated: even when its record mentions our namespace (a like of one of our tracks),
    # and even when cut inside its collection, once that can no longer be ours.
    (v1(commit=_LIKE_OF_OUR_TRACK), b"fm.plyr.track/", None),
    (v1(commit=commit(collection="app.bsky.feed.post")), b'"app.bsky.f', None),
    # Cut where it could still be a collection we want (app.bsky.actor.profile): ours to reject.
    (v1(commit=commit(collection="app.bsky.feed.post")), b'"app.bs', "invalid_json"),
    # Cut before it names its collection: whose it was cannot be told, so it is ours to reject.
    (v1(commit=commit(collection="app.bsky.feed.post")), b'"operation', "invalid_json"),
    # Another collection's, whole but broken.
    (v1(commit=commit(collection="app.bsky.feed.post", rev=5)), None, None),
    (v1(commit=_LIKE_OF_OUR_TRACK), None, None),
    # A commit that names no collection at all is ours to reject: it cannot be anyone else's.
    (v1(commit=_DROP), None, "missing_field"),
    (v1(commit=None), None, "missing_field"),
    (v1(commit={k: v for k, v in commit().items() if k not in ("collection", "record")}), None, "missing_field"),
    # Not a commit: ours (identity and account events are all kept), so rejected when broken.
    (v1("identity"), b'"handle', "invalid_json"),
]


@pytest.mark.parametrize("spacing", ["compact", "spaced"])
@pytest.mark.parametrize("wire", ["v1", "v2"])
@pytest.mark.parametrize(("line", "after", "reason"), _BROKEN, ids=repr)
def test_a_broken_line_is_ours_exactly_when_it_does_not_name_another_collection(
    line: bytes, after: bytes | None, reason: str | None, wire: str, spacing: str
) -> None:
    if wire == "v2" and json.loads(line)["kind"] == "commit" and not isinstance(json.loads(line).get("commit"), dict):
        # v2 carries a commit's fields in its payload: "no commit body" is a payload without them.
        frame = {"$type": "message", "payload": {k: v for k, v in _P.items() if k not in commit()}}
        data = json.dumps(frame, separators=(",", ":") if spacing == "compact" else None).encode()
    else:
        data = _on_wire(line, wire, spacing)
    if after is not None:
        data = _cut(data, after)
    out = (parse_v2 if wire == "v2" else parse_v1)(data, "s")
    if reason is None:
        assert out is None, out
    else:
        assert isinstance(out, Malformed), out
        assert out.reason == reason, out


def test_every_collection_is_kept_without_a_prefix_even_when_broken() -> None:
    # Without a prefix (a capture of everything) nothing is "another collection's": broken is rejected.
    like = _on_wire(v1(commit=_LIKE_OF_OUR_TRACK), "v1", "compact")
    out = parse_v1(_cut(like, b"fm.plyr.track/"), "s", wanted=None)
    assert isinstance(out, Malformed) and out.reason == "invalid_json"
    post = _on_wire(v1(commit=commit(collection="app.bsky.feed.post", rev=5)), "v1", "compact")
    out = parse_v1(post, "s", wanted=None)
    assert isinstance(out, Malformed) and out.reason == "invalid_field"
