"""decode_frame: relay frames to Events, Malformed and Control items, on real and hand-made frames."""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Callable
from typing import Any

import libipld
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexer.atproto.repo.car import cid_str
from indexer.atproto.repo.signatures import verify_commit
from indexer.events import Checkpoint, Event, Malformed
from indexer.firehose.frames import Control, decode_frame
from tests.test_firehose_support import (
    T0,
    T0_US,
    TRACK_RECORD,
    FakeRepo,
    Op,
    cid_of,
    corpus_frames,
    did_docs,
    expected_v1,
    make_car,
    make_frame,
    manifest,
)

TRACK_PATH = "fm.plyr.track/3mptbyplj5d2a"


def everything(_: str) -> bool:
    return True


def only(items: list[Any]) -> Any:
    assert len(items) == 1, items
    return items[0]


def borrowed_doc(docs: dict[str, Any], did: str) -> dict[str, Any]:
    """Another account's DID document relabelled as `did`'s: right shape, wrong key."""
    other = next(d for d in docs if d != did)
    text = json.dumps(docs[other]).replace(other, did)
    doc: dict[str, Any] = json.loads(text)
    return doc


def malformed_reason(items: list[Any]) -> str:
    item = only(items)
    assert isinstance(item, Malformed), item
    return item.reason


# --- the production corpus ------------------------------------------------------------------------


def test_corpus_all_collections_matches_jetstream_events() -> None:
    decoded = [i for f in corpus_frames() for i in decode_frame(f, source="firehose:test", want=everything)]
    items = [i for i in decoded if isinstance(i, Event)]
    assert len(items) == len(decoded)
    expected = expected_v1()
    assert len(items) == len(expected) == manifest()["v1_events"]
    for ev, exp in zip(items, expected, strict=True):
        assert ev.did == exp["did"] and ev.kind == exp["kind"] and ev.source == "firehose:test"
        if ev.kind == "commit":
            c = exp["commit"]
            assert (ev.rev, ev.operation, ev.collection, ev.rkey) == (
                c["rev"],
                c["operation"],
                c["collection"],
                c["rkey"],
            )
            assert ev.record == c.get("record") and ev.cid == c.get("cid")
        else:
            body = exp[ev.kind]
            assert ev.seq == body["seq"] == ev.cursor and ev.time == body["time"]
            assert ev.handle == body.get("handle")
            if ev.kind == "account":
                assert ev.active is body["active"] and ev.status == body.get("status")
    seqs = [i.cursor or 0 for i in items]
    assert seqs == sorted(seqs) and seqs[0] == manifest()["seq_first"] and seqs[-1] == manifest()["seq_last"]


def test_corpus_default_filter_keeps_only_wanted_commits_and_identity_account() -> None:
    # The window holds no fm.plyr.* commit and one teal.fm status update: that one, the identity and the
    # account events survive the filter.
    items = [i for f in corpus_frames() for i in decode_frame(f, source="s")]
    assert all(isinstance(i, Event) for i in items)
    assert [(i.kind, i.cursor) for i in items if isinstance(i, Event)] == [
        ("commit", 31527015349),
        ("identity", 31527015470),
        ("account", 31527015471),
    ]
    assert [i.collection for i in items if isinstance(i, Event) and i.kind == "commit"] == [
        "fm.teal.alpha.actor.status"
    ]


def test_corpus_filter_selects_one_collection() -> None:
    items = [i for f in corpus_frames() for i in decode_frame(f, source="s", want=lambda c: c == "app.bsky.feed.post")]
    expected = [e for e in expected_v1() if e.get("commit", {}).get("collection") == "app.bsky.feed.post"]
    commits = [i for i in items if isinstance(i, Event) and i.kind == "commit"]
    assert len(commits) == len(expected) > 0
    assert all(c.collection == "app.bsky.feed.post" for c in commits)


