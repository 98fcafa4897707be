"""Featured artists by DID: a track's `features` shown as actor views resolved from each DID (the verified handle
wins over the record's snapshot; an unknown or inactive DID is `handle.invalid`), and getActorTracks'
`filter=authored|featured|all` backed by the `track_features` projection, kept by the fold and refolded by
`rebuild`."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from bench.synth import BASE_US, account, commit, identity, make_did, make_tid, track_record, uri
from indexer.atproto.lexicon import Validator
from indexer.fold.rebuild import rebuild
from tests.api_support import app
from tests.helpers import TRACK, ingest, rows

ALICE, BOB, CAROL, STRANGER = make_did(1), make_did(2), make_did(3), make_did(99)


def tid(n: int) -> str:
    return make_tid(BASE_US + n * 1000)


def track(did: str, n: int, features: list[dict[str, Any]] | None = None, *, rev: int | None = None) -> Any:
    extra = {"features": features} if features is not None else {}
    record = track_record(f"Track {n}", micros=BASE_US + n * 1000, **extra)
    return commit(did, TRACK, tid(n), tid(rev or n), record, operation="update" if rev else None)


def turi(did: str, n: int) -> str:
    return uri(did, TRACK, tid(n))


IDENTITIES = [
    identity(ALICE, "alice.test", seq=1, micros=BASE_US),
    identity(BOB, "bob.test", seq=2, micros=BASE_US),
    identity(CAROL, "carol.test", seq=3, micros=BASE_US),
]


async def _get(client: AsyncTestClient[Any], method: str, **params: Any) -> dict[str, Any]:
    resp = await client.get(f"/xrpc/fm.plyr.{method}", params=params)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def test_features_resolve_by_did_not_by_snapshot(db_url: str, validator: Validator) -> None:
    features = [
        {"did": BOB, "handle": "impostor.test", "displayName": "Not Bob"},
        {"did": STRANGER, "handle": "stranger.test"},
        {"did": BOB},
        {"did": CAROL},
    ]
    await ingest(db_url, validator, [*IDENTITIES, track(ALICE, 1, features)])
    async with AsyncTestClient(app=app(db_url)) as client:
        single = (await _get(client, "getTrack", uri=turi(ALICE, 1)))["track"]
        latest = (await _get(client, "getLatestTracks"))["tracks"][0]
    # The verified handle, never the snapshot; a DID unknown here is handle.invalid; each DID once, in order.
    expected = [
        {"did": BOB, "handle": "bob.test"},
        {"did": STRANGER, "handle": "handle.invalid"},
        {"did": CAROL, "handle": "carol.test"},
    ]
    assert single["features"] == expected
    assert latest["features"] == expected
    # The record as published keeps its snapshots.
    assert single["record"]["features"] == features

    # A featured account that is not active is shown as any such actor: its DID, handle.invalid.
    await ingest(db_url, validator, [account(CAROL, False, "takendown", seq=4, micros=BASE_US + 5)])
    async with AsyncTestClient(app=app(db_url)) as client:
        single = (await _get(client, "getTrack", uri=turi(ALICE, 1)))["track"]
    assert single["features"][2] == {"did": CAROL, "handle": "handle.invalid"}

    # A handle change shows at once, without touching the track.
    await ingest(db_url, validator, [identity(BOB, "bob.example", seq=5, micros=BASE_US + 6)])
    async with AsyncTestClient(app=app(db_url)) as client:
        single = (await _get(client, "getTrack", uri=turi(ALICE, 1)))["track"]
    assert single["features"][0] == {"did": BOB, "handle": "bob.example"}


async def test_track_without_features_has_none(db_url: str, validator: Validator) -> None:
    await ingest(db_url, validator, [track(ALICE, 1), track(ALICE, 2, [])])
    async with AsyncTestClient(app=app(db_url)) as client:
        tracks = (await _get(client, "getActorTracks", actor=ALICE))["tracks"]
    assert [("features" in t) for t in tracks] == [False, False]


async def _filtered(client: AsyncTestClient[Any], actor: str, which: str | None, limit: int = 100) -> list[str]:
    seen: list[str] = []
    cursor = None
    for _ in range(50):
        params: dict[str, Any] = {"actor": actor, "limit": limit}
        if which is not None:
            params["filter"] = which
        if cursor:
            params["cursor"] = cursor
        body = await _get(client, "getActorTracks", **params)
        seen += [t["uri"] for t in body["tracks"]]
        cursor = body.get("cursor")
        if cursor is None:
            return seen
    raise AssertionError("pagination did not end")


async def test_actor_tracks_filter(db_url: str, validator: Validator) -> None:
    await ingest(
        db_url,
        validator,
        [
            *IDENTITIES,
            track(ALICE, 1, [{"did": BOB, "handle": "old-bob.test"}]),
            track(BOB, 2),
            track(CAROL, 3, [{"did": ALICE}, {"did": BOB}]),
            # BOB featuring himself: one track, listed once under `all`.
            track(BOB, 4, [{"did": BOB}]),
            track(ALICE, 5),
        ],
    )
    async with AsyncTestClient(app=app(db_url)) as client:
        default = await _filtered(client, BOB, None)
        authored = await _filtered(client, "bob.test", "authored")
        featured = await _filtered(client, BOB, "featured")
        everything = await _filtered(client, BOB, "all")
        paged = [await _filtered(client, BOB, which, limit=1) for which in ("featured", "all")]
        bad = await client.get("/xrpc/fm.plyr.getActorTracks", params={"actor": BOB, "filter": "liked"})
    assert default == authored == [turi(BOB, 4), turi(BOB, 2)]
    assert featured == [turi(BOB, 4), turi(CAROL, 3), turi(ALICE, 1)]
    assert everything == [turi(BOB, 4), turi(CAROL, 3), turi(BOB, 2), turi(ALICE, 1)]
    assert paged == [featured, everything]
    assert bad.status_code == 400 and bad.json()["error"] == "InvalidRequest"

    # The projection follows the records: an update dropping BOB from ALICE's track, a deleted track, and
    # a featuring author going inactive.
    await ingest(
        db_url,
        validator,
        [
            track(ALICE, 1, [{"did": CAROL}], rev=10),
            commit(BOB, TRACK, tid(4), tid(11), None),
            account(CAROL, False, "deactivated", seq=4, micros=BASE_US + 12),
        ],
    )
    async with AsyncTestClient(app=app(db_url)) as client:
        assert await _filtered(client, BOB, "featured") == []
        assert await _filtered(client, BOB, "all") == [turi(BOB, 2)]
    await ingest(db_url, validator, [account(CAROL, True, seq=5, micros=BASE_US + 13)])
    async with AsyncTestClient(app=app(db_url)) as client:
        assert await _filtered(client, BOB, "featured") == [turi(CAROL, 3)]
        assert await _filtered(client, CAROL, "featured") == [turi(ALICE, 1)]

    # A rebuild refolds the log into the same projection.
    query = "SELECT did, rkey, feature_did, cid, sort_at FROM track_features ORDER BY 1, 2, 3"
    before = await rows(db_url, query)
    await rebuild(db_url)
    assert await rows(db_url, query) == before
    assert len(before) == 3
