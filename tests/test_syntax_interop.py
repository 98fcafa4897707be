"""The atproto interop vectors (tests/interop/, see its README) against every place that judges identifier
syntax: `indexer.atproto.syntax` and the Lexicon formats, the Jetstream parser (v1 and v2), the relay firehose
decoder, and the lexicon validator. An identifier must be accepted by all of them or by none, so that the same
event cannot be indexed from one source and rejected from another.

Each source is driven through its real entry point (`parse_v1`, `parse_v2`, `decode_frame`,
`Validator.validate`), with the vector placed in the field that carries that syntax on the wire:

- DID: Jetstream `did` (commit and identity events); firehose `#commit` `repo` and `#identity` `did`;
  validator `format: did`.
- NSID: Jetstream `collection`; firehose op path `<collection>/<rkey>`; validator `format: nsid`, `key: nsid`.
- record key: Jetstream `rkey`; firehose op path; validator `format: record-key`, `key: any`.
- TID: Jetstream and firehose `rev`; validator `format: tid`, `key: tid`.
- CID: Jetstream `cid`; firehose CIDs are bytes, so the data-model fixtures (real blocks and their CIDs) are
  run through it instead; validator `format: cid`.
- handle: no source judges it (each carries `identity.handle` as it came; the fold checks it with
  `is_handle`); validator `format: handle`.
- datetime: validator `format: datetime`; Jetstream v2 envelope `time` for the valid vectors (see below).
- AT-URI, at-identifier, language, uri: only found in record content, so the validator's formats.

The vector files' "valid" and "invalid" are followed everywhere, with these deliberate exceptions:

* A Jetstream `cid` is the string form of a record's CID, which the data model fixes as base32 (`b...`); the
  firehose carries the same CIDs as bytes and prints them that way. A CID valid in another multibase
  (`z...`, `m...`, `f...`) is a valid Lexicon `cid` string but cannot be the CID of a Jetstream commit, so
  Jetstream refuses it as `invalid_cid` (`indexer.atproto.syntax.is_base32_cid`).
* Jetstream v2's envelope `time` is Jetstream's own clock and only feeds `Event.time_us`; it is read
  leniently (`indexer.events.parse_time_us`) and is no syntax gate, so only the valid vectors are run through
  it. The one valid vector outside Python's calendar (year 0) cannot become a unix time and is `invalid_time`.

`*_parse_invalid.txt` vectors are well-formed but semantically invalid (month 0, a repeated language subtag);
the spec refuses them, and so does every check here.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import libipld
import pytest

from indexer.atproto.lexicon import FORMATS, Validator, is_language, is_uri
from indexer.atproto.syntax import (
    is_at_identifier,
    is_at_uri,
    is_base32_cid,
    is_cid,
    is_datetime,
    is_did,
    is_handle,
    is_nsid,
    is_record_key,
    is_tid,
)
from indexer.events import Event, Malformed
from indexer.firehose.frames import decode_frame
from indexer.jetstream.parse import parse_v1, parse_v2
from tests.test_firehose_support import T0, FakeRepo, Op, make_frame

INTEROP = Path(__file__).parent / "interop"
SYNTAX = INTEROP / "syntax"

# vector file name -> the check that defines it
CHECKS: dict[str, Callable[[str], bool]] = {
    "atidentifier": is_at_identifier,
    "aturi": is_at_uri,
    "cid": is_cid,
    "datetime": is_datetime,
    "did": is_did,
    "handle": is_handle,
    "language": is_language,
    "nsid": is_nsid,
    "recordkey": is_record_key,
    "tid": is_tid,
    "uri": is_uri,
}
# vector file name -> Lexicon string format
FORMAT_OF = {
    "atidentifier": "at-identifier",
    "aturi": "at-uri",
    "cid": "cid",
    "datetime": "datetime",
    "did": "did",
    "handle": "handle",
    "language": "language",
    "nsid": "nsid",
    "recordkey": "record-key",
    "tid": "tid",
    "uri": "uri",
}


def vectors(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, value) for each vector in a file, read as the reference harnesses read them: blank lines
    and lines starting with "#" are skipped, every other line is one value, surrounding spaces included. (So
    the record-key vector "#extra" is a comment here as there; tests/test_lexicon_formats.py covers it.)"""
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        if line and not line.startswith("#"):
            yield number, line