def test_commit_event_carries_cursor_time_and_rendered_record() -> None:
    ev = only(decode_frame(corpus_frames()[0], source="s", want=everything))
    assert ev.cursor == 31527015322 and ev.seq is None
    assert ev.time == T0 and ev.time_us == T0_US
    assert ev.cid == "bafyreiguce4jh7kcbmof3pmcvasifqtw24b6isakj5ve5ga2b4z4alpc4i"
    assert ev.record["subject"]["uri"].startswith("at://did:plc:r2zybk6op3ymzpz6jhqpkoy5/")


def test_commits_verify_through_the_hook_and_a_wrong_key_rejects_them() -> None:
    docs = did_docs()
    items = [
        i
        for f in corpus_frames()
        for i in decode_frame(f, source="s", want=everything, verify=lambda d, c: verify_commit(c, docs[d]))
    ]
    assert Counter(type(i).__name__ for i in items) == {"Event": manifest()["v1_events"]}
    frame = corpus_frames()[1]
    wrong = decode_frame(
        frame, source="s", want=everything, verify=lambda d, c: verify_commit(c, borrowed_doc(docs, d))
    )
    item = only(wrong)
    assert isinstance(item, Malformed) and item.reason == "invalid_signature" and item.detail == "bad_signature"
    assert item.did == "did:plc:dclwtltrt2ggsryagfzk7dp4" and item.cursor == 31527015323


def test_one_changed_byte_in_a_real_record_is_a_cid_mismatch() -> None:
    frame = corpus_frames()[0]
    marker = b"2026-07-04T14:38:08.999Z"  # the like's createdAt, only inside its record block
    assert frame.count(marker) == 1
    tampered = frame.replace(marker, b"2026-07-04T14:38:08.998Z")
    item = only(decode_frame(tampered, source="s", want=everything))
    assert isinstance(item, Malformed) and item.reason == "cid_mismatch"
    assert "app.bsky.feed.like/3mptbyplj5d2a" in item.detail and item.cursor == 31527015322
    assert item.raw is not None and base64.b64decode(item.raw) == tampered


def test_irrelevant_commit_costs_no_car_decode() -> None:
    repo = FakeRepo()
    frame = repo.commit_frame(
        [Op("create", "app.bsky.feed.like/3mptbyplj5d2a", {"$type": "app.bsky.feed.like"})],
        body={"blocks": b"\xff not a CAR at all"},
    )
    assert decode_frame(frame, source="s") == []
    assert malformed_reason(decode_frame(frame, source="s", want=everything)) == "invalid_car"


def test_checkpoint_option_reports_the_seq_of_frames_with_nothing_to_index() -> None:
    frame = corpus_frames()[0]
    assert decode_frame(frame, source="s") == []
    assert decode_frame(frame, source="s", checkpoint=True) == [Checkpoint(source="s", cursor=31527015322)]
    assert isinstance(only(decode_frame(frame, source="s", want=everything, checkpoint=True)), Event)


# --- hand-made commits ---------------------------------------------------------------------------


def test_create_renders_blobs_links_and_bytes_like_jetstream() -> None:
    repo = FakeRepo()
    ev = only(decode_frame(repo.commit_frame([Op("create", TRACK_PATH, TRACK_RECORD)], seq=77), source="s"))
    assert isinstance(ev, Event)
    assert (ev.kind, ev.operation, ev.collection, ev.rkey, ev.rev, ev.cursor) == (
        "commit",
        "create",
        "fm.plyr.track",
        "3mptbyplj5d2a",
        "3mptbypluud2a",
        77,
    )
    assert ev.cid == cid_str(cid_of(libipld.encode_dag_cbor(TRACK_RECORD)))
    assert ev.record == {
        "$type": "fm.plyr.track",
        "album": TRACK_RECORD["album"],
        "artist": "Dianna Lopez",
        "audioBlob": {
            "$type": "blob",
            "ref": {"$link": cid_str(cid_of(b"audio"))},
            "mimeType": "audio/mpeg",
            "size": 4_812_345,
        },
        "audioUrl": "https://cdn.plyr.fm/audio/abc.mp3",
        "createdAt": "2026-07-04T14:38:06.240Z",
        "duration": 241,
        "previous": {"$link": cid_str(cid_of(b"previous version"))},
        "tags": ["ambient", None],
        "title": "Sacred Sands <live> & more",
        "waveform": {"$bytes": "AAEC/w"},
    }
    assert list(ev.record) == sorted(ev.record)


