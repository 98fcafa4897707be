"""Each fold rule, tested through the real writer against a real Postgres."""

from __future__ import annotations

import pytest

from bench.synth import (
    account,
    comment_record,
    commit,
    identity,
    like_record,
    list_record,
    make_cid,
    make_did,
    make_tid,
    profile_record,
    track_record,
    uri,
)
from indexer.atproto.lexicon import Validator
from tests.helpers import COMMENT, LIKE, LIST, PROFILE, TRACK, ingest, one, rows, rows_exec, state

ALICE = make_did(1)
BOB = make_did(2)
CAROL = make_did(3)


def tid(n: int) -> str:
    return make_tid(1_750_000_000_000_000 + n * 1000)


T1 = tid(1)
TRACK_URI = uri(ALICE, TRACK, T1)
TRACK_REC = track_record("First light")
TRACK_CID = make_cid(TRACK_REC)


def record_for(collection: str, version: int) -> dict[str, object]:
    """A valid record of `collection`, distinguishable by `version`."""
    if collection == TRACK:
        return track_record(f"title v{version}")
    if collection == LIKE:
        return like_record(uri(BOB, TRACK, tid(900 + version)), TRACK_CID)
    if collection == COMMENT:
        return comment_record(TRACK_URI, TRACK_CID, f"comment v{version}")
    if collection == LIST:
        return list_record([(TRACK_URI, TRACK_CID)] * version, name=f"list v{version}")
    return profile_record(f"bio v{version}")


def rkey_for(collection: str) -> str:
    return "self" if collection == PROFILE else tid(50)


# (collection, projection table, query returning the record's current cid or None)
PROJECTED = {
    TRACK: "SELECT cid FROM tracks WHERE did = %s AND rkey = %s",
    LIKE: "SELECT cid FROM likes WHERE did = %s AND rkey = %s",
    COMMENT: "SELECT cid FROM comments WHERE did = %s AND rkey = %s",
    LIST: "SELECT cid FROM lists WHERE did = %s AND rkey = %s",
    PROFILE: "SELECT cid FROM profiles WHERE did = %s AND 'self' = %s",
}
ALL = list(PROJECTED)


async def projected_cid(db_url: str, collection: str, did: str, rkey: str) -> str | None:
    found = await rows(db_url, PROJECTED[collection], did, rkey)
    return found[0][0] if found else None


async def test_duplicates_are_stored_once(db_url: str, validator: Validator) -> None:
    ev = commit(ALICE, TRACK, T1, tid(2), TRACK_REC)
    stats = await ingest(db_url, validator, [ev, ev], [ev])
    assert stats.appended == 1
    assert await one(db_url, "SELECT count(*) FROM events") == 1
    assert await one(db_url, "SELECT count(*) FROM tracks") == 1


@pytest.mark.parametrize("collection", ALL)
async def test_stale_update_after_newer_is_ignored(db_url: str, validator: Validator, collection: str) -> None:
    rkey = rkey_for(collection)
    old, new = record_for(collection, 1), record_for(collection, 2)
    newer = commit(ALICE, collection, rkey, tid(20), new, operation="update")
    stale = commit(ALICE, collection, rkey, tid(10), old, operation="update")
    await ingest(db_url, validator, [newer], [stale])
    assert await projected_cid(db_url, collection, ALICE, rkey) == make_cid(new)
    # Also within a single batch, whatever the order.
    other = make_did(77)
    await ingest(
        db_url,
        validator,
        [
            commit(other, collection, rkey, tid(20), new, operation="update"),
            commit(other, collection, rkey, tid(10), old, operation="update"),
        ],
    )
    assert await projected_cid(db_url, collection, other, rkey) == make_cid(new)


@pytest.mark.parametrize("collection", ALL)
async def test_equal_rev_is_not_newer(db_url: str, validator: Validator, collection: str) -> None:
    rkey = rkey_for(collection)
    first, second = record_for(collection, 1), record_for(collection, 2)
    await ingest(
        db_url,
        validator,
        [commit(ALICE, collection, rkey, tid(20), first)],
        [commit(ALICE, collection, rkey, tid(20), second, operation="update")],
    )
    # An update carrying the same rev as the stored create is a newer operation of the same commit order:
    # deterministic either way, and never walks back to an older rev.
    cid = await projected_cid(db_url, collection, ALICE, rkey)
    assert cid == make_cid(second)
    await ingest(db_url, validator, [commit(ALICE, collection, rkey, tid(20), first)])
    assert await projected_cid(db_url, collection, ALICE, rkey) == make_cid(second)