def cases(*names: str) -> list[Any]:
    """pytest params `(name, value, valid)` for every vector of the named syntaxes."""
    out = []
    for name in names:
        paths = sorted(SYNTAX.glob(f"{name}_*.txt"))
        assert paths, name
        for path in paths:
            valid = path.stem.endswith("_valid")
            out += [pytest.param(name, value, valid, id=f"{path.stem}:{n}") for n, value in vectors(path)]
    return out


def test_every_vector_file_is_checked() -> None:
    names = {path.stem.split("_")[0] for path in SYNTAX.glob("*.txt")}
    assert names == set(CHECKS) == set(FORMAT_OF)
    assert set(FORMAT_OF.values()) == set(FORMATS)


# --- the checks themselves ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "value", "valid"), cases(*CHECKS))
def test_syntax_check(name: str, value: str, valid: bool) -> None:
    assert CHECKS[name](value) is valid
    assert FORMATS[FORMAT_OF[name]] is CHECKS[name]


# --- lexicon validator -------------------------------------------------------------------------------------


def _record_lexicon(nsid: str, key: str, properties: dict[str, Any]) -> dict[str, Any]:
    record = {"type": "object", "properties": properties}
    return {"lexicon": 1, "id": nsid, "defs": {"main": {"type": "record", "key": key, "record": record}}}


FORMATS_NSID = "test.interop.formats"
# Each format twice: alone (the validator's format-only fast path) and with a length rule (its general path).
VALIDATOR = Validator(
    {
        FORMATS_NSID: _record_lexicon(
            FORMATS_NSID,
            "any",
            {
                **{fmt: {"type": "string", "format": fmt} for fmt in FORMATS},
                **{f"{fmt}-bounded": {"type": "string", "format": fmt, "maxLength": 100_000} for fmt in FORMATS},
            },
        ),
        "test.interop.tidkey": _record_lexicon("test.interop.tidkey", "tid", {}),
        "test.interop.nsidkey": _record_lexicon("test.interop.nsidkey", "nsid", {}),
    }
)


@pytest.mark.parametrize(("name", "value", "valid"), cases(*CHECKS))
def test_lexicon_format_field(name: str, value: str, valid: bool) -> None:
    fmt = FORMAT_OF[name]
    for field in (fmt, f"{fmt}-bounded"):
        got = VALIDATOR.validate(FORMATS_NSID, "self", {"$type": FORMATS_NSID, field: value})
        if valid:
            assert got is None, got
        else:
            assert got is not None and (got.path, got.rule) == (field, f"format:{fmt}"), got


@pytest.mark.parametrize(
    ("name", "value", "valid"),
    [*cases("recordkey"), *cases("tid"), *cases("nsid")],
)
def test_lexicon_record_key(name: str, value: str, valid: bool) -> None:
    collection = {"recordkey": FORMATS_NSID, "tid": "test.interop.tidkey", "nsid": "test.interop.nsidkey"}[name]
    got = VALIDATOR.validate(collection, value, {"$type": collection})
    if valid:
        assert got is None, got
    else:
        assert got is not None and (got.path, got.rule) == ("rkey", "key"), got


# --- Jetstream ---------------------------------------------------------------------------------------------

DID = "did:plc:hqvhxrowqbemo5e4wjnj6zao"
REV = "3mptbypluud2a"
RKEY = "3mptbyplj5d2a"
CID = "bafyreiguce4jh7kcbmof3pmcvasifqtw24b6isakj5ve5ga2b4z4alpc4i"
T_US = 1783175888085434
TIME = "2026-07-04T14:38:08.085434Z"
RECORD = {"$type": "fm.plyr.track", "title": "a song"}


def _commit(**over: Any) -> dict[str, Any]:
    fields = {"rev": REV, "operation": "create", "collection": "fm.plyr.track", "rkey": RKEY, "record": RECORD}
    return {**fields, "cid": CID, **over}