def test_update_and_delete_in_one_commit() -> None:
    repo = FakeRepo()
    other = "fm.plyr.like/3mptbyplj5d2b"
    frame = repo.commit_frame(
        [Op("update", TRACK_PATH, TRACK_RECORD), Op("delete", other)],
        tree={TRACK_PATH: {"$type": "fm.plyr.track", "title": "old"}, other: {"$type": "fm.plyr.like"}},
    )
    update, delete = decode_frame(frame, source="s")
    assert isinstance(update, Event) and update.operation == "update" and update.record is not None
    assert isinstance(delete, Event) and delete.operation == "delete"
    assert (delete.collection, delete.rkey, delete.cid, delete.record) == (
        "fm.plyr.like",
        "3mptbyplj5d2b",
        None,
        None,
    )


def test_wanted_and_unwanted_ops_in_one_commit() -> None:
    repo = FakeRepo()
    frame = repo.commit_frame(
        [
            Op("create", "app.bsky.feed.like/3mptbyplj5d2c", {"$type": "app.bsky.feed.like"}),
            Op("create", TRACK_PATH, TRACK_RECORD),
        ]
    )
    ev = only(decode_frame(frame, source="s"))
    assert ev.collection == "fm.plyr.track"


@pytest.mark.parametrize(
    ("kwargs", "trusting", "verified"),
    [
        ({"swap": {TRACK_PATH: {**TRACK_RECORD, "title": "forged"}}}, "cid_mismatch", "cid_mismatch"),
        ({"omit": [TRACK_PATH]}, "missing_block", "missing_block"),
        ({"op_cids": {TRACK_PATH: cid_of(b"some other record")}}, "missing_block", "mst_mismatch"),
        ({"op_cids": {TRACK_PATH: None}}, "missing_cid", "missing_cid"),
        ({"omit": ["mst"]}, None, "mst_incomplete"),
        ({"omit": ["commit"]}, "missing_commit_block", "missing_commit_block"),
        ({"commit": {"did": "did:plc:someoneelse"}}, "commit_mismatch", "commit_mismatch"),
        ({"rev": "not-a-tid"}, "invalid_rev", "invalid_rev"),
        ({"body": {"repo": "not a did"}}, "invalid_field", "invalid_field"),
        ({"body": {"seq": "12"}}, "missing_field", "missing_field"),
        ({"body": {"blocks": None}}, "missing_field", "missing_field"),
    ],
)
def test_commit_defects_become_malformed(kwargs: dict[str, Any], trusting: str | None, verified: str) -> None:
    repo = FakeRepo()
    frame = repo.commit_frame([Op("create", TRACK_PATH, TRACK_RECORD)], **kwargs)
    # Trusting the relay (no verifier), only what is indexed is checked; verifying, the whole chain is.
    items = decode_frame(frame, source="s")
    if trusting is None:
        assert isinstance(only(items), Event)
    else:
        assert malformed_reason(items) == trusting
    items = decode_frame(frame, source="s", verify=lambda d, c: verify_commit(c, repo.did_doc))
    assert malformed_reason(items) == verified
    assert isinstance(items[0], Malformed) and items[0].source == "s"


def rewrite_car(frame: bytes, change: Callable[[dict[str, Any], dict[bytes, Any]], None]) -> bytes:
    """Decode a commit frame, let `change` edit its body and blocks, and encode it again."""
    header, body = libipld.decode_dag_cbor_multi(frame)
    _, blocks = libipld.decode_car(body["blocks"])
    change(body, blocks)
    body["blocks"] = make_car([body["commit"]], [(c, libipld.encode_dag_cbor(b)) for c, b in blocks.items()])
    return make_frame(header, body)