@pytest.mark.parametrize("collection", ALL)
async def test_delete_is_a_permanent_tombstone(db_url: str, validator: Validator, collection: str) -> None:
    rkey = rkey_for(collection)
    rec = record_for(collection, 1)
    create = commit(ALICE, collection, rkey, tid(10), rec)
    delete = commit(ALICE, collection, rkey, tid(30), None)
    await ingest(db_url, validator, [create], [delete])
    assert await projected_cid(db_url, collection, ALICE, rkey) is None
    # Re-delivered old create and update (replay from an earlier cursor) never resurrect it.
    await ingest(db_url, validator, [create], [commit(ALICE, collection, rkey, tid(20), rec, operation="update")])
    assert await projected_cid(db_url, collection, ALICE, rkey) is None
    # Delete arriving before the create it deletes (replay reordering across batches): still gone.
    await ingest(
        db_url,
        validator,
        [commit(BOB, collection, rkey, tid(30), None)],
        [commit(BOB, collection, rkey, tid(10), rec)],
    )
    assert await projected_cid(db_url, collection, BOB, rkey) is None
    # A genuinely newer create (the record key reused later) does come back.
    await ingest(db_url, validator, [commit(ALICE, collection, rkey, tid(40), rec)])
    assert await projected_cid(db_url, collection, ALICE, rkey) == make_cid(rec)


async def test_like_before_track_counts_once_both_arrived(db_url: str, validator: Validator) -> None:
    like = commit(BOB, LIKE, tid(5), tid(5), like_record(TRACK_URI, TRACK_CID))
    like2 = commit(CAROL, LIKE, tid(6), tid(6), like_record(TRACK_URI, TRACK_CID))
    comment = commit(CAROL, COMMENT, tid(7), tid(7), comment_record(TRACK_URI, TRACK_CID, "nice", ms=1500))
    await ingest(db_url, validator, [like], [like2, comment])
    assert await one(db_url, "SELECT count(*) FROM tracks") == 0
    await ingest(db_url, validator, [commit(ALICE, TRACK, T1, tid(2), TRACK_REC)])
    assert await one(db_url, "SELECT like_count, comment_count FROM tracks WHERE uri = %s", TRACK_URI) == (
        2,
        1,
    )
    # Unlike: the count follows.
    await ingest(db_url, validator, [commit(BOB, LIKE, tid(5), tid(8), None)])
    assert await one(db_url, "SELECT like_count FROM tracks WHERE uri = %s", TRACK_URI) == 1
    # Updating the track keeps its counts.
    await ingest(db_url, validator, [commit(ALICE, TRACK, T1, tid(9), track_record("Renamed"), operation="update")])
    assert await one(db_url, "SELECT title, like_count, comment_count FROM tracks WHERE uri = %s", TRACK_URI) == (
        "Renamed",
        1,
        1,
    )


async def test_like_moving_to_another_subject_recounts_both(db_url: str, validator: Validator) -> None:
    other_rec = track_record("Second")
    other_uri = uri(ALICE, TRACK, tid(3))
    await ingest(
        db_url,
        validator,
        [
            commit(ALICE, TRACK, T1, tid(2), TRACK_REC),
            commit(ALICE, TRACK, tid(3), tid(3), other_rec),
            commit(BOB, LIKE, tid(5), tid(5), like_record(TRACK_URI, TRACK_CID)),
        ],
    )
    await ingest(
        db_url,
        validator,
        [commit(BOB, LIKE, tid(5), tid(6), like_record(other_uri, make_cid(other_rec)), operation="update")],
    )
    counts = dict(await rows(db_url, "SELECT uri, like_count FROM tracks"))
    assert counts == {TRACK_URI: 0, other_uri: 1}


INVALID = [
    (TRACK, {"$type": TRACK, "artist": "a", "fileType": "mp3", "createdAt": "2025-01-01T00:00:00Z"}, "title"),
    (TRACK, {**track_record("x"), "title": "t" * 257}, "title"),
    (TRACK, {**track_record("x"), "duration": -1}, "duration"),
    (TRACK, {**track_record("x"), "createdAt": "yesterday"}, "createdAt"),
    (TRACK, {**track_record("x"), "$type": "fm.plyr.like"}, "$type"),
    (
        LIKE,
        {
            "$type": LIKE,
            "subject": {"uri": "not-a-uri", "cid": TRACK_CID},
            "createdAt": "2025-01-01T00:00:00Z",
        },
        "subject",
    ),
    (LIKE, {"$type": LIKE, "createdAt": "2025-01-01T00:00:00Z"}, "subject"),
    (COMMENT, {**comment_record(TRACK_URI, TRACK_CID, "x"), "text": ""}, "text"),
    (COMMENT, {**comment_record(TRACK_URI, TRACK_CID, "x"), "timestampMs": "12"}, "timestampMs"),
    (LIST, {**list_record([(TRACK_URI, TRACK_CID)] * 501)}, "items"),
    (LIST, {**list_record([]), "name": "\U0001f3b5" * 65}, "name"),
    (PROFILE, {**profile_record("b"), "avatar": "no scheme"}, "avatar"),
    (PROFILE, {**profile_record("b"), "bio": "x" * 2561}, "bio"),
]


