"""searchActors, searchLists and description matches of searchTracks: ranking, paging and hiding, with and
without pg_trgm (whichever this Postgres has; the plain path is what the embedded server runs)."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from bench.synth import (
    BASE_US,
    account,
    commit,
    identity,
    list_record,
    make_did,
    make_tid,
    profile_record,
    track_record,
    uri,
)
from indexer.atproto.lexicon import Validator
from tests.api_support import app
from tests.helpers import LIST, PROFILE, TRACK, ingest, rows_exec

ALICE, BOB, CAROL, DAVE, ERIN, EVE = (make_did(n) for n in range(1, 7))
LABELER = "did:plc:labelerlabelerlabeler"


def tid(n: int) -> str:
    return make_tid(BASE_US + n * 1000)


def track(did: str, n: int, title: str, artist: str, **extra: Any) -> Any:
    return commit(did, TRACK, tid(n), tid(n), track_record(title, artist=artist, micros=BASE_US + n * 1000, **extra))


def plist(did: str, n: int, name: str, list_type: str = "playlist") -> Any:
    record = list_record([], name=name, micros=BASE_US + n * 1000)
    record["listType"] = list_type
    return commit(did, LIST, tid(n), tid(n), record)


def people() -> list[Any]:
    profile = profile_record("moths at night", micros=BASE_US)
    profile["displayName"] = "Luna Moth"
    return [
        identity(ALICE, "nightjar.test", seq=1, micros=BASE_US),
        identity(BOB, "bob.test", seq=2, micros=BASE_US),
        identity(CAROL, "lunatic.test", seq=3, micros=BASE_US),
        identity(DAVE, "dave.test", seq=4, micros=BASE_US),
        identity(ERIN, "erin.test", seq=5, micros=BASE_US),
        identity(EVE, "eve.test", seq=6, micros=BASE_US),
        commit(ALICE, PROFILE, "self", tid(1), profile),
        track(ALICE, 2, "Moth Song", "Nightjar"),  # display name: prefix
        track(BOB, 3, "Anything", "Luna"),  # artist: exact
        track(DAVE, 4, "Tides", "Blue Lunar"),  # artist: word prefix
        track(ERIN, 5, "Dust", "Selunaria"),  # artist: substring
        track(EVE, 6, "Gone", "Luna"),  # exact, but deactivated below
        # CAROL: handle prefix, no tracks (after ALICE within the rank).
        plist(BOB, 20, "midnight"),  # exact
        plist(ALICE, 21, "Midnight Sun", "album"),  # prefix, newer
        plist(BOB, 12, "Midnight Drive"),  # prefix, older
        plist(CAROL, 23, "After Midnight Mix"),  # word prefix
        plist(DAVE, 24, "Premidnight"),  # substring
        plist(EVE, 25, "midnight eve"),  # hidden: deactivated
        plist(ERIN, 26, "Noon"),
    ]


ACTOR_ORDER = [BOB, ALICE, CAROL, DAVE, ERIN]
LIST_ORDER = ["midnight", "Midnight Sun", "Midnight Drive", "After Midnight Mix", "Premidnight"]


async def seed(db_url: str, validator: Validator) -> None:
    await ingest(db_url, validator, people())
    await ingest(db_url, validator, [account(EVE, False, "deactivated", seq=7, micros=BASE_US + 5)])


async def call(client: AsyncTestClient[Any], method: str, headers: dict[str, str] | None = None, **params: Any) -> Any:
    resp = await client.get(f"/xrpc/fm.plyr.{method}", params=params, headers=headers)
    assert resp.status_code == 200, resp.text
    return resp.json()


async def walk(client: AsyncTestClient[Any], method: str, key: str, limit: int, **params: Any) -> list[Any]:
    seen: list[Any] = []
    cursor = None
    while True:
        page = await call(client, method, limit=limit, **params, **({"cursor": cursor} if cursor else {}))
        assert len(page[key]) <= limit
        seen += page[key]
        cursor = page.get("cursor")
        if not cursor:
            return seen


async def test_search_actors_ranks_handles_names_and_artists(db_url: str, validator: Validator) -> None:
    await seed(db_url, validator)
    async with AsyncTestClient(app=app(db_url)) as client:
        whole = (await call(client, "searchActors", q=" LUNA "))["actors"]
        walks = {n: await walk(client, "searchActors", "actors", n, q="luna") for n in (1, 2, 3)}
        handle = (await call(client, "searchActors", q="nightjar.test"))["actors"]
    assert [a["did"] for a in whole] == ACTOR_ORDER
    for limit, seen in walks.items():
        assert [a["did"] for a in seen] == ACTOR_ORDER, limit
    names = {a["did"]: a.get("displayName") for a in whole}
    # The profile's display name; else the artist name on the newest track; else none.
    assert names[ALICE] == "Luna Moth"
    assert names[BOB] == "Luna"
    assert names[CAROL] is None
    assert whole[0]["handle"] == "bob.test"
    assert [a["did"] for a in handle] == [ALICE]


async def test_search_lists_ranks_and_filters(db_url: str, validator: Validator) -> None:
    await seed(db_url, validator)
    async with AsyncTestClient(app=app(db_url)) as client:
        whole = (await call(client, "searchLists", q="Midnight"))["lists"]
        walks = {n: await walk(client, "searchLists", "lists", n, q="midnight") for n in (1, 2, 4)}
        albums = (await call(client, "searchLists", q="midnight", listType="album"))["lists"]
    assert [x["name"] for x in whole] == LIST_ORDER
    for limit, seen in walks.items():
        assert [x["name"] for x in seen] == LIST_ORDER, limit
    assert [(x["name"], x["listType"]) for x in albums] == [("Midnight Sun", "album")]
    assert uri(EVE, LIST, tid(25)) not in str(whole)


async def test_labels_hide_actors_and_lists_from_search(db_url: str, validator: Validator) -> None:
    await seed(db_url, validator)
    for subject in (DAVE, uri(BOB, LIST, tid(20))):
        await rows_exec(
            db_url,
            "INSERT INTO labels (src, uri, val, cts, cts_at, sig, seq)"
            f" VALUES ('{LABELER}', '{subject}', '!hide', '2025-01-01T00:00:00Z', now(), '\\x00', 1)",
        )
    applied = {"atproto-accept-labelers": LABELER}
    async with AsyncTestClient(app=app(db_url)) as client:
        actors = (await call(client, "searchActors", headers=applied, q="luna"))["actors"]
        lists = (await call(client, "searchLists", headers=applied, q="midnight"))["lists"]
        unlabeled = (await call(client, "searchActors", q="luna"))["actors"]
    assert [a["did"] for a in actors] == [BOB, ALICE, CAROL, ERIN]
    # Bob's "midnight" by its own label, Dave's "Premidnight" by the label on his account.
    assert [x["name"] for x in lists] == LIST_ORDER[1:4]
    assert [a["did"] for a in unlabeled] == ACTOR_ORDER


async def test_search_tracks_matches_descriptions_below_titles(db_url: str, validator: Validator) -> None:
    await ingest(
        db_url,
        validator,
        [
            track(ALICE, 1, "Quiet", "Someone", description="Recorded at midnight in Lisbon"),
            track(ALICE, 2, "Midnight", "Someone"),
            track(ALICE, 3, "Noise", "Someone", description="nothing to see"),
        ],
    )
    async with AsyncTestClient(app=app(db_url)) as client:
        midnight = await call(client, "searchTracks", q="midnight")
        lisbon = await call(client, "searchTracks", q="lisbon")
        paged = await walk(client, "searchTracks", "tracks", 1, q="midnight")
    assert [t["title"] for t in midnight["tracks"]] == ["Midnight", "Quiet"]
    assert [t["title"] for t in lisbon["tracks"]] == ["Quiet"]
    assert [t["title"] for t in paged] == ["Midnight", "Quiet"]


async def test_bad_queries(db_url: str, validator: Validator) -> None:
    await seed(db_url, validator)
    async with AsyncTestClient(app=app(db_url)) as client:
        for method in ("searchActors", "searchLists"):
            for params in ({"q": "   "}, {}, {"q": "x", "cursor": "999__1__bafyabcdefgh"}, {"q": "x", "cursor": "x"}):
                resp = await client.get(f"/xrpc/fm.plyr.{method}", params=params)
                assert resp.status_code == 400, (method, params, resp.text)
        percent = await call(client, "searchLists", q="%")
    assert percent["lists"] == []