def test_forged_record_with_a_matching_op_needs_the_tree_proof() -> None:
    # What a dishonest relay could do to a genuinely signed commit: swap in its own record and op CID.
    repo = FakeRepo()
    frame = repo.commit_frame([Op("create", TRACK_PATH, TRACK_RECORD)])
    forged = {**TRACK_RECORD, "audioUrl": "https://evil.example/a.mp3"}
    forged_cid = cid_of(libipld.encode_dag_cbor(forged))

    def swap(body: dict[str, Any], blocks: dict[bytes, Any]) -> None:
        blocks[forged_cid] = forged
        body["ops"][0]["cid"] = forged_cid

    tampered = rewrite_car(frame, swap)
    trusting = only(decode_frame(tampered, source="s"))
    assert isinstance(trusting, Event) and trusting.record is not None
    assert trusting.record["audioUrl"] == "https://evil.example/a.mp3"
    verified = decode_frame(tampered, source="s", verify=lambda d, c: verify_commit(c, repo.did_doc))
    assert malformed_reason(verified) == "mst_mismatch"


def test_altered_commit_block_is_caught_when_verifying() -> None:
    repo = FakeRepo()
    frame = repo.commit_frame([Op("create", TRACK_PATH, TRACK_RECORD)])

    def alter(body: dict[str, Any], blocks: dict[bytes, Any]) -> None:
        blocks[body["commit"]] = {**blocks[body["commit"]], "version": 2}

    tampered = rewrite_car(frame, alter)
    assert isinstance(only(decode_frame(tampered, source="s")), Event)
    verified = decode_frame(tampered, source="s", verify=lambda d, c: verify_commit(c, repo.did_doc))
    assert malformed_reason(verified) == "cid_mismatch"


def test_a_bad_op_does_not_hide_the_good_ones() -> None:
    good = "fm.plyr.like/3mptbyplj5d2b"
    frame = FakeRepo().commit_frame(
        [Op("create", TRACK_PATH, TRACK_RECORD), Op("create", good, {"$type": "fm.plyr.like"})],
        omit=[TRACK_PATH],
    )
    bad, ok = decode_frame(frame, source="s")
    assert isinstance(bad, Malformed) and bad.reason == "missing_block" and TRACK_PATH in bad.detail
    assert isinstance(ok, Event) and ok.rkey == "3mptbyplj5d2b"


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({"$type": "fm.plyr.track", "bpm": 120.5}, "invalid_record"),
        ({"$type": "", "title": "x"}, "invalid_record"),
        (
            {
                "$type": "fm.plyr.track",
                "cover": {"$type": "blob", "ref": "not-a-link", "mimeType": "image/png", "size": 1},
            },
            "invalid_record",
        ),
        ({"$type": "fm.plyr.track", "fake": {"$link": "not a cid"}}, "invalid_record"),
        ({"$type": "fm.plyr.track", "huge": "x" * (1024 * 1024)}, "record_too_large"),
    ],
)
def test_records_outside_the_data_model_are_refused(record: dict[str, Any], reason: str) -> None:
    frame = FakeRepo().commit_frame([Op("create", TRACK_PATH, record)])
    assert malformed_reason(decode_frame(frame, source="s")) == reason


def test_integral_float_becomes_an_integer_like_jetstream() -> None:
    frame = FakeRepo().commit_frame([Op("create", TRACK_PATH, {"$type": "fm.plyr.track", "bpm": 120.0})])
    ev = only(decode_frame(frame, source="s"))
    assert ev.record == {"$type": "fm.plyr.track", "bpm": 120} and type(ev.record["bpm"]) is int


@pytest.mark.parametrize("path", ["fm.plyr.track", "fm.plyr.track/a/b", "fm.plyr.track/..", "fm.plyr..x/3abc"])
def test_invalid_paths_are_refused(path: str) -> None:
    frame = FakeRepo().commit_frame([Op("create", path, {"$type": "fm.plyr.track"})])
    assert malformed_reason(decode_frame(frame, source="s", want=everything)) == "invalid_path"