def jetstream(kind: str = "commit", *, did: str = DID, time: str = TIME, body: Any = None, **over: Any) -> list[Any]:
    """The same event as a v1 line and as a v2 frame, each parsed with no collection filter. `body` is the
    identity object; `over` overrides commit fields."""
    if kind == "commit":
        v1 = {"did": did, "time_us": T_US, "kind": kind, "commit": _commit(**over)}
        payload = {"seq": 9, "did": did, "time": time, **_commit(**over)}
    else:
        v1 = {"did": did, "time_us": T_US, "kind": kind, kind: body}
        payload = {"seq": 9, "did": did, "time": time, kind: body}
    v2 = {"$type": "message", "payload": {"$type": f"network.bsky.jetstream.subscribeEvents#{kind}", **payload}}
    return [
        parse_v1(json.dumps(v1), "jetstream", wanted=None),
        parse_v2(json.dumps(v2), "jetstream-v2:test", wanted=None),
    ]


def _assert_outcome(results: list[Any], valid: bool, reason: str) -> None:
    for got in results:
        if valid:
            assert isinstance(got, Event), got
        else:
            assert isinstance(got, Malformed) and got.reason == reason, got


# vector file -> (the Jetstream commit field carrying it, the rejection reason)
JETSTREAM_FIELD = {
    "nsid": ("collection", "invalid_collection"),
    "recordkey": ("rkey", "invalid_rkey"),
    "tid": ("rev", "invalid_rev"),
}


@pytest.mark.parametrize(("name", "value", "valid"), cases(*JETSTREAM_FIELD))
def test_jetstream_commit_field(name: str, value: str, valid: bool) -> None:
    field, reason = JETSTREAM_FIELD[name]
    results = jetstream(**{field: value})
    _assert_outcome(results, valid, reason)
    if valid:
        assert all(getattr(ev, field) == value for ev in results)


@pytest.mark.parametrize(("name", "value", "valid"), cases("did"))
def test_jetstream_did(name: str, value: str, valid: bool) -> None:
    _assert_outcome(jetstream(did=value), valid, "invalid_did")
    _assert_outcome(jetstream("identity", did=value, body={"did": value}), valid, "invalid_did")


@pytest.mark.parametrize(("name", "value", "valid"), cases("cid"))
def test_jetstream_cid(name: str, value: str, valid: bool) -> None:
    # Only the base32 string form is a Jetstream commit CID (see the module docstring).
    _assert_outcome(jetstream(cid=value), valid and value.startswith("b"), "invalid_cid")


@pytest.mark.parametrize(("name", "value", "valid"), [c for c in cases("datetime") if c.values[2]])
def test_jetstream_v2_time_takes_every_valid_datetime(name: str, value: str, valid: bool) -> None:
    got = jetstream(time=value)[1]
    if value.startswith("0000-"):  # year 0: no unix time (see the module docstring)
        assert isinstance(got, Malformed) and got.reason == "invalid_time", got
    else:
        assert isinstance(got, Event) and got.time_us is not None, got


# --- handles: no source judges them; each carries the handle as it came, for the fold to check ---------------


@pytest.mark.parametrize(("name", "value", "valid"), cases("handle"))
def test_handle_is_carried_as_is_by_every_source(name: str, value: str, valid: bool) -> None:
    events = jetstream("identity", body={"did": DID, "handle": value, "seq": 7, "time": TIME})
    frame = make_frame({"op": 1, "t": "#identity"}, {"seq": 7, "did": DID, "time": T0, "handle": value})
    for ev in [*events, *decode_frame(frame, source="firehose:test")]:
        assert isinstance(ev, Event) and ev.handle == value, ev


# --- relay firehose ----------------------------------------------------------------------------------------


def _everything(_: str) -> bool:
    return True


def firehose_commit(repo: FakeRepo, path: str, *, rev: str = REV, record: dict[str, Any] = RECORD) -> list[Any]:
    """A `#commit` frame creating `record` at `path`, decoded with every collection wanted."""
    frame = repo.commit_frame([Op("create", path, record)], rev=rev)
    return decode_frame(frame, source="firehose:test", want=_everything)


@cache
def _repo() -> FakeRepo:
    return FakeRepo(DID)


