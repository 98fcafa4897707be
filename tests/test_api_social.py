"""Likes, profiles, lists, comments, top tracks and stats over HTTP, fed through the real fold."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from bench.synth import (
    BASE_US,
    account,
    comment_record,
    commit,
    identity,
    list_record,
    make_cid,
    make_did,
    profile_record,
    uri,
)
from indexer.atproto.lexicon import Validator
from tests.api_support import app
from tests.helpers import (
    COMMENT,
    LIST,
    PROFILE,
    ingest,
    like_event,
    tid,
    track_event,
    track_rec,
    track_uri,
)

ALICE, BOB, CAROL, DAVE = (make_did(n) for n in range(1, 5))


async def test_likes_and_actor_likes(db_url: str, validator: Validator) -> None:
    await ingest(
        db_url,
        validator,
        [
            identity(BOB, "bob.test", seq=1, micros=BASE_US),
            track_event(ALICE, 1),
            track_event(ALICE, 2),
            like_event(BOB, 10, ALICE, 1),
            like_event(CAROL, 11, ALICE, 1),
            like_event(DAVE, 12, ALICE, 1),
            like_event(BOB, 13, ALICE, 2),
            # a like of a track that does not exist: hidden everywhere
            like_event(BOB, 14, ALICE, 99),
        ],
    )
    await ingest(db_url, validator, [account(DAVE, False, "takendown", seq=2, micros=BASE_US + 5)])
    async with AsyncTestClient(app=app(db_url)) as client:
        likes = (await client.get("/xrpc/fm.plyr.getLikes", params={"uri": track_uri(ALICE, 1)})).json()
        page1 = (await client.get("/xrpc/fm.plyr.getLikes", params={"uri": track_uri(ALICE, 1), "limit": 1})).json()
        page2 = (
            await client.get(
                "/xrpc/fm.plyr.getLikes", params={"uri": track_uri(ALICE, 1), "limit": 1, "cursor": page1["cursor"]}
            )
        ).json()
        missing = await client.get("/xrpc/fm.plyr.getLikes", params={"uri": track_uri(ALICE, 99)})
        liked = (await client.get("/xrpc/fm.plyr.getActorLikes", params={"actor": "bob.test"})).json()
        track1 = (await client.get("/xrpc/fm.plyr.getTrack", params={"uri": track_uri(ALICE, 1)})).json()["track"]
    assert likes["uri"] == track_uri(ALICE, 1)
    # newest like first; DAVE (taken down) is hidden
    assert [entry["actor"]["did"] for entry in likes["likes"]] == [CAROL, BOB]
    assert likes["likes"][1]["actor"]["handle"] == "bob.test"
    assert likes["likes"][1]["createdAt"] == "2025-06-15T15:06:40.010Z"
    assert [e["actor"]["did"] for e in page1["likes"] + page2["likes"]] == [CAROL, BOB]
    assert missing.status_code == 404
    # newest like first, the like of the missing track left out
    assert [t["uri"] for t in liked["tracks"]] == [track_uri(ALICE, 2), track_uri(ALICE, 1)]
    assert track1["likeCount"] == 2


async def test_actor_profile(db_url: str, validator: Validator) -> None:
    lst = list_record([(track_uri(ALICE, 1), make_cid(track_rec(1)))], name="Mix")
    await ingest(
        db_url,
        validator,
        [
            identity(ALICE, "alice.test", seq=1, micros=BASE_US),
            commit(
                ALICE,
                PROFILE,
                "self",
                tid(1),
                {**profile_record("makes noise"), "avatar": "https://img.example.com/a.png"},
            ),
            track_event(ALICE, 1),
            track_event(ALICE, 2),
            track_event(BOB, 3),
            like_event(ALICE, 20, BOB, 3),
            like_event(ALICE, 21, BOB, 404),
            commit(ALICE, LIST, tid(30), tid(30), lst),
        ],
    )
    async with AsyncTestClient(app=app(db_url)) as client:
        profile = (await client.get("/xrpc/fm.plyr.getActorProfile", params={"actor": "alice.test"})).json()
        bare = (await client.get("/xrpc/fm.plyr.getActorProfile", params={"actor": BOB})).json()
        track_view = (await client.get("/xrpc/fm.plyr.getTrack", params={"uri": track_uri(ALICE, 1)})).json()
        unknown = await client.get("/xrpc/fm.plyr.getActorProfile", params={"actor": CAROL})
    assert profile == {
        "did": ALICE,
        "handle": "alice.test",
        "bio": "makes noise",
        "avatar": "https://img.example.com/a.png",
        "trackCount": 2,
        "likeCount": 1,
        "listCount": 1,
        "indexedAt": profile["indexedAt"],
    }
    assert bare == {"did": BOB, "handle": "handle.invalid", "trackCount": 1, "likeCount": 0, "listCount": 0}
    assert track_view["track"]["author"]["avatar"] == "https://img.example.com/a.png"
    assert unknown.status_code == 404


async def test_get_list_items_in_record_order(db_url: str, validator: Validator) -> None:
    items = [
        (track_uri(BOB, 2), make_cid(track_rec(2))),
        (track_uri(ALICE, 77), make_cid(track_rec(77))),  # never existed
        (track_uri(ALICE, 1), make_cid(track_rec(1))),
        (track_uri(CAROL, 3), make_cid(track_rec(3))),  # author deactivated below
        (track_uri(ALICE, 1), make_cid(track_rec(1))),
    ]
    await ingest(
        db_url,
        validator,
        [
            track_event(ALICE, 1),
            track_event(BOB, 2),
            track_event(CAROL, 3),
            commit(ALICE, LIST, tid(40), tid(40), list_record(items, name="Road trip")),
            account(CAROL, False, "deactivated", seq=1, micros=BASE_US + 1),
        ],
    )
    list_uri = uri(ALICE, LIST, tid(40))
    async with AsyncTestClient(app=app(db_url)) as client:
        body = (await client.get("/xrpc/fm.plyr.getList", params={"uri": list_uri})).json()
        missing = await client.get("/xrpc/fm.plyr.getList", params={"uri": uri(ALICE, LIST, tid(41))})
    view = body["list"]
    assert (view["name"], view["listType"], view["itemCount"]) == ("Road trip", "playlist", 5)
    assert [i["uri"] for i in view["items"]] == [u for u, _ in items]
    assert [i.get("track", {}).get("uri") for i in view["items"]] == [
        track_uri(BOB, 2),
        None,
        track_uri(ALICE, 1),
        None,
        track_uri(ALICE, 1),
    ]
    assert missing.status_code == 404


async def test_actor_lists_filter_and_paging(db_url: str, validator: Validator) -> None:
    item = [(track_uri(ALICE, 1), make_cid(track_rec(1)))]
    album = {**list_record(item, name="LP", micros=BASE_US + 50_000), "listType": "album"}
    await ingest(
        db_url,
        validator,
        [
            track_event(ALICE, 1),
            *(
                commit(ALICE, LIST, tid(n), tid(n), list_record(item, name=f"pl{n}", micros=BASE_US + n * 1000))
                for n in range(40, 43)
            ),
            commit(ALICE, LIST, tid(50), tid(50), album),
        ],
    )
    async with AsyncTestClient(app=app(db_url)) as client:
        albums = (await client.get("/xrpc/fm.plyr.getActorLists", params={"actor": ALICE, "listType": "album"})).json()
        first = (await client.get("/xrpc/fm.plyr.getActorLists", params={"actor": ALICE, "limit": 3})).json()
        rest = (
            await client.get(
                "/xrpc/fm.plyr.getActorLists", params={"actor": ALICE, "limit": 3, "cursor": first["cursor"]}
            )
        ).json()
    assert [entry["name"] for entry in albums["lists"]] == ["LP"]
    assert [entry["name"] for entry in first["lists"] + rest["lists"]] == ["LP", "pl42", "pl41", "pl40"]
    assert "cursor" not in rest
    assert "items" not in first["lists"][0]


async def test_comments_in_playback_order(db_url: str, validator: Validator) -> None:
    subject = (track_uri(ALICE, 1), make_cid(track_rec(1)))
    positions = [5000, 100, 2500, 100, 90_000]
    await ingest(
        db_url,
        validator,
        [
            track_event(ALICE, 1),
            *(
                commit(
                    BOB if i % 2 else CAROL,
                    COMMENT,
                    tid(60 + i),
                    tid(60 + i),
                    comment_record(*subject, f"at {ms} #{i}", ms=ms, micros=BASE_US + i),
                )
                for i, ms in enumerate(positions)
            ),
        ],
    )
    async with AsyncTestClient(app=app(db_url)) as client:
        seen: list[dict[str, Any]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"uri": subject[0], "limit": 2, **({"cursor": cursor} if cursor else {})}
            body = (await client.get("/xrpc/fm.plyr.getComments", params=params)).json()
            seen += body["comments"]
            cursor = body.get("cursor")
            if not cursor:
                break
        track_view = (await client.get("/xrpc/fm.plyr.getTrack", params={"uri": subject[0]})).json()["track"]
    assert [c["timestampMs"] for c in seen] == sorted(positions)
    assert len({c["uri"] for c in seen}) == len(positions)
    assert {c["author"]["did"] for c in seen} == {BOB, CAROL}
    assert all(c["record"]["text"] == c["text"] for c in seen)
    assert track_view["commentCount"] == len(positions)


async def test_top_tracks_and_stats(db_url: str, validator: Validator) -> None:
    await ingest(
        db_url,
        validator,
        [
            track_event(ALICE, 1),
            track_event(ALICE, 2),
            track_event(BOB, 3),
            like_event(BOB, 10, ALICE, 2),
            like_event(CAROL, 11, ALICE, 2),
            like_event(CAROL, 12, BOB, 3),
            like_event(CAROL, 13, BOB, 404),
            commit(ALICE, LIST, tid(40), tid(40), list_record([(track_uri(ALICE, 1), make_cid(track_rec(1)))])),
        ],
    )
    async with AsyncTestClient(app=app(db_url)) as client:
        top = (await client.get("/xrpc/fm.plyr.getTopTracks", params={"limit": 2})).json()
        # A window ranks by the likes made inside it (likes 12 and 13, the latter of a missing track), not by
        # the tracks published inside it.
        since = (await client.get("/xrpc/fm.plyr.getTopTracks", params={"since": "2025-06-15T15:06:40.012Z"})).json()
        stats = (await client.get("/xrpc/fm.plyr.getStats")).json()
    assert [t["uri"] for t in top["tracks"]] == [track_uri(ALICE, 2), track_uri(BOB, 3)]
    assert [t["uri"] for t in since["tracks"]] == [track_uri(BOB, 3)]
    assert stats == {"tracks": 3, "artists": 2, "likes": 3, "lists": 1, "plays": 0, "unlinkedPlays": 0}