def test_delete_still_present_in_the_tree_is_refused() -> None:
    repo = FakeRepo()
    # Build a commit whose tree still has the path, then relabel the op a delete.
    frame = repo.commit_frame([Op("create", TRACK_PATH, TRACK_RECORD)])
    header, body = libipld.decode_dag_cbor_multi(frame)
    body["ops"] = [{"action": "delete", "path": TRACK_PATH, "cid": None}]
    forged = make_frame(header, body)
    assert isinstance(only(decode_frame(forged, source="s")), Event)
    verified = decode_frame(forged, source="s", verify=lambda d, c: verify_commit(c, repo.did_doc))
    assert malformed_reason(verified) == "mst_mismatch"


def test_delete_without_a_full_tree_path_is_refused_when_verifying() -> None:
    repo = FakeRepo()
    other = "fm.plyr.like/3mptbyplj5d2b"
    frame = repo.commit_frame([Op("delete", TRACK_PATH)], tree={other: {"$type": "fm.plyr.like"}}, omit=["mst"])
    assert isinstance(only(decode_frame(frame, source="s")), Event)
    verified = decode_frame(frame, source="s", verify=lambda d, c: verify_commit(c, repo.did_doc))
    assert malformed_reason(verified) == "mst_incomplete"
    complete = repo.commit_frame([Op("delete", TRACK_PATH)], tree={other: {"$type": "fm.plyr.like"}})
    ev = only(decode_frame(complete, source="s", verify=lambda d, c: verify_commit(c, repo.did_doc)))
    assert isinstance(ev, Event) and ev.operation == "delete"


def test_unknown_action_is_refused() -> None:
    frame = FakeRepo().commit_frame([Op("create", TRACK_PATH, TRACK_RECORD)])
    header, body = libipld.decode_dag_cbor_multi(frame)
    body["ops"][0]["action"] = "upsert"
    assert malformed_reason(decode_frame(make_frame(header, body), source="s")) == "invalid_op"


def test_signature_hook_on_hand_made_commits() -> None:
    repo = FakeRepo(curve="p256")
    frame = repo.commit_frame([Op("create", TRACK_PATH, TRACK_RECORD)])
    good = only(decode_frame(frame, source="s", verify=lambda d, c: verify_commit(c, repo.did_doc)))
    assert isinstance(good, Event)
    impostor = FakeRepo(did=repo.did)  # same DID, different key
    bad = only(decode_frame(frame, source="s", verify=lambda d, c: verify_commit(c, impostor.did_doc)))
    assert isinstance(bad, Malformed) and bad.reason == "invalid_signature"

    def broken(did: str, commit: dict[str, Any]) -> str | None:
        raise RuntimeError("resolver down")

    assert malformed_reason(decode_frame(frame, source="s", verify=broken)) == "verify_error"


def test_verifier_is_not_called_for_irrelevant_commits() -> None:
    calls: list[str] = []
    for f in corpus_frames():
        decode_frame(f, source="s", verify=lambda d, c: calls.append(d))  # type: ignore[func-returns-value]
    # Only the window's one wanted commit (a teal.fm status) is verified.
    assert calls == ["did:plc:2tvbiywvmdzx5tnblamijmhd"]


# --- other frame types ----------------------------------------------------------------------------


def test_identity_and_account_fields() -> None:
    ident = make_frame(
        {"op": 1, "t": "#identity"},
        {"did": "did:plc:abc", "seq": 5, "time": T0, "handle": "artist.plyr.fm"},
    )
    ev = only(decode_frame(ident, source="s"))
    assert (ev.kind, ev.did, ev.cursor, ev.seq, ev.time, ev.time_us, ev.handle) == (
        "identity",
        "did:plc:abc",
        5,
        5,
        T0,
        T0_US,
        "artist.plyr.fm",
    )
    acct = make_frame(
        {"op": 1, "t": "#account"},
        {"did": "did:plc:abc", "seq": 6, "time": T0, "active": False, "status": "deactivated"},
    )
    ev = only(decode_frame(acct, source="s"))
    assert (ev.kind, ev.active, ev.status, ev.cursor) == ("account", False, "deactivated", 6)