@pytest.mark.parametrize(("collection", "record", "field"), INVALID)
async def test_invalid_record_is_never_indexed_and_reason_is_kept(
    db_url: str, validator: Validator, collection: str, record: dict[str, object], field: str
) -> None:
    rkey = rkey_for(collection)
    await ingest(db_url, validator, [commit(ALICE, collection, rkey, tid(10), record)])
    assert await projected_cid(db_url, collection, ALICE, rkey) is None
    reason, detail, did = await one(db_url, "SELECT reason, detail, did FROM rejections")
    assert reason == "invalid_record"
    assert field in detail
    assert did == ALICE


async def test_invalid_update_hides_the_older_valid_version(db_url: str, validator: Validator) -> None:
    bad = {**track_record("x"), "title": ""}
    await ingest(
        db_url,
        validator,
        [commit(ALICE, TRACK, T1, tid(10), TRACK_REC)],
        [commit(ALICE, TRACK, T1, tid(20), bad, operation="update")],
        # a replay of the older valid version does not bring it back either
        [commit(ALICE, TRACK, T1, tid(10), TRACK_REC)],
    )
    assert await one(db_url, "SELECT count(*) FROM tracks") == 0
    assert (await state(db_url))["rejections"]["by_reason"] == {"invalid_record": 1}


async def test_bad_envelopes_are_rejected_with_reasons(db_url: str, validator: Validator) -> None:
    good = commit(ALICE, TRACK, T1, tid(10), TRACK_REC)
    bad_rev = commit(ALICE, TRACK, tid(11), "not-a-tid", TRACK_REC)
    bad_rkey = commit(ALICE, TRACK, "bad/key", tid(12), TRACK_REC)
    bad_did = commit("did:nope", TRACK, tid(13), tid(13), TRACK_REC)
    nul = commit(ALICE, TRACK, tid(14), tid(14), track_record("a\x00b"))
    other = commit(ALICE, "app.bsky.feed.post", tid(15), tid(15), {"$type": "app.bsky.feed.post"})
    stats = await ingest(db_url, validator, [bad_rev, bad_rkey, bad_did, nul, other, good])
    assert stats.ignored == 1
    reasons = dict(await rows(db_url, "SELECT reason, count(*) FROM rejections GROUP BY reason"))
    assert reasons == {"invalid_rev": 1, "invalid_rkey": 1, "invalid_did": 1, "unstorable_record": 1}
    assert await one(db_url, "SELECT count(*) FROM tracks") == 1


async def test_account_status_hides_and_restores(db_url: str, validator: Validator) -> None:
    await ingest(
        db_url,
        validator,
        [
            commit(ALICE, TRACK, T1, tid(2), TRACK_REC),
            commit(BOB, LIKE, tid(5), tid(5), like_record(TRACK_URI, TRACK_CID)),
            commit(BOB, COMMENT, tid(6), tid(6), comment_record(TRACK_URI, TRACK_CID, "hi")),
            commit(BOB, PROFILE, "self", tid(7), profile_record("bob")),
        ],
    )
    before = await state(db_url)
    assert before["counts"]["likes"] == 1
    assert await one(db_url, "SELECT like_count, comment_count FROM tracks") == (1, 1)

    await ingest(db_url, validator, [account(BOB, False, "deactivated", seq=10, micros=10)])
    s = await state(db_url)
    assert (s["counts"]["likes"], s["counts"]["comments"], s["counts"]["profiles"]) == (0, 0, 0)
    assert await one(db_url, "SELECT like_count, comment_count FROM tracks") == (0, 0)
    assert await one(db_url, "SELECT status FROM actors WHERE did = %s", BOB) == "deactivated"

    # An older status event arriving late changes nothing.
    await ingest(db_url, validator, [account(BOB, True, None, seq=5, micros=5)])
    assert await one(db_url, "SELECT status FROM actors WHERE did = %s", BOB) == "deactivated"

    await ingest(db_url, validator, [account(BOB, True, None, seq=11, micros=11)])
    assert (await state(db_url))["counts"] == before["counts"]
    assert await one(db_url, "SELECT like_count, comment_count FROM tracks") == (1, 1)

    # The author going inactive hides their tracks from the visible counts.
    await ingest(db_url, validator, [account(ALICE, False, "takendown", seq=12, micros=12)])
    assert (await state(db_url))["counts"]["tracks"] == 0


