"""teal.fm plays and now-playing over HTTP, fed through the real fold: `playCount` on track views, plays in
getStats, getTopTracks by plays and by the activity of a window, getActorStatus until its expiry."""

from __future__ import annotations

import datetime as dt
from typing import Any

from litestar.testing import AsyncTestClient

from bench.synth import BASE_US, account, commit, identity, iso, make_did
from indexer.atproto.lexicon import Validator
from tests.api_support import app
from tests.helpers import ingest, like_event, tid, track_event, track_uri
from tests.test_plays import ALPHA_STATUS, STATUS, play, status_record

ALICE, BOB, CAROL, DAVE = (make_did(n) for n in range(1, 5))


def _iso(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


async def test_play_counts_stats_and_top_tracks_by_plays(db_url: str, validator: Validator) -> None:
    one, two, three = track_uri(ALICE, 1), track_uri(ALICE, 2), track_uri(BOB, 3)
    await ingest(
        db_url,
        validator,
        [
            track_event(ALICE, 1),
            track_event(ALICE, 2),
            track_event(BOB, 3),
            # Track 2 is the most liked, track 3 the most played.
            like_event(BOB, 10, ALICE, 2),
            like_event(CAROL, 11, ALICE, 2),
            play(BOB, 20, three),
            play(CAROL, 21, three),
            play(DAVE, 22, f"https://plyr.fm/track/{BOB}/{tid(3)}", alpha=True),
            play(CAROL, 23, one),
            play(DAVE, 24, "https://plyr.fm/track/99"),  # unlinkable
            play(DAVE, 25, track_uri(BOB, 404)),  # names a track we do not have
        ],
    )
    async with AsyncTestClient(app=app(db_url)) as client:
        track = (await client.get("/xrpc/fm.plyr.getTrack", params={"uri": three})).json()["track"]
        by_plays = (await client.get("/xrpc/fm.plyr.getTopTracks", params={"by": "plays"})).json()
        by_likes = (await client.get("/xrpc/fm.plyr.getTopTracks", params={"by": "likes"})).json()
        stats = (await client.get("/xrpc/fm.plyr.getStats")).json()
        bad = await client.get("/xrpc/fm.plyr.getTopTracks", params={"by": "comments"})
    assert track["playCount"] == 3 and track["likeCount"] == 0
    assert [(t["uri"], t["playCount"]) for t in by_plays["tracks"]] == [(three, 3), (one, 1), (two, 0)]
    assert by_likes["tracks"][0]["uri"] == two
    assert stats == {"tracks": 3, "artists": 2, "likes": 2, "lists": 0, "plays": 4, "unlinkedPlays": 1}
    assert bad.status_code == 400 and bad.json()["error"] == "InvalidRequest"

    # A listener going inactive leaves the counts, everywhere.
    await ingest(db_url, validator, [account(CAROL, False, "deactivated", seq=1, micros=BASE_US + 10**6)])
    async with AsyncTestClient(app=app(db_url)) as client:
        track = (await client.get("/xrpc/fm.plyr.getTrack", params={"uri": three})).json()["track"]
        stats = (await client.get("/xrpc/fm.plyr.getStats")).json()
    assert track["playCount"] == 2
    assert (stats["plays"], stats["likes"]) == (2, 1)


async def test_top_tracks_in_a_window_rank_by_the_activity_inside_it(db_url: str, validator: Validator) -> None:
    old, new = track_uri(ALICE, 1), track_uri(BOB, 50)
    await ingest(
        db_url,
        validator,
        [
            track_event(ALICE, 1),  # published long before the window, liked and played inside it
            track_event(BOB, 50),  # liked only before the window, played before and inside it
            like_event(CAROL, 40, BOB, 50),
            like_event(BOB, 60, ALICE, 1),
            like_event(CAROL, 61, ALICE, 1),
            play(CAROL, 45, new),
            play(BOB, 62, old),
            play(CAROL, 63, old),
            play(DAVE, 64, new),
        ],
    )
    since = iso(BASE_US + 55 * 1000)
    async with AsyncTestClient(app=app(db_url)) as client:

        async def top(**params: Any) -> list[str]:
            body = (await client.get("/xrpc/fm.plyr.getTopTracks", params={"since": since, **params})).json()
            return [t["uri"] for t in body["tracks"]]

        # Likes made since: two of the old track, none of the new one (liked before the window).
        assert await top() == [old]
        # Plays made since: two of the old track, one of the new one.
        assert await top(by="plays") == [old, new]
        # A window after everything ranks nothing.
        assert await top(since=iso(BASE_US + 10**9)) == []


async def test_actor_status_until_it_expires(db_url: str, validator: Validator) -> None:
    now = dt.datetime.now(dt.UTC)
    track = track_uri(ALICE, 1)
    await ingest(
        db_url,
        validator,
        [
            identity(BOB, "bob.test", seq=1, micros=BASE_US),
            identity(CAROL, "carol.test", seq=2, micros=BASE_US),
            identity(DAVE, "dave.test", seq=3, micros=BASE_US),
            track_event(ALICE, 1),
            # Bob plays our track now, for an hour; his legacy status started earlier and is older.
            commit(
                BOB,
                STATUS,
                "self",
                tid(10),
                status_record(
                    track, time=_iso(now - dt.timedelta(minutes=1)), expiry=_iso(now + dt.timedelta(hours=1))
                ),
            ),
            commit(
                BOB,
                ALPHA_STATUS,
                "self",
                tid(11),
                status_record(None, time=_iso(now - dt.timedelta(minutes=3)), expiry=None, alpha=True),
            ),
            # Carol's status expired a minute ago.
            commit(
                CAROL,
                STATUS,
                "self",
                tid(12),
                status_record(
                    track, time=_iso(now - dt.timedelta(hours=1)), expiry=_iso(now - dt.timedelta(minutes=1))
                ),
            ),
            # Dave plays something that is not ours, with teal.fm's default expiry (10 minutes after time).
            commit(
                DAVE,
                STATUS,
                "self",
                tid(13),
                status_record(
                    "https://open.spotify.com/track/x", time=_iso(now - dt.timedelta(minutes=2)), expiry=None
                ),
            ),
        ],
    )
    async with AsyncTestClient(app=app(db_url)) as client:

        async def status(actor: str) -> dict[str, Any]:
            resp = await client.get("/xrpc/fm.plyr.getActorStatus", params={"actor": actor})
            assert resp.status_code == 200, resp.text
            body: dict[str, Any] = resp.json()
            return body

        bob = await status("bob.test")
        carol = await status(CAROL)
        dave = await status(DAVE)
        missing = await client.get("/xrpc/fm.plyr.getActorStatus", params={"actor": make_did(99)})
    assert bob["actor"]["did"] == BOB
    assert bob["status"]["uri"] == f"at://{BOB}/{STATUS}/self"
    assert bob["status"]["track"]["uri"] == track and bob["status"]["item"]["originUri"] == track
    assert dt.datetime.fromisoformat(bob["status"]["expiry"]) > now
    assert carol == {"actor": carol["actor"]} and carol["actor"]["handle"] == "carol.test"
    assert "track" not in dave["status"] and dave["status"]["item"]["trackName"] == "Now"
    expiry = dt.datetime.fromisoformat(dave["status"]["expiry"]) - dt.datetime.fromisoformat(dave["status"]["time"])
    assert expiry == dt.timedelta(minutes=10)
    assert missing.status_code == 404

    # Deleting the status ends it; the legacy one, still current, takes over.
    await ingest(db_url, validator, [commit(BOB, STATUS, "self", tid(14), None)])
    async with AsyncTestClient(app=app(db_url)) as client:
        bob = await status("bob.test")
    assert bob["status"]["uri"] == f"at://{BOB}/{ALPHA_STATUS}/self" and "track" not in bob["status"]