@pytest.mark.parametrize(
    ("t", "body", "reason"),
    [
        ("#identity", {"did": "did:plc:abc", "time": T0}, "missing_field"),
        ("#identity", {"did": "nope", "seq": 1, "time": T0}, "invalid_field"),
        ("#identity", {"did": "did:plc:abc", "seq": 1, "time": T0, "handle": 7}, "invalid_field"),
        ("#account", {"did": "did:plc:abc", "seq": 1, "time": T0}, "missing_field"),
        (
            "#account",
            {"did": "did:plc:abc", "seq": 1, "time": T0, "active": True, "status": 3},
            "invalid_field",
        ),
        ("#sync", {"did": "did:plc:abc", "seq": 1, "time": T0}, "missing_field"),
        ("#info", {"message": "x"}, "invalid_field"),
    ],
)
def test_bad_non_commit_bodies(t: str, body: dict[str, Any], reason: str) -> None:
    assert malformed_reason(decode_frame(make_frame({"op": 1, "t": t}, body), source="s")) == reason


def test_control_frames() -> None:
    sync = make_frame(
        {"op": 1, "t": "#sync"},
        {"did": "did:plc:abc", "seq": 9, "time": T0, "rev": "3mptbypluud2a", "blocks": b"car"},
    )
    assert only(decode_frame(sync, source="s")) == Control(
        kind="sync", source="s", cursor=9, did="did:plc:abc", rev="3mptbypluud2a", blocks=b"car", time=T0
    )
    info = make_frame({"op": 1, "t": "#info"}, {"name": "OutdatedCursor", "message": "cursor too old"})
    assert only(decode_frame(info, source="s")) == Control(
        kind="info", source="s", name="OutdatedCursor", message="cursor too old"
    )
    err = make_frame({"op": -1}, {"error": "FutureCursor", "message": "cursor in the future"})
    assert only(decode_frame(err, source="s")) == Control(
        kind="error", source="s", name="FutureCursor", message="cursor in the future"
    )
    unknown = make_frame({"op": 1, "t": "#labels"}, {"seq": 11, "did": "did:plc:abc"})
    assert only(decode_frame(unknown, source="s")) == Control(
        kind="unknown", source="s", name="#labels", cursor=11, did="did:plc:abc"
    )


def test_too_big_commit_asks_for_a_resync_only_when_it_concerns_us() -> None:
    repo = FakeRepo()
    ours = repo.commit_frame([Op("create", TRACK_PATH, TRACK_RECORD)], seq=3, body={"tooBig": True, "blocks": b""})
    assert only(decode_frame(ours, source="s")) == Control(
        kind="too_big", source="s", cursor=3, did=repo.did, rev="3mptbypluud2a", time=T0
    )
    theirs = repo.commit_frame(
        [Op("create", "app.bsky.feed.like/3mptbyplj5d2c", {"$type": "app.bsky.feed.like"})],
        body={"tooBig": True},
    )
    assert decode_frame(theirs, source="s") == []


# --- hostile bytes --------------------------------------------------------------------------------