async def test_deleted_account_is_purged_but_log_kept(db_url: str, validator: Validator) -> None:
    await ingest(
        db_url,
        validator,
        [
            commit(ALICE, TRACK, T1, tid(2), TRACK_REC),
            commit(BOB, LIKE, tid(5), tid(5), like_record(TRACK_URI, TRACK_CID)),
            commit(BOB, LIST, tid(6), tid(6), list_record([(TRACK_URI, TRACK_CID)])),
        ],
    )
    events_before = await one(db_url, "SELECT count(*) FROM events")
    await ingest(db_url, validator, [account(BOB, False, "deleted", seq=10, micros=10)])
    assert await one(db_url, "SELECT count(*) FROM likes") == 0
    assert await one(db_url, "SELECT count(*) FROM lists") == 0
    assert await one(db_url, "SELECT count(*) FROM list_items") == 0
    assert await one(db_url, "SELECT like_count FROM tracks") == 0
    assert await one(db_url, "SELECT count(*) FROM events") == events_before + 1
    # Stale events re-delivered after the deletion do not bring anything back.
    await ingest(db_url, validator, [commit(BOB, LIKE, tid(5), tid(5), like_record(TRACK_URI, TRACK_CID))])
    assert await one(db_url, "SELECT count(*) FROM likes") == 0


async def test_identity_updates_handle_latest_wins(db_url: str, validator: Validator) -> None:
    await ingest(db_url, validator, [commit(ALICE, TRACK, T1, tid(2), TRACK_REC)])
    assert await one(db_url, "SELECT handle FROM actors WHERE did = %s", ALICE) is None
    await ingest(db_url, validator, [identity(ALICE, "alice.test", seq=1, micros=100)])
    assert await one(db_url, "SELECT handle FROM actors WHERE did = %s", ALICE) == "alice.test"
    await ingest(
        db_url,
        validator,
        [
            identity(ALICE, "Alice-New.test", seq=3, micros=300),
            identity(ALICE, "alice-old.test", seq=2, micros=200),
        ],
    )
    assert await one(db_url, "SELECT handle FROM actors WHERE did = %s", ALICE) == "alice-new.test"
    await ingest(db_url, validator, [identity(ALICE, "stale.test", seq=2, micros=250)])
    assert await one(db_url, "SELECT handle FROM actors WHERE did = %s", ALICE) == "alice-new.test"
    # An identity event with an invalid handle clears it (shown as handle.invalid by the API).
    await ingest(db_url, validator, [identity(ALICE, "not a handle", seq=4, micros=400)])
    assert await one(db_url, "SELECT handle FROM actors WHERE did = %s", ALICE) is None


async def test_list_items_keep_record_order(db_url: str, validator: Validator) -> None:
    items = [(uri(ALICE, TRACK, tid(100 + i)), TRACK_CID) for i in (3, 1, 2)]
    await ingest(db_url, validator, [commit(BOB, LIST, tid(6), tid(6), list_record(items))])
    got = await rows(db_url, "SELECT subject_uri FROM list_items ORDER BY position")
    assert [u for (u,) in got] == [u for u, _ in items]
    assert await one(db_url, "SELECT item_count FROM lists") == 3


async def test_an_item_postgres_refuses_is_isolated_and_kept(db_url: str, validator: Validator) -> None:
    # A constraint stands in for any data-dependent refusal the Python-side checks did not foresee.
    await rows_exec(db_url, "ALTER TABLE events ADD CONSTRAINT test_poison CHECK (rkey IS DISTINCT FROM 'poison')")
    good = [commit(ALICE, TRACK, tid(i), tid(i), track_record(f"t{i}")) for i in range(1, 21)]
    poison = commit(BOB, TRACK, "poison", tid(30), track_record("p"))
    stats = await ingest(db_url, validator, [*good[:10], poison, *good[10:]])
    assert stats.appended == 20
    assert await one(db_url, "SELECT count(*) FROM tracks") == 20
    reason, did = await one(db_url, "SELECT reason, did FROM rejections WHERE reason = 'unstorable'")
    assert (reason, did) == ("unstorable", BOB)


async def test_a_bug_is_not_turned_into_rejections(db_url: str, validator: Validator) -> None:
    await rows_exec(db_url, "ALTER TABLE tracks RENAME COLUMN title TO title_gone")
    with pytest.raises(Exception, match="title"):
        await ingest(db_url, validator, [commit(ALICE, TRACK, T1, tid(2), TRACK_REC)])
    await rows_exec(db_url, "ALTER TABLE tracks RENAME COLUMN title_gone TO title")
    assert await one(db_url, "SELECT count(*) FROM rejections") == 0
    assert await one(db_url, "SELECT count(*) FROM events") == 0
