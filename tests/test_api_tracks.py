"""Track reads over HTTP: getTrack, getTracks, getLatestTracks, getActorTracks, with the hiding rules,
keyset pagination and XRPC errors, against the real fold and a real Postgres."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from bench.synth import BASE_US, account, commit, identity, make_did, make_tid, track_record, uri
from indexer.atproto.lexicon import Validator
from tests.api_support import app
from tests.helpers import TRACK, ingest

ALICE = make_did(1)
BOB = make_did(2)
DAY_US = 86_400_000_000


def tid(n: int) -> str:
    return make_tid(BASE_US + n * 1000)


def track(did: str, n: int, title: str | None = None, *, day: int = 0) -> Any:
    """Track n, created `day` days after BASE_US plus n ms, so higher n is newer."""
    micros = BASE_US + day * DAY_US + n * 1000
    return commit(did, TRACK, tid(n), tid(n), track_record(title or f"Track {n}", micros=micros))


def turi(did: str, n: int) -> str:
    return uri(did, TRACK, tid(n))


async def test_get_track_full_view(db_url: str, validator: Validator) -> None:
    rec = track_record(
        "First light",
        album="Dawn",
        imageUrl="https://img.example.com/c.jpg",
        description="liner notes",
        features=[{"did": BOB}],
        labels={"$type": "com.atproto.label.defs#selfLabels", "values": [{"val": "nudity"}]},
    )
    await ingest(
        db_url,
        validator,
        [identity(ALICE, "alice.test", seq=1, micros=BASE_US), commit(ALICE, TRACK, tid(1), tid(1), rec)],
    )
    async with AsyncTestClient(app=app(db_url)) as client:
        resp = await client.get("/xrpc/fm.plyr.getTrack", params={"uri": turi(ALICE, 1)})
    assert resp.status_code == 200, resp.text
    t = resp.json()["track"]
    assert t["uri"] == turi(ALICE, 1)
    assert t["author"] == {"did": ALICE, "handle": "alice.test"}
    assert (t["title"], t["artist"], t["album"], t["duration"], t["fileType"]) == (
        "First light",
        "Synth Artist",
        "Dawn",
        180,
        "mp3",
    )
    # Featured artists are actor views resolved by DID; one unknown here has no verified handle.
    assert t["features"] == [{"did": BOB, "handle": "handle.invalid"}]
    # A self-label becomes a label of the author on the record (com.atproto.label.defs#label).
    assert t["labels"] == [
        {"src": ALICE, "uri": turi(ALICE, 1), "cid": t["cid"], "val": "nudity", "cts": "2025-06-15T15:06:40.000Z"}
    ]
    assert t["imageUrl"] == "https://img.example.com/c.jpg"
    assert t["description"] == "liner notes"
    assert t["audio"] == {"url": f"https://api.plyr.test/audio/{ALICE}/{tid(1)}", "source": "url"}
    assert (t["likeCount"], t["commentCount"]) == (0, 0)
    assert t["createdAt"] == "2025-06-15T15:06:40.000Z"
    assert t["indexedAt"].endswith("Z")
    assert t["record"] == rec
    assert "viewer" not in t
    assert resp.headers["cache-control"].startswith("public, max-age=")
    assert resp.headers["etag"]


async def test_unknown_handle_shows_handle_invalid(db_url: str, validator: Validator) -> None:
    await ingest(db_url, validator, [track(ALICE, 1)])
    async with AsyncTestClient(app=app(db_url)) as client:
        resp = await client.get("/xrpc/fm.plyr.getTrack", params={"uri": turi(ALICE, 1)})
    assert resp.json()["track"]["author"]["handle"] == "handle.invalid"


async def test_get_track_errors(db_url: str, validator: Validator) -> None:
    await ingest(db_url, validator, [track(ALICE, 1)])
    async with AsyncTestClient(app=app(db_url)) as client:
        missing = await client.get("/xrpc/fm.plyr.getTrack", params={"uri": turi(ALICE, 2)})
        bad_uri = await client.get("/xrpc/fm.plyr.getTrack", params={"uri": "https://example.com"})
        wrong_collection = await client.get(
            "/xrpc/fm.plyr.getTrack", params={"uri": uri(ALICE, "fm.plyr.like", tid(1))}
        )
        no_param = await client.get("/xrpc/fm.plyr.getTrack")
    assert missing.status_code == 404
    assert missing.json()["error"] == "NotFound"
    for resp in (bad_uri, wrong_collection, no_param):
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"] == "InvalidRequest"
        assert resp.json()["message"]


async def test_get_tracks_keeps_order_and_drops_missing(db_url: str, validator: Validator) -> None:
    await ingest(db_url, validator, [track(ALICE, 1), track(ALICE, 2), track(BOB, 3)])
    asked = [turi(BOB, 3), turi(ALICE, 9), turi(ALICE, 1), turi(BOB, 3)]
    async with AsyncTestClient(app=app(db_url)) as client:
        resp = await client.get("/xrpc/fm.plyr.getTracks", params={"uris": asked})
        too_many = await client.get("/xrpc/fm.plyr.getTracks", params={"uris": [turi(ALICE, n) for n in range(26)]})
    assert [t["uri"] for t in resp.json()["tracks"]] == [turi(BOB, 3), turi(ALICE, 1)]
    assert too_many.status_code == 400


async def test_hidden_content(db_url: str, validator: Validator) -> None:
    """A deactivated author's tracks vanish from every read and come back on reactivation; a deleted track is
    gone."""
    await ingest(db_url, validator, [track(ALICE, 1), track(BOB, 2), track(BOB, 3)])
    await ingest(
        db_url,
        validator,
        [
            account(ALICE, False, "deactivated", seq=1, micros=BASE_US + 10),
            commit(BOB, TRACK, tid(3), tid(4), None),
        ],
    )
    async with AsyncTestClient(app=app(db_url)) as client:
        latest = (await client.get("/xrpc/fm.plyr.getLatestTracks")).json()
        single = await client.get("/xrpc/fm.plyr.getTrack", params={"uri": turi(ALICE, 1)})
        deleted = await client.get("/xrpc/fm.plyr.getTrack", params={"uri": turi(BOB, 3)})
        many = (await client.get("/xrpc/fm.plyr.getTracks", params={"uris": [turi(ALICE, 1), turi(BOB, 2)]})).json()
        by_actor = await client.get("/xrpc/fm.plyr.getActorTracks", params={"actor": ALICE})
    assert [t["uri"] for t in latest["tracks"]] == [turi(BOB, 2)]
    assert single.status_code == 404
    assert deleted.status_code == 404
    assert [t["uri"] for t in many["tracks"]] == [turi(BOB, 2)]
    assert by_actor.status_code == 400
    assert by_actor.json()["error"] == "AccountDeactivated"

    await ingest(db_url, validator, [account(ALICE, True, seq=2, micros=BASE_US + 20)])
    async with AsyncTestClient(app=app(db_url)) as client:
        latest = (await client.get("/xrpc/fm.plyr.getLatestTracks")).json()
    assert [t["uri"] for t in latest["tracks"]] == [turi(BOB, 2), turi(ALICE, 1)]


async def walk(client: AsyncTestClient[Any], path: str, params: dict[str, Any], between: Any = None) -> list[str]:
    seen: list[str] = []
    cursor = None
    for page in range(1000):
        resp = await client.get(path, params={**params, **({"cursor": cursor} if cursor else {})})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        seen += [t["uri"] for t in body["tracks"]]
        cursor = body.get("cursor")
        if cursor is None:
            return seen
        if between is not None:
            await between(page)
    raise AssertionError("pagination did not end")


async def test_latest_tracks_pagination_is_stable_under_inserts(db_url: str, validator: Validator) -> None:
    await ingest(db_url, validator, [track(ALICE if n % 2 else BOB, n, day=n % 5) for n in range(1, 41)])
    original = {turi(ALICE if n % 2 else BOB, n) for n in range(1, 41)}
    carol = make_did(3)

    async def insert(page: int) -> None:
        # Each page, one new track newer than everything and one backdated into the middle of the feed.
        await ingest(db_url, validator, [track(carol, 100 + page, day=30), track(carol, 200 + page, day=2)])

    async with AsyncTestClient(app=app(db_url)) as client:
        seen = await walk(client, "/xrpc/fm.plyr.getLatestTracks", {"limit": 7}, insert)
    assert len(seen) == len(set(seen)), "a track was served twice"
    assert original <= set(seen), "a track present before the walk was skipped"


async def test_latest_tracks_order_and_limits(db_url: str, validator: Validator) -> None:
    await ingest(db_url, validator, [track(ALICE, n) for n in range(1, 6)])
    async with AsyncTestClient(app=app(db_url)) as client:
        full = (await client.get("/xrpc/fm.plyr.getLatestTracks", params={"limit": 5})).json()
        short = (await client.get("/xrpc/fm.plyr.getLatestTracks", params={"limit": 6})).json()
        bad = [
            await client.get("/xrpc/fm.plyr.getLatestTracks", params={"limit": v}) for v in ("0", "101", "x", "-1")
        ]
        bad_cursor = [
            await client.get("/xrpc/fm.plyr.getLatestTracks", params={"cursor": c})
            for c in ("nope", "12__", "__bafy", "99999999999999999999__bafyreia", "1__b!d")
        ]
    assert [t["uri"] for t in full["tracks"]] == [turi(ALICE, n) for n in range(5, 0, -1)]
    assert "cursor" in full
    assert "cursor" not in short
    for resp in bad + bad_cursor:
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"] == "InvalidRequest"


async def test_actor_tracks_by_did_and_handle(db_url: str, validator: Validator) -> None:
    await ingest(
        db_url,
        validator,
        [identity(ALICE, "Alice.Test", seq=1, micros=BASE_US), *(track(ALICE, n) for n in range(1, 6)), track(BOB, 9)],
    )
    async with AsyncTestClient(app=app(db_url)) as client:
        by_did = await walk(client, "/xrpc/fm.plyr.getActorTracks", {"actor": ALICE, "limit": 2})
        by_handle = await walk(client, "/xrpc/fm.plyr.getActorTracks", {"actor": "alice.TEST", "limit": 50})
        unknown = await client.get("/xrpc/fm.plyr.getActorTracks", params={"actor": "nobody.test"})
        invalid = await client.get("/xrpc/fm.plyr.getActorTracks", params={"actor": "not a handle"})
    assert by_did == [turi(ALICE, n) for n in range(5, 0, -1)]
    assert by_handle == by_did
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "NotFound"
    assert invalid.status_code == 400


async def test_etag_revalidation_and_cors(db_url: str, validator: Validator) -> None:
    await ingest(db_url, validator, [track(ALICE, 1)])
    async with AsyncTestClient(app=app(db_url)) as client:
        first = await client.get("/xrpc/fm.plyr.getLatestTracks", headers={"Origin": "https://player.example"})
        again = await client.get("/xrpc/fm.plyr.getLatestTracks", headers={"If-None-Match": first.headers["etag"]})
        await ingest(db_url, validator, [track(ALICE, 2)])
        changed = await client.get("/xrpc/fm.plyr.getLatestTracks", headers={"If-None-Match": first.headers["etag"]})
        schema = await client.get("/schema/openapi.json")
    assert first.headers["access-control-allow-origin"] == "*"
    assert again.status_code == 304
    assert again.content == b""
    assert changed.status_code == 200
    assert len(changed.json()["tracks"]) == 2
    assert "/xrpc/fm.plyr.getLatestTracks" in schema.json()["paths"]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/xrpc/fm.plyr.getTrack", {"uri": "at://did:plc:x/fm.plyr.track/%00"}),
        ("/xrpc/fm.plyr.getActorTracks", {"actor": "\x00"}),
        ("/xrpc/fm.plyr.searchTracks", {"q": "\x00"}),
        ("/xrpc/fm.plyr.getTopTracks", {"since": "yesterday"}),
        ("/xrpc/fm.plyr.getLatestTracks", {"cursor": "1" * 600}),
    ],
)
async def test_bad_params_are_400_not_500(db_url: str, path: str, params: dict[str, str]) -> None:
    async with AsyncTestClient(app=app(db_url)) as client:
        resp = await client.get(path, params=params)
    assert resp.status_code == 400, resp.text
    assert set(resp.json()) == {"error", "message"}