def test_oversized_frame() -> None:
    frame = corpus_frames()[0]
    item = only(decode_frame(frame, source="s", max_frame_bytes=len(frame) - 1))
    assert isinstance(item, Malformed) and item.reason == "frame_too_large" and item.raw is None
    assert isinstance(only(decode_frame(frame, source="s", max_frame_bytes=len(frame), want=everything)), Event)
    big = make_frame({"op": 1, "t": "#info"}, {"name": "x", "message": "y" * (5 * 1024 * 1024)})
    assert malformed_reason(decode_frame(big, source="s")) == "frame_too_large"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "truncated_frame"),
        (libipld.encode_dag_cbor({"op": 1, "t": "#commit"}), "truncated_frame"),
        (b"\xff\xfe garbage", "invalid_cbor"),
        (make_frame({"op": 1, "t": "#info"}, {"name": "x"}) + b"\xa0", "invalid_frame"),
        (make_frame({"op": 2, "t": "#commit"}, {}), "invalid_header"),
        (make_frame({"op": 1}, {}), "invalid_header"),
        (make_frame({"op": 1, "t": "#commit"}, [1, 2]), "invalid_frame"),
    ],
)
def test_garbage_frames(data: bytes, reason: str) -> None:
    assert malformed_reason(decode_frame(data, source="s")) == reason


def test_truncated_real_frame() -> None:
    frame = corpus_frames()[1]
    for cut in (1, 20, len(frame) // 2, len(frame) - 1):
        assert malformed_reason(decode_frame(frame[:cut], source="s", want=everything)) == "truncated_frame"


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=512))
def test_random_bytes_never_raise(data: bytes) -> None:
    for item in decode_frame(data, source="s", want=everything):
        assert isinstance(item, (Event, Malformed, Control))


def event_key(ev: Event) -> tuple[Any, ...]:
    return (
        ev.did,
        ev.rev,
        ev.operation,
        ev.collection,
        ev.rkey,
        ev.cid,
        json.dumps(ev.record, sort_keys=True),
    )


@settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(index=st.integers(min_value=0, max_value=147), pos=st.integers(min_value=0), xor=st.integers(1, 255))
def test_corrupted_real_commits_cannot_forge_verified_events(index: int, pos: int, xor: int) -> None:
    # With verification on, a flipped byte anywhere in a commit frame either changes nothing an event says
    # (it hit `time`, `seq` or an unused part) or the frame/op is refused: it can never yield a new create or
    # update. A delete is proven only by its key's absence from the signed tree, so a flipped byte in a delete's
    # path can name another absent key (a tombstone at the signed rev for a record that never existed, which
    # hides nothing); proving that the key was there before needs the sync 1.1 `prevData` inversion.
    docs = did_docs()

    def verify(did: str, commit: dict[str, Any]) -> str | None:
        return verify_commit(commit, docs[did])

    frame = bytearray(corpus_frames()[index])
    pos %= len(frame)
    frame[pos] ^= xor
    original = {
        event_key(i) for i in decode_frame(corpus_frames()[index], source="s", want=everything) if isinstance(i, Event)
    }
    for item in decode_frame(bytes(frame), source="s", want=everything, verify=verify):
        assert isinstance(item, (Event, Malformed, Control))
        if isinstance(item, Event) and item.operation != "delete":
            assert event_key(item) in original


@settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(index=st.integers(min_value=0, max_value=149), pos=st.integers(min_value=0), xor=st.integers(1, 255))
def test_corrupted_real_frames_never_raise_nor_pass_unnoticed(index: int, pos: int, xor: int) -> None:
    frame = bytearray(corpus_frames()[index])
    pos %= len(frame)
    frame[pos] ^= xor
    items = decode_frame(bytes(frame), source="s", want=everything)
    for item in items:
        assert isinstance(item, (Event, Malformed, Control))
    original = [i for i in decode_frame(corpus_frames()[index], source="s", want=everything) if isinstance(i, Event)]
    events = [i for i in items if isinstance(i, Event)]
    # A flipped byte may land in unused parts of the frame (an unreferenced CAR block, `since`, `blobs`),
    # but it must never change an event that still comes out without a complaint.
    if not any(isinstance(i, Malformed) for i in items) and len(events) == len(original):
        for got, want in zip(events, original, strict=True):
            if (got.did, got.rev, got.collection, got.rkey) == (
                want.did,
                want.rev,
                want.collection,
                want.rkey,
            ):
                assert got.record == want.record and got.cid == want.cid