@pytest.mark.parametrize(("name", "value", "valid"), cases("did"))
def test_firehose_did(name: str, value: str, valid: bool) -> None:
    _assert_outcome(firehose_commit(FakeRepo(value), f"fm.plyr.track/{RKEY}"), valid, "invalid_field")
    identity = make_frame({"op": 1, "t": "#identity"}, {"seq": 7, "did": value, "time": T0})
    _assert_outcome(decode_frame(identity, source="firehose:test"), valid, "invalid_field")


@pytest.mark.parametrize(("name", "value", "valid"), cases("tid"))
def test_firehose_rev(name: str, value: str, valid: bool) -> None:
    _assert_outcome(firehose_commit(_repo(), f"fm.plyr.track/{RKEY}", rev=value), valid, "invalid_rev")


@pytest.mark.parametrize(("name", "value", "valid"), cases("nsid"))
def test_firehose_collection(name: str, value: str, valid: bool) -> None:
    results = firehose_commit(_repo(), f"{value}/{RKEY}")
    _assert_outcome(results, valid, "invalid_path")
    if valid:
        assert [ev.collection for ev in results] == [value]


@pytest.mark.parametrize(("name", "value", "valid"), cases("recordkey"))
def test_firehose_rkey(name: str, value: str, valid: bool) -> None:
    results = firehose_commit(_repo(), f"fm.plyr.track/{value}")
    _assert_outcome(results, valid, "invalid_path")
    if valid:
        assert [ev.rkey for ev in results] == [value]


# --- CIDs of real blocks: the data-model fixtures ----------------------------------------------------------


def _fixtures() -> list[dict[str, Any]]:
    fixtures: list[dict[str, Any]] = json.loads((INTEROP / "data-model" / "data-model-fixtures.json").read_text())
    return fixtures


def _links(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        if isinstance(value.get("$link"), str):
            yield value["$link"]
        for item in value.values():
            yield from _links(item)
    elif isinstance(value, list):
        for item in value:
            yield from _links(item)


@pytest.mark.parametrize("fixture", _fixtures(), ids=lambda f: str(f["cid"]))
def test_data_model_fixture_cids_pass_every_source(fixture: dict[str, Any]) -> None:
    cid, data = fixture["cid"], fixture["json"]
    for link in [cid, *_links(data)]:
        assert is_cid(link) and is_base32_cid(link), link
    # The firehose gets the record as DAG-CBOR and names it by the CID it computes.
    encoded = fixture["cbor_base64"]
    block = libipld.decode_dag_cbor(base64.b64decode(encoded + "=" * (-len(encoded) % 4)))
    (ev,) = firehose_commit(_repo(), f"test.interop.data/{RKEY}", record=block)
    assert isinstance(ev, Event) and (ev.cid, ev.record) == (cid, data), ev
    # Jetstream gets the same record as JSON with the CID beside it.
    for ev in jetstream(collection="test.interop.data", record=data, cid=cid):
        assert isinstance(ev, Event) and (ev.cid, ev.record) == (cid, data), ev


# --- "a.b": two segments is not an NSID, wherever it appears -----------------------------------------------


def test_two_segment_nsid_is_refused_by_the_syntax_check() -> None:
    assert not is_nsid("a.b")
    assert not FORMATS["nsid"]("a.b")


def test_two_segment_nsid_is_refused_by_jetstream() -> None:
    v1, v2 = jetstream(collection="a.b")
    for got in (v1, v2):
        assert isinstance(got, Malformed) and got.reason == "invalid_collection", got
        assert got.detail == "collection 'a.b' is not an NSID"


def test_two_segment_nsid_is_refused_by_the_firehose() -> None:
    (got,) = firehose_commit(_repo(), f"a.b/{RKEY}")
    assert isinstance(got, Malformed) and got.reason == "invalid_path", got


def test_two_segment_nsid_is_refused_by_the_lexicon_validator() -> None:
    got = VALIDATOR.validate(FORMATS_NSID, "self", {"$type": FORMATS_NSID, "nsid": "a.b"})
    assert got is not None and got.rule == "format:nsid"
    got = VALIDATOR.validate("test.interop.nsidkey", "a.b", {"$type": "test.interop.nsidkey"})
    assert got is not None and got.rule == "key"
