"""The lexicon-driven record validator, on the fm.plyr.* lexicons and on purpose-built ones."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.atproto.lexicon import Invalid, LexiconError, Validator, default_directory, load_documents

DID = "did:plc:xbtmt2zjwlrfegqvch7fboei"
OTHER_DID = "did:plc:ewvi7nxzyoun6zhxrhs64oiz"
TID = "3m5ztkmxxgk2s"
TRACK_URI = f"at://{DID}/fm.plyr.track/3m5zsy4ryqc2a"
CID = "bafyreihfsh4wnrq3rwtdg3wjkt2g5hgsxcqyzxybmaq4qu6avtwocrmmgm"
BLOB_CID = "bafkreibme22gw2h7y2h7tg2fhqotaqjucnbc24deqo72b6mkl2egezxhvy"
NOW = "2025-11-20T18:04:11.512Z"

COLLECTIONS = ["fm.plyr.track", "fm.plyr.like", "fm.plyr.list", "fm.plyr.comment", "fm.plyr.actor.profile"]

TRACK: dict[str, Any] = {
    "$type": "fm.plyr.track",
    "title": "Señorita, ça va? 夜の散歩 🌙",
    "artist": "Zoë Ångström",
    "audioUrl": "https://pub-d4ed8efcc8a14fa6.r2.dev/audio/8f14e45fceea167a.mp3",
    "fileType": "mp3",
    "album": "Nächte am Fluss",
    "duration": 245,
    "features": [
        {"did": OTHER_DID, "handle": "mara.bsky.social", "displayName": "Mára ✨"},
        {"did": "did:web:music.example.com"},
    ],
    "imageUrl": "https://pub-d4ed8efcc8a14fa6.r2.dev/images/8f14e45fceea167a.jpg",
    "createdAt": NOW,
    "supportGate": {"type": "any"},
    "description": "Liner notes — recorded in one take.\n\nThanks to everyone at the Kesselhaus.",
    "labels": {"$type": "com.atproto.label.defs#selfLabels", "values": [{"val": "graphic-media"}]},
    "audioBlob": {"$type": "blob", "ref": {"$link": BLOB_CID}, "mimeType": "audio/mpeg", "size": 5_843_210},
}
LIKE: dict[str, Any] = {"$type": "fm.plyr.like", "subject": {"uri": TRACK_URI, "cid": CID}, "createdAt": NOW}
LIST: dict[str, Any] = {
    "$type": "fm.plyr.list",
    "name": "Späte Stunden 🌙",
    "listType": "playlist",
    "items": [{"subject": {"uri": f"at://{DID}/fm.plyr.track/3m5zsy4ryqc{i:02d}", "cid": CID}} for i in range(5)],
    "createdAt": NOW,
    "updatedAt": "2025-11-21T09:00:00+01:00",
}
COMMENT: dict[str, Any] = {
    "$type": "fm.plyr.comment",
    "subject": {"uri": TRACK_URI, "cid": CID},
    "text": "this drop at 2:14 😮‍💨",
    "timestampMs": 134_000,
    "createdAt": NOW,
    "updatedAt": "2025-11-20T18:05:00Z",
}
PROFILE: dict[str, Any] = {
    "$type": "fm.plyr.actor.profile",
    "avatar": "https://cdn.plyr.fm/avatars/xbtmt2zj.webp",
    "bio": "Producer from Köln. Ambient, dub techno, 夜.",
    "createdAt": NOW,
    "updatedAt": NOW,
}

BASE: dict[str, tuple[str, dict[str, Any]]] = {
    "track": ("fm.plyr.track", TRACK),
    "like": ("fm.plyr.like", LIKE),
    "list": ("fm.plyr.list", LIST),
    "comment": ("fm.plyr.comment", COMMENT),
    "profile": ("fm.plyr.actor.profile", PROFILE),
}
RKEY = {"fm.plyr.actor.profile": "self"}

DELETE = object()
Path_ = tuple[str | int, ...]


def edit(record: dict[str, Any], *changes: tuple[Path_, Any]) -> dict[str, Any]:
    """A deep copy of `record` with the value at each path replaced (or removed, with DELETE)."""
    out = copy.deepcopy(record)
    for path, value in changes:
        target: Any = out
        for step in path[:-1]:
            target = target[step]
        if value is DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value
    return out


@pytest.fixture(scope="module")
def validator() -> Validator:
    return Validator.load()


def check(validator: Validator, collection: str, record: object, rkey: str | None = None) -> Invalid | None:
    return validator.validate(collection, rkey or RKEY.get(collection, TID), record)


# --- loading ----------------------------------------------------------------------------------------------


# teal.fm's play and status records (lexicons/fm/teal), current and legacy namespaces.
TEAL_COLLECTIONS = [
    "fm.teal.feed.play",
    "fm.teal.alpha.feed.play",
    "fm.teal.actor.status",
    "fm.teal.alpha.actor.status",
]


def test_collections_are_the_record_lexicons(validator: Validator) -> None:
    # Bluesky profiles are validated too: the display name and avatar of actors the index knows.
    assert validator.collections == frozenset([*COLLECTIONS, *TEAL_COLLECTIONS, "app.bsky.actor.profile"])


def test_default_directory_is_the_checkout_copy() -> None:
    assert default_directory() == Path(__file__).resolve().parents[1] / "lexicons"
    docs = load_documents()
    assert {"com.atproto.repo.strongRef", "com.atproto.label.defs", *COLLECTIONS} <= set(docs)


def test_explicit_directory(tmp_path: Path) -> None:
    write(tmp_path, {"lexicon": 1, "id": "a.b.rec", "defs": {"main": {"type": "record", "record": OBJ}}})
    v = Validator.load(tmp_path)
    assert v.collections == frozenset({"a.b.rec"})


# --- valid records ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(BASE))
def test_full_records_are_valid(validator: Validator, name: str) -> None:
    collection, record = BASE[name]
    assert check(validator, collection, record) is None


VALID_VARIANTS: list[tuple[str, list[tuple[Path_, Any]]]] = [
    # minimal: only the required fields
    (
        "track",
        [((k,), DELETE) for k in TRACK if k not in ("$type", "title", "artist", "fileType", "createdAt")],
    ),
    ("like", []),
    ("list", [(("name",), DELETE), (("listType",), DELETE), (("updatedAt",), DELETE), (("items",), [])]),
    ("comment", [(("updatedAt",), DELETE)]),
    ("profile", [(("avatar",), DELETE), (("bio",), DELETE), (("updatedAt",), DELETE)]),
    # knownValues are advisory
    ("track", [(("supportGate", "type"), "supporters-tier-3")]),
    ("list", [(("listType",), "mixtape")]),
    # legacy blob form, and a blob whose MIME type has parameters / odd case
    ("track", [(("audioBlob",), {"cid": BLOB_CID, "mimeType": "audio/flac"})]),
    ("track", [(("audioBlob", "mimeType"), "Audio/MPEG; codecs=mp3")]),
    ("track", [(("audioBlob", "size"), 104_857_600)]),  # exactly maxSize
    ("track", [(("duration",), 180.0), (("audioBlob", "size"), 12345.0)]),  # JSON integers written as floats
    # open union: a $type we have no lexicon for is tolerated
    ("track", [(("labels",), {"$type": "com.example.labels#custom", "anything": [1, 2]})]),
    ("track", [(("labels", "values"), [{"val": f"v{i}"} for i in range(10)])]),
    # forward compatibility: unknown fields are allowed, at the top level and nested
    ("track", [(("genre",), "ambient"), (("features", 0, "role"), "vocals"), (("bpm",), 92.5)]),
    ("like", [(("subject", "$type"), "com.atproto.repo.strongRef"), (("via",), {"x": None})]),
    # boundaries
    ("track", [(("title",), "x"), (("fileType",), "f" * 16), (("duration",), 0)]),
    ("track", [(("title",), "é" * 128)]),  # 256 bytes
    ("track", [(("features",), [{"did": OTHER_DID}] * 10)]),
    ("comment", [(("text",), "ü" * 500), (("timestampMs",), 0)]),  # 1000 bytes
    ("list", [(("items",), [{"subject": {"uri": TRACK_URI, "cid": CID}}] * 500)]),
    # 64 graphemes made of 128 code points (e + combining acute): 192 bytes
    ("list", [(("name",), "e\u0301" * 64)]),
    # 64 four-byte emoji: 256 bytes, 64 graphemes, both limits exactly hit
    ("list", [(("name",), "🎵" * 64)]),
    # 256 flags: 512 code points, 2048 bytes, 256 graphemes
    ("profile", [(("bio",), "🇩🇪" * 256)]),
    ("profile", [(("bio",), "a\r\n" * 128)]),  # 384 code points, 256 graphemes (CRLF is one)
    # datetime variants
    ("like", [(("createdAt",), "2025-11-20T18:04:11Z")]),
    ("like", [(("createdAt",), "2025-11-20T18:04:11.123456789-05:30")]),
    ("like", [(("subject", "uri"), "at://mara.bsky.social/fm.plyr.track/3m5zsy4ryqc2a")]),
]


@pytest.mark.parametrize(("name", "changes"), VALID_VARIANTS)
def test_valid_variants(validator: Validator, name: str, changes: list[tuple[Path_, Any]]) -> None:
    collection, record = BASE[name]
    assert check(validator, collection, edit(record, *changes)) is None


def test_validate_does_not_modify_the_record(validator: Validator) -> None:
    record = copy.deepcopy(TRACK)
    check(validator, "fm.plyr.track", record)
    assert record == TRACK


# --- invalid records --------------------------------------------------------------------------------------

FAMILY = "👩\u200d👩\u200d👧\u200d👦"  # one grapheme, 25 bytes

INVALID_CASES: list[tuple[str, list[tuple[Path_, Any]], str, str]] = [
    # required
    ("track", [(("title",), DELETE)], "title", "required"),
    ("track", [(("createdAt",), DELETE)], "createdAt", "required"),
    ("like", [(("subject",), DELETE)], "subject", "required"),
    ("list", [(("items",), DELETE)], "items", "required"),
    ("comment", [(("timestampMs",), DELETE)], "timestampMs", "required"),
    ("profile", [(("createdAt",), DELETE)], "createdAt", "required"),
    # wrong types
    ("track", [(("title",), 123)], "title", "type"),
    ("track", [(("title",), None)], "title", "type"),
    ("track", [(("title",), ["a"])], "title", "type"),
    ("track", [(("duration",), "245")], "duration", "type"),
    ("track", [(("duration",), True)], "duration", "type"),  # bool is not an integer
    ("track", [(("duration",), 245.5)], "duration", "type"),  # no floats in the data model (245.0 is 245)
    ("track", [(("audioBlob", "size"), 0)], "audioBlob.size", "type"),  # positive, non-zero
    ("track", [(("audioBlob", "extra"), 1)], "audioBlob", "type"),  # exactly four keys
    ("track", [(("audioBlob", "ref", "$link"), BLOB_CID[:-1])], "audioBlob.ref.$link", "format:cid"),
    ("track", [(("duration",), 2**63)], "duration", "type"),  # beyond 64 bits
    ("track", [(("features",), {"did": OTHER_DID})], "features", "type"),
    ("track", [(("features", 1), OTHER_DID)], "features[1]", "type"),
    ("track", [(("supportGate",), "any")], "supportGate", "type"),
    ("track", [(("supportGate", "type"), 1)], "supportGate.type", "type"),
    ("list", [(("listType",), 5)], "listType", "type"),
    ("comment", [(("timestampMs",), "134000")], "timestampMs", "type"),
    ("like", [(("subject",), TRACK_URI)], "subject", "type"),
    # byte lengths
    ("track", [(("title",), "x" * 257)], "title", "maxLength"),
    ("track", [(("title",), "é" * 129)], "title", "maxLength"),  # 129 chars but 258 bytes
    ("track", [(("fileType",), "f" * 17)], "fileType", "maxLength"),
    ("track", [(("description",), "d" * 5001)], "description", "maxLength"),
    ("track", [(("features", 0, "displayName"), "n" * 257)], "features[0].displayName", "maxLength"),
    ("comment", [(("text",), "ü" * 500 + "!")], "text", "maxLength"),
    ("track", [(("title",), "")], "title", "minLength"),
    ("track", [(("artist",), "")], "artist", "minLength"),
    ("comment", [(("text",), "")], "text", "minLength"),
    # graphemes vs bytes: 64 graphemes but 1600 bytes fails on bytes; 65 graphemes in 195 bytes on graphemes
    ("list", [(("name",), FAMILY * 64)], "name", "maxLength"),
    ("list", [(("name",), "e\u0301" * 65)], "name", "maxGraphemes"),
    ("profile", [(("bio",), "🇩🇪" * 257)], "bio", "maxGraphemes"),
    ("profile", [(("bio",), "b" * 2561)], "bio", "maxLength"),
    ("profile", [(("bio",), "a\r\n" * 129)], "bio", "maxGraphemes"),
    # minimum
    ("track", [(("duration",), -1)], "duration", "minimum"),
    ("comment", [(("timestampMs",), -1)], "timestampMs", "minimum"),
    # formats
    ("track", [(("createdAt",), "2025-11-20 18:04:11")], "createdAt", "format:datetime"),
    ("track", [(("createdAt",), "2025-11-20T18:04:11.512")], "createdAt", "format:datetime"),  # no timezone
    ("track", [(("createdAt",), "2025-02-30T18:04:11Z")], "createdAt", "format:datetime"),
    ("comment", [(("updatedAt",), "yesterday")], "updatedAt", "format:datetime"),
    ("list", [(("updatedAt",), 1732125600)], "updatedAt", "type"),
    ("track", [(("audioUrl",), "cdn.plyr.fm/audio/a.mp3")], "audioUrl", "format:uri"),
    ("track", [(("imageUrl",), "https://cdn.plyr.fm/a b.jpg")], "imageUrl", "format:uri"),
    ("profile", [(("avatar",), "not a url")], "avatar", "format:uri"),
    ("track", [(("features", 1, "did"), "plc:ewvi7nxzyoun6zhxrhs64oiz")], "features[1].did", "format:did"),
    ("track", [(("features", 0, "handle"), "@mara.bsky.social")], "features[0].handle", "format:handle"),
    ("track", [(("features", 0, "did"), DELETE)], "features[0].did", "required"),
    # strongRef
    ("like", [(("subject", "uri"), "https://plyr.fm/track/1")], "subject.uri", "format:at-uri"),
    ("like", [(("subject", "uri"), f"at://{DID}/fm.plyr.track/")], "subject.uri", "format:at-uri"),
    ("like", [(("subject", "uri"), f"at://{DID}/fm_plyr_track/x")], "subject.uri", "format:at-uri"),
    ("like", [(("subject", "cid"), "not-a-cid!")], "subject.cid", "format:cid"),
    (
        "like",
        [(("subject", "cid"), "QmbWqxBEKC3P8tqsKc98xmWNzrzDtRLMiMPL8wBuTGsMnR")],
        "subject.cid",
        "format:cid",
    ),
    ("like", [(("subject", "cid"), DELETE)], "subject.cid", "required"),
    ("comment", [(("subject", "uri"), 42)], "subject.uri", "type"),
    ("list", [(("items", 3, "subject", "cid"), "bafy!")], "items[3].subject.cid", "format:cid"),
    ("list", [(("items", 2), {"uri": TRACK_URI, "cid": CID})], "items[2].subject", "required"),
    # blobs
    ("track", [(("audioBlob", "mimeType"), "image/png")], "audioBlob.mimeType", "accept"),
    ("track", [(("audioBlob", "mimeType"), "audiox/mpeg")], "audioBlob.mimeType", "accept"),
    ("track", [(("audioBlob", "size"), 104_857_601)], "audioBlob.size", "maxSize"),
    ("track", [(("audioBlob",), "https://cdn.plyr.fm/a.mp3")], "audioBlob", "type"),
    ("track", [(("audioBlob",), {"mimeType": "audio/mpeg", "size": 1})], "audioBlob", "type"),
    ("track", [(("audioBlob", "$type"), "Blob")], "audioBlob", "type"),
    ("track", [(("audioBlob", "ref"), DELETE)], "audioBlob.ref", "type"),
    ("track", [(("audioBlob", "ref"), BLOB_CID)], "audioBlob.ref", "type"),
    ("track", [(("audioBlob", "ref", "$link"), "x")], "audioBlob.ref.$link", "format:cid"),
    ("track", [(("audioBlob", "size"), "5mb")], "audioBlob.size", "type"),
    ("track", [(("audioBlob", "size"), -5)], "audioBlob.size", "type"),
    ("track", [(("audioBlob", "size"), DELETE)], "audioBlob.size", "type"),
    ("track", [(("audioBlob", "mimeType"), DELETE)], "audioBlob.mimeType", "type"),
    ("track", [(("audioBlob",), {"cid": "nope", "mimeType": "audio/mpeg"})], "audioBlob.cid", "format:cid"),
    ("track", [(("audioBlob",), {"cid": BLOB_CID, "mimeType": "video/mp4"})], "audioBlob.mimeType", "accept"),
    # arrays
    ("track", [(("features",), [{"did": OTHER_DID}] * 11)], "features", "maxLength"),
    ("list", [(("items",), [{"subject": {"uri": TRACK_URI, "cid": CID}}] * 501)], "items", "maxLength"),
    # selfLabels union
    ("track", [(("labels", "$type"), DELETE)], "labels.$type", "required"),
    ("track", [(("labels", "$type"), 7)], "labels.$type", "type"),
    ("track", [(("labels",), ["porn"])], "labels", "type"),
    ("track", [(("labels", "values"), [{"val": "x"}] * 11)], "labels.values", "maxLength"),
    ("track", [(("labels", "values", 0, "val"), "v" * 129)], "labels.values[0].val", "maxLength"),
    ("track", [(("labels", "values", 0), {})], "labels.values[0].val", "required"),
    ("track", [(("labels", "values"), DELETE)], "labels.values", "required"),
    # record $type
    ("track", [(("$type",), "fm.plyr.like")], "$type", "$type"),
    ("track", [(("$type",), DELETE)], "$type", "$type"),
    ("like", [(("$type",), "fm.plyr.like#main")], "$type", "$type"),
    # other problems
    ("track", [(("title",), "bad \ud800 surrogate")], "title", "utf8"),
]


@pytest.mark.parametrize(("name", "changes", "path", "rule"), INVALID_CASES)
def test_invalid_records(
    validator: Validator, name: str, changes: list[tuple[Path_, Any]], path: str, rule: str
) -> None:
    collection, record = BASE[name]
    result = check(validator, collection, edit(record, *changes))
    assert result is not None
    assert (result.path, result.rule) == (path, rule), str(result)
    assert result.collection == collection
    assert result.message


@pytest.mark.parametrize(
    ("collection", "rkey", "record"),
    [
        ("fm.plyr.track", "self", TRACK),
        ("fm.plyr.like", "3JZFCIJPJ2Z2A", LIKE),
        ("fm.plyr.like", "zzzzzzzzzzzzz", LIKE),
        ("fm.plyr.comment", "", COMMENT),
        ("fm.plyr.actor.profile", TID, PROFILE),
        ("fm.plyr.actor.profile", "Self", PROFILE),
        ("fm.plyr.list", None, LIST),
        ("fm.plyr.list", 3, LIST),
    ],
)
def test_record_key_must_fit_the_key_type(validator: Validator, collection: str, rkey: Any, record: Any) -> None:
    result = validator.validate(collection, rkey, record)
    assert result is not None
    assert (result.path, result.rule) == ("rkey", "key")


@pytest.mark.parametrize("collection", ["fm.plyr.playlist", "app.bsky.feed.post", "", "com.atproto.repo.strongRef"])
def test_unknown_collection(validator: Validator, collection: str) -> None:
    result = validator.validate(collection, TID, {**LIKE, "$type": collection})
    assert result is not None
    assert (result.collection, result.path, result.rule) == (collection, "", "collection")


@pytest.mark.parametrize("record", [None, [], "record", 1, [LIKE]])
def test_record_must_be_an_object(validator: Validator, record: object) -> None:
    result = validator.validate("fm.plyr.like", TID, record)
    assert result is not None
    assert (result.path, result.rule) == ("", "type")


def test_first_problem_is_reported(validator: Validator) -> None:
    # required fields are checked before the values of present ones
    result = check(validator, "fm.plyr.track", edit(TRACK, (("title",), DELETE), (("duration",), -1)))
    assert result is not None and result.path == "title"
    # then properties in lexicon order
    result = check(validator, "fm.plyr.track", edit(TRACK, (("duration",), -1), (("artist",), "")))
    assert result is not None and result.path == "artist"


def test_invalid_str_and_encoding(validator: Validator) -> None:
    result = check(validator, "fm.plyr.track", edit(TRACK, (("title",), "x" * 300)))
    assert result is not None
    assert str(result) == "fm.plyr.track: title: must be at most 256 bytes (maxLength)"
    assert msgspec.json.decode(msgspec.json.encode(result), type=Invalid) == result
    assert hash(result) == hash(Invalid("fm.plyr.track", "title", "maxLength", result.message))
    unknown = validator.validate("fm.plyr.nope", TID, {})
    assert unknown is not None
    assert str(unknown) == "fm.plyr.nope: is not a known record collection (collection)"


def test_hostile_sizes_are_cheap(validator: Validator) -> None:
    deep: Any = "x"
    for _ in range(100_000):
        deep = [deep]
    huge = "é" * 5_000_000
    start = time.perf_counter()
    # shallow merges: the junk itself is too deep for copy.deepcopy
    cases = [
        ({**TRACK, "title": huge}, "title", "maxLength"),
        ({**TRACK, "title": deep}, "title", "type"),
        ({**TRACK, "features": deep}, "features[0]", "type"),
        ({**TRACK, "createdAt": "2" * 10_000_000}, "createdAt", "format:datetime"),
        ({**TRACK, "labels": {"$type": "x.y.z", "deep": deep}}, None, None),
        ({**TRACK, **{f"extra{i}": i for i in range(100_000)}}, None, None),
    ]
    for record, path, rule in cases:
        result = check(validator, "fm.plyr.track", record)
        if path is None:
            assert result is None
        else:
            assert result is not None and (result.path, result.rule) == (path, rule)
    assert time.perf_counter() - start < 2.0


# --- never raises -----------------------------------------------------------------------------------------

FIELD_NAMES = sorted(
    {
        "$type",
        "$link",
        "$bytes",
        "ref",
        "mimeType",
        "size",
        "cid",
        "uri",
        "values",
        "val",
        "type",
        "did",
        "handle",
    }
    | {key for record in (TRACK, LIKE, LIST, COMMENT, PROFILE) for key in record}
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=30)
    | st.text(st.characters(categories=["Cs"]), max_size=3)  # lone surrogates
    | st.sampled_from([NOW, TRACK_URI, CID, DID, "audio/mpeg", "blob", *COLLECTIONS])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=30,
)
records = json_values | st.builds(
    lambda fields, kind: {**fields, "$type": kind},
    st.dictionaries(st.sampled_from(FIELD_NAMES), json_values, max_size=10),
    st.sampled_from(COLLECTIONS),
)


def _assert_result(result: object) -> None:
    assert result is None or isinstance(result, Invalid)
    if isinstance(result, Invalid):
        assert result.rule not in ("internal", "depth"), result
        assert isinstance(str(result), str)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    collection=st.sampled_from(COLLECTIONS) | st.text(max_size=20),
    rkey=st.sampled_from([TID, "self"]) | json_values,
    record=records,
)
def test_validate_never_raises(validator: Validator, collection: str, rkey: Any, record: Any) -> None:
    _assert_result(validator.validate(collection, rkey, record))


def _paths(value: Any, prefix: Path_ = ()) -> list[Path_]:
    out: list[Path_] = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, inner in value.items():
            out += _paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            out += _paths(inner, (*prefix, i))
    return out


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), name=st.sampled_from(list(BASE)), junk=json_values)
def test_mutated_valid_records_never_raise(validator: Validator, data: st.DataObject, name: str, junk: Any) -> None:
    collection, record = BASE[name]
    path = data.draw(st.sampled_from(_paths(record)))
    _assert_result(check(validator, collection, edit(record, (path, junk))))


utf8_text = st.text(max_size=300).filter(lambda s: 1 <= len(s.encode()) <= 256)


@settings(max_examples=300, deadline=None)
@given(title=utf8_text, artist=utf8_text, duration=st.integers(0, 2**63 - 1), extra=st.booleans())
def test_generated_valid_tracks_are_accepted(
    validator: Validator, title: str, artist: str, duration: int, extra: bool
) -> None:
    record = edit(TRACK, (("title",), title), (("artist",), artist), (("duration",), duration))
    if extra:
        record["x-client"] = {"title": None}
    assert check(validator, "fm.plyr.track", record) is None


# --- the lexicon language itself, on purpose-built lexicons -----------------------------------------------

OBJ: dict[str, Any] = {"type": "object", "properties": {}}


def write(directory: Path, *documents: dict[str, Any]) -> Path:
    for doc in documents:
        path = directory.joinpath(*doc["id"].split(".")).with_suffix(".json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc))
    return directory


KITCHEN: dict[str, Any] = {
    "lexicon": 1,
    "id": "test.kitchen.sink",
    "defs": {
        "main": {
            "type": "record",
            "key": "any",
            "record": {
                "type": "object",
                "required": ["n", "maybe"],
                "nullable": ["maybe"],
                "properties": {
                    "n": {"type": "integer", "minimum": 1, "maximum": 10},
                    "maybe": {"type": "string"},
                    "color": {"type": "string", "enum": ["red", "green"]},
                    "fixed": {"type": "string", "const": "v1"},
                    "seven": {"type": "integer", "const": 7},
                    "square": {"type": "integer", "enum": [1, 4, 9]},
                    "flag": {"type": "boolean"},
                    "always": {"type": "boolean", "const": True},
                    "short": {"type": "string", "minGraphemes": 2, "maxGraphemes": 3},
                    "lang": {"type": "string", "format": "language"},
                    "nsid": {"type": "string", "format": "nsid"},
                    "tid": {"type": "string", "format": "tid"},
                    "rkey": {"type": "string", "format": "record-key"},
                    "who": {"type": "string", "format": "at-identifier"},
                    "raw": {"type": "bytes", "minLength": 2, "maxLength": 4},
                    "link": {"type": "cid-link"},
                    "any": {"type": "unknown"},
                    "tags": {"type": "array", "items": {"type": "string"}, "minLength": 1},
                    "pick": {"type": "union", "refs": ["#a", "test.kitchen.other"], "closed": True},
                    "open": {"type": "union", "refs": ["#a"]},
                    "tok": {"type": "ref", "ref": "#flavor"},
                    "other": {"type": "ref", "ref": "test.kitchen.other"},
                    "image": {"type": "blob", "accept": ["image/png", "image/jpeg"], "maxSize": 1000},
                    "file": {"type": "blob"},
                },
            },
        },
        "a": {"type": "object", "required": ["x"], "properties": {"x": {"type": "integer"}}},
        "flavor": {"type": "token", "description": "a token"},
    },
}
OTHER: dict[str, Any] = {
    "lexicon": 1,
    "id": "test.kitchen.other",
    "defs": {
        "main": {
            "type": "record",
            "key": "nsid",
            "record": {"type": "object", "properties": {"y": {"type": "string", "maxLength": 2}}},
        }
    },
}
TREE: dict[str, Any] = {
    "lexicon": 1,
    "id": "test.kitchen.tree",
    "defs": {
        "main": {
            "type": "record",
            "key": "literal:root",
            "record": {
                "type": "object",
                "properties": {"kids": {"type": "array", "items": {"type": "ref", "ref": "#node"}}},
            },
        },
        "node": {
            "type": "object",
            "properties": {"kids": {"type": "array", "items": {"type": "ref", "ref": "#node"}}},
        },
    },
}


@pytest.fixture(scope="module")
def kitchen(tmp_path_factory: pytest.TempPathFactory) -> Validator:
    return Validator.load(write(tmp_path_factory.mktemp("lex"), KITCHEN, OTHER, TREE))


SINK = {"$type": "test.kitchen.sink", "n": 5, "maybe": None}
BLOB = {"$type": "blob", "ref": {"$link": BLOB_CID}, "mimeType": "image/png", "size": 10}


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"maybe": "text"},
        {"color": "green", "fixed": "v1", "seven": 7, "square": 9, "flag": False, "always": True},
        {"short": "ab", "lang": "pt-BR", "nsid": "a.b.c", "tid": TID, "rkey": "self.", "who": "a.example"},
        {"short": "e\u0301e\u0301e\u0301"},  # 3 graphemes, 6 code points
        {"raw": {"$bytes": "AAE"}, "link": {"$link": CID}, "any": {"a": [1, {"$bytes": "x"}]}},
        {"raw": {"$bytes": "AAECAw=="}, "any": {}},
        {"tags": ["x"], "pick": {"$type": "test.kitchen.sink#a", "x": 1}},
        {"pick": {"$type": "test.kitchen.other", "y": "hi"}},
        {"open": {"$type": "somebody.else.thing", "x": "not checked"}},
        {"tok": "test.kitchen.sink#flavor", "other": {"y": "ok"}},
        {"image": {**BLOB, "mimeType": "image/jpeg"}, "file": {**BLOB, "mimeType": "application/x-anything"}},
    ],
)
def test_kitchen_valid(kitchen: Validator, fields: dict[str, Any]) -> None:
    assert kitchen.validate("test.kitchen.sink", "any:key~1", {**SINK, **fields}) is None


@pytest.mark.parametrize(
    ("fields", "path", "rule"),
    [
        ({"maybe": DELETE}, "maybe", "required"),  # nullable is not optional
        ({"n": None}, "n", "type"),
        ({"n": 0}, "n", "minimum"),
        ({"n": 11}, "n", "maximum"),
        ({"color": "blue"}, "color", "enum"),
        ({"fixed": "v2"}, "fixed", "const"),
        ({"seven": 8}, "seven", "const"),
        ({"square": 2}, "square", "enum"),
        ({"flag": 1}, "flag", "type"),
        ({"always": False}, "always", "const"),
        ({"short": "a"}, "short", "minGraphemes"),
        ({"short": "e\u0301"}, "short", "minGraphemes"),
        ({"short": "abcd"}, "short", "maxGraphemes"),
        ({"lang": "English"}, "lang", "format:language"),
        ({"nsid": "a.b"}, "nsid", "format:nsid"),
        ({"tid": "3jzfcijpj2z21"}, "tid", "format:tid"),
        ({"rkey": ".."}, "rkey", "format:record-key"),
        ({"who": "@a.example"}, "who", "format:at-identifier"),
        ({"raw": {"$bytes": "AA"}}, "raw", "minLength"),
        ({"raw": {"$bytes": "AAECAwQ"}}, "raw", "maxLength"),
        ({"raw": {"$bytes": "A"}}, "raw.$bytes", "format:base64"),
        ({"raw": {"$bytes": "AA=A"}}, "raw.$bytes", "format:base64"),
        ({"raw": {"$bytes": "AA!="}}, "raw.$bytes", "format:base64"),
        ({"raw": "AAEC"}, "raw", "type"),
        ({"raw": {"$bytes": "AAEC", "x": 1}}, "raw", "type"),
        ({"link": {"$link": "nope"}}, "link.$link", "format:cid"),
        ({"link": CID}, "link", "type"),
        ({"any": "text"}, "any", "type"),
        ({"any": {"$bytes": "AAEC"}}, "any", "type"),
        ({"any": {"$link": CID}}, "any", "type"),
        ({"any": BLOB}, "any", "type"),
        ({"tags": []}, "tags", "minLength"),
        ({"tags": ["a", 2]}, "tags[1]", "type"),
        ({"pick": {"$type": "somebody.else.thing"}}, "pick.$type", "closed"),
        ({"pick": {"$type": "test.kitchen.other#main", "y": "hi"}}, "pick.$type", "closed"),  # bare NSID only
        ({"pick": {"$type": "test.kitchen.sink#a"}}, "pick.x", "required"),
        ({"pick": {"$type": "test.kitchen.other", "y": "long"}}, "pick.y", "maxLength"),
        ({"open": {"$type": "test.kitchen.sink#a", "x": "1"}}, "open.x", "type"),
        ({"tok": "test.kitchen.sink#other"}, "tok", "const"),
        ({"other": {"y": 1}}, "other.y", "type"),
        ({"image": {**BLOB, "mimeType": "image/gif"}}, "image.mimeType", "accept"),
        ({"image": {**BLOB, "size": 1001}}, "image.size", "maxSize"),
        ({"file": {**BLOB, "mimeType": ""}}, "file.mimeType", "type"),
        ({"file": {**BLOB, "size": True}}, "file.size", "type"),
    ],
)
def test_kitchen_invalid(kitchen: Validator, fields: dict[str, Any], path: str, rule: str) -> None:
    record = {**SINK, **fields}
    record = {k: v for k, v in record.items() if v is not DELETE}
    result = kitchen.validate("test.kitchen.sink", "k", record)
    assert result is not None
    assert (result.path, result.rule) == (path, rule), str(result)


def test_key_types(kitchen: Validator) -> None:
    other = {"$type": "test.kitchen.other"}
    assert kitchen.validate("test.kitchen.other", "com.example.thing", other) is None
    bad = kitchen.validate("test.kitchen.other", "not-an-nsid", other)
    assert bad is not None and bad.rule == "key"
    assert kitchen.validate("test.kitchen.sink", "a:b", SINK) is None
    bad = kitchen.validate("test.kitchen.sink", "a/b", SINK)
    assert bad is not None and bad.rule == "key"
    assert kitchen.validate("test.kitchen.tree", "root", {"$type": "test.kitchen.tree"}) is None
    bad = kitchen.validate("test.kitchen.tree", "self", {"$type": "test.kitchen.tree"})
    assert bad is not None and bad.rule == "key"


def test_recursive_lexicon(kitchen: Validator) -> None:
    tree = {"$type": "test.kitchen.tree", "kids": [{"kids": [{}, {"kids": [{"kids": 1}]}]}]}
    result = kitchen.validate("test.kitchen.tree", "root", tree)
    assert result is not None
    assert (result.path, result.rule) == ("kids[0].kids[1].kids[0].kids", "type")
    node: dict[str, Any] = {}
    for _ in range(50_000):
        node = {"kids": [node]}
    result = kitchen.validate("test.kitchen.tree", "root", {"$type": "test.kitchen.tree", **node})
    assert result is not None
    assert (result.path, result.rule) == ("", "depth")


def _record_doc(record: dict[str, Any], key: str | None = None) -> dict[str, Any]:
    main: dict[str, Any] = {"type": "record", "record": record}
    if key is not None:
        main["key"] = key
    return {"lexicon": 1, "id": "a.b.c", "defs": {"main": main}}


def _prop(schema: dict[str, Any]) -> dict[str, Any]:
    return _record_doc({"type": "object", "properties": {"s": schema}})


@pytest.mark.parametrize(
    ("documents", "message"),
    [
        ([_record_doc({"type": "ref", "ref": "#x"})], "unknown def"),
        ([_record_doc({"type": "ref", "ref": "x.y.z"})], "unknown lexicon"),
        ([_prop({"type": "string", "format": "colour"})], "unknown string format"),
        ([_prop({"type": "float"})], "unsupported type"),
        ([_prop({"type": "string", "maxLength": "10"})], "maxLength"),
        ([_prop({"type": "union"})], "union without refs"),
        ([_record_doc(OBJ, key="uuid")], "record key type"),
        ([{"lexicon": 2, "id": "a.b.c", "defs": {}}], "version"),
        ([{"lexicon": 1, "id": "not an nsid", "defs": {}}], "NSID"),
        ([{"lexicon": 1, "id": "a.b.c", "defs": []}], "defs"),
        ([{"lexicon": 1, "id": "a.b.c", "defs": {}}, {"lexicon": 1, "id": "a.b.c", "defs": {}}], "duplicate"),
    ],
)
def test_bad_lexicons_fail_at_load(tmp_path: Path, documents: list[dict[str, Any]], message: str) -> None:
    for i, doc in enumerate(documents):
        (tmp_path / f"doc{i}.json").write_text(json.dumps(doc))
    with pytest.raises(LexiconError, match=message):
        Validator.load(tmp_path)


def test_unreadable_lexicon(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(LexiconError, match="cannot read"):
        load_documents(tmp_path)
    with pytest.raises(LexiconError, match="not found"):
        load_documents(tmp_path / "missing")
