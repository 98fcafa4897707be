"""Hostile input, bounded: the fuzz targets of `bench/fuzz/targets.py` driven by hypothesis in the default suite
(the million-input runs are `bench/fuzz/run.py`). Each input must be accepted, skipped or rejected with a reason;
anything else is a `PropertyViolation` or an exception."""

from __future__ import annotations

import random
import time

import libipld
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.fuzz.targets import PropertyViolation, check_frame, check_jetstream, check_record, seeds
from indexer.events import Malformed
from indexer.jetstream.parse import frame_cursor_v1, frame_position_v2, parse_v1, parse_v2

FAST = settings(max_examples=400, deadline=None, database=None, suppress_health_check=list(HealthCheck))

_SEEDS = {name: seeds(name, limit=120) for name in ("frames", "jetstream", "validator")}


def _mutated(name: str) -> st.SearchStrategy[bytes]:
    """A seed with a few byte-level edits (flip, insert, delete, truncate), like a mutation fuzzer's first steps."""

    def mutate(args: tuple[int, int, list[tuple[int, int, int]]]) -> bytes:
        index, cut, edits = args
        data = bytearray(_SEEDS[name][index % len(_SEEDS[name])])
        for op, pos, value in edits:
            if not data:
                break
            at = pos % len(data)
            if op == 0:
                data[at] = value
            elif op == 1:
                data.insert(at, value)
            else:
                del data[at]
        return bytes(data[: max(1, len(data) - cut)])

    return st.tuples(
        st.integers(0, 10_000),
        st.integers(0, 40),
        st.lists(st.tuples(st.integers(0, 2), st.integers(0, 1 << 20), st.integers(0, 255)), max_size=6),
    ).map(mutate)


@pytest.mark.parametrize(
    ("name", "check"), [("frames", check_frame), ("jetstream", check_jetstream), ("validator", check_record)]
)
def test_every_seed_is_accepted(name: str, check: object) -> None:
    assert callable(check)
    outcomes = [check(s) for s in _SEEDS[name]]
    # The seeds are real traffic and valid synthetic records: nearly all go through.
    assert outcomes.count("accepted") + outcomes.count("skipped") >= 0.9 * len(outcomes)


@FAST
@given(st.one_of(st.binary(max_size=2048), _mutated("frames")))
def test_frame_decoder_accepts_or_rejects_with_a_reason(data: bytes) -> None:
    assert check_frame(data) in ("accepted", "rejected", "skipped", "empty")


@FAST
@given(st.one_of(st.binary(max_size=2048), _mutated("jetstream")))
def test_jetstream_parser_accepts_or_rejects_with_a_reason(data: bytes) -> None:
    # "unencodable": a structurally mutated event too deep to write as JSON at all; the parser is not called.
    assert check_jetstream(data) in ("accepted", "rejected", "skipped", "empty", "unencodable")


@FAST
@given(st.one_of(st.binary(max_size=512), _mutated("validator")))
def test_validator_accepts_or_rejects_with_a_reason(data: bytes) -> None:
    assert check_record(data) in ("accepted", "rejected")


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=30,
)


@FAST
@given(st.sampled_from(["fm.plyr.track", "fm.plyr.like", "fm.plyr.list", "fm.plyr.comment"]), _json)
def test_any_json_value_as_a_record_is_judged(collection: str, value: object) -> None:
    record = value if not isinstance(value, dict) else {"$type": collection, **value}
    data = bytes([1, 0, 0]) + msgspec.json.encode(record)
    assert check_record(data) in ("accepted", "rejected")


def test_the_property_catches_a_catch_all_rejection() -> None:
    # The check must fail when a decoder's own catch-all fires: a frame decoder that raised inside would
    # surface as reason "decode_error". Simulate it on the contract checker itself.
    from bench.fuzz import targets

    original = targets.decode_frame
    try:
        targets.decode_frame = lambda data, **kw: [Malformed(reason="decode_error", detail="boom")]  # type: ignore[assignment]
        with pytest.raises(PropertyViolation):
            check_frame(b"\x00anything")
    finally:
        targets.decode_frame = original


# Found by fuzzing: msgspec raises UnicodeDecodeError (not DecodeError) for invalid UTF-8 inside a JSON string,
# which escaped the Jetstream parsers; a replay stopped at such a line on every restart.
BAD_UTF8 = [
    b'{"did":"did:plc:\xd2a","time_us":1,"kind":"commit","commit":{"collection":"fm.plyr.track"}}',
    b'{"junk":"\xd2","did":"did:plc:a","time_us":"x","kind":"commit","commit":{"collection":"fm.plyr.track"}}',
]


@pytest.mark.parametrize("line", BAD_UTF8)
def test_invalid_utf8_is_a_rejection_not_an_exception(line: bytes) -> None:
    got = parse_v1(line, "s")
    assert isinstance(got, Malformed) and got.reason == "invalid_json" and "utf-8" in got.detail
    assert frame_cursor_v1(line) in (None, 1)
    v2 = b'{"$type":"message","payload":{"$type":"#commit","did":"\xd2","seq":1,"time":"x"}}'
    got2 = parse_v2(v2, "s")
    assert isinstance(got2, Malformed) and got2.reason == "invalid_json"
    assert frame_position_v2(v2) == (1, None)
    assert frame_position_v2(b'{"payload":{"seq":1,"time":"\xd2"}}') == (None, None)


def test_structured_records_reach_the_validator() -> None:
    rng = random.Random(4)
    outcomes = [check_record(bytes([0]) + rng.randbytes(48)) for _ in range(3000)]
    assert set(outcomes) == {"accepted", "rejected"}
    assert outcomes.count("rejected") > 100 and outcomes.count("accepted") > 10


def test_dag_cbor_records_are_judged() -> None:
    data = bytes([2, 0, 0]) + libipld.encode_dag_cbor({"$type": "fm.plyr.comment", "text": b"bytes, not text"})
    assert check_record(data) == "rejected"


# Found by fuzzing: the validator's messages quoted the offending value through a full repr(), which raised for
# an integer past 4300 digits (surfacing as an "internal" failure) and cost seconds for a large value.
@pytest.mark.parametrize(
    "value", [10**5000, [[list(range(50))] * 50] * 200, "x" * 1_000_000], ids=["huge-int", "big-list", "long-string"]
)
def test_offending_values_are_quoted_briefly(value: object) -> None:
    from indexer.atproto.lexicon import Validator

    started = time.perf_counter()
    invalid = Validator.load().validate("fm.plyr.like", "3lrnqk7qs2222", {"$type": value})
    assert invalid is not None and invalid.rule == "$type"
    assert len(invalid.message) < 200
    assert time.perf_counter() - started < 0.5
