"""getActorAlbums and getAlbum over HTTP, fed through the real fold: name-only and list-backed albums merged,
album order, paging, and what hides an album or its tracks."""

from __future__ import annotations

from typing import Any

import psycopg
from litestar.testing import AsyncTestClient

from bench.synth import BASE_US, account, commit, identity, list_record, make_cid, make_did, make_tid, track_record, uri
from indexer.atproto.lexicon import Validator
from indexer.moderation import takedowns
from indexer.moderation.takedowns import parse_subject
from tests.api_support import app
from tests.helpers import LIST, TRACK, ingest

ALICE, BOB = make_did(1), make_did(2)


def tid(n: int) -> str:
    return make_tid(BASE_US + n * 1000)


def rec(n: int, album: str | None = None, **extra: Any) -> dict[str, Any]:
    fields = {"album": album} if album is not None else {}
    return track_record(f"Song {n}", micros=BASE_US + n * 1000, **fields, **extra)


# (author, n, album, extra fields)
TRACKS: list[tuple[str, int, str | None, dict[str, Any]]] = [
    (ALICE, 1, "Night Drive", {"imageUrl": "https://img.example.com/nd.jpg"}),
    (ALICE, 2, "Night Drive", {}),
    (ALICE, 3, "Loose Ends", {}),
    (ALICE, 4, "Loose Ends", {"imageUrl": "https://img.example.com/le.jpg"}),
    (ALICE, 5, None, {}),
    # Names the listed album without being in its list: it joins the album after the list's items.
    (ALICE, 6, "Night Drive", {}),
    # Another artist's album of the same name is theirs.
    (BOB, 7, "Night Drive", {}),
]


def turi(did: str, n: int) -> str:
    return uri(did, TRACK, tid(n))


def album_list(did: str, n: int, name: str, *items: tuple[str, int, dict[str, Any]]) -> Any:
    record = list_record([(turi(d, k), make_cid(r)) for d, k, r in items], name=name, micros=BASE_US + n * 1000)
    record["listType"] = "album"
    return commit(did, LIST, tid(n), tid(n), record)


def events() -> list[Any]:
    found = {(d, n): rec(n, album, **extra) for d, n, album, extra in TRACKS}
    return [
        identity(ALICE, "alice.test", seq=1, micros=BASE_US),
        identity(BOB, "bob.test", seq=2, micros=BASE_US),
        *(commit(d, TRACK, tid(n), tid(n), r) for (d, n), r in found.items()),
        # Track 2 before track 1: list order, not time order.
        album_list(ALICE, 10, "Night Drive", (ALICE, 2, found[ALICE, 2]), (ALICE, 1, found[ALICE, 1])),
        album_list(BOB, 11, "Bob's List", (BOB, 7, found[BOB, 7])),
    ]


LIST_URI = uri(ALICE, LIST, tid(10))


async def get(client: AsyncTestClient[Any], method: str, **params: Any) -> dict[str, Any]:
    resp = await client.get(f"/xrpc/fm.plyr.{method}", params=params)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def song_numbers(body: dict[str, Any]) -> list[int]:
    return [int(t["title"].removeprefix("Song ")) for t in body["tracks"]]


async def test_albums_merge_names_and_lists(db_url: str, validator: Validator) -> None:
    await ingest(db_url, validator, events())
    async with AsyncTestClient(app=app(db_url)) as client:
        albums = (await get(client, "getActorAlbums", actor="alice.test"))["albums"]
        bobs = (await get(client, "getActorAlbums", actor=BOB))["albums"]
    assert [(a["title"], a.get("listUri"), a["trackCount"]) for a in albums] == [
        ("Night Drive", LIST_URI, 3),
        ("Loose Ends", None, 2),
    ]
    night, loose = albums
    assert night["author"] == {"did": ALICE, "handle": "alice.test"}
    assert night["artist"] == "Synth Artist"
    assert night["imageUrl"] == "https://img.example.com/nd.jpg"
    assert loose["imageUrl"] == "https://img.example.com/le.jpg"
    assert night["firstTrackAt"] < night["lastTrackAt"]
    # Bob's album list and his name-only album are separate albums, each with his track only.
    assert sorted((a["title"], a["trackCount"], "listUri" in a) for a in bobs) == [
        ("Bob's List", 1, True),
        ("Night Drive", 1, False),
    ]


async def test_album_order_and_paging(db_url: str, validator: Validator) -> None:
    await ingest(db_url, validator, events())
    async with AsyncTestClient(app=app(db_url)) as client:
        by_list = await get(client, "getAlbum", uri=LIST_URI)
        by_name = await get(client, "getAlbum", actor="alice.test", name="Night Drive")
        loose = await get(client, "getAlbum", actor=ALICE, name="Loose Ends")
        walked: list[int] = []
        cursor: str | None = None
        while True:
            page = await get(client, "getAlbum", uri=LIST_URI, limit=1, **({"cursor": cursor} if cursor else {}))
            walked += song_numbers(page)
            cursor = page.get("cursor")
            if not cursor:
                break
        first = await get(client, "getActorAlbums", actor=ALICE, limit=1)
        second = await get(client, "getActorAlbums", actor=ALICE, limit=1, cursor=first["cursor"])
        third = await get(client, "getActorAlbums", actor=ALICE, limit=1, cursor=second["cursor"])
    assert song_numbers(by_list) == [2, 1, 6]
    assert by_list["album"]["listUri"] == LIST_URI and by_list["album"]["trackCount"] == 3
    assert by_name == by_list
    assert song_numbers(loose) == [3, 4]
    assert "listUri" not in loose["album"]
    assert walked == [2, 1, 6]
    assert [a["title"] for a in first["albums"] + second["albums"]] == ["Night Drive", "Loose Ends"]
    # A full page has a cursor; the page after the last album is empty and has none.
    assert third == {"albums": []}


async def test_hidden_tracks_and_authors(db_url: str, validator: Validator) -> None:
    await ingest(db_url, validator, events())
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await takedowns.change(conn, parse_subject(turi(ALICE, 1)), applied=True, reason=None, by="test")
    await ingest(db_url, validator, [account(BOB, False, "deactivated", seq=3, micros=BASE_US + 5)])
    async with AsyncTestClient(app=app(db_url)) as client:
        album = await get(client, "getAlbum", uri=LIST_URI)
        albums = (await get(client, "getActorAlbums", actor=ALICE))["albums"]
        bob_albums = await client.get("/xrpc/fm.plyr.getActorAlbums", params={"actor": BOB})
        bob_list = await client.get("/xrpc/fm.plyr.getAlbum", params={"uri": uri(BOB, LIST, tid(11))})
        bob_named = await client.get("/xrpc/fm.plyr.getAlbum", params={"actor": BOB, "name": "Night Drive"})
    assert song_numbers(album) == [2, 6]
    assert albums[0]["trackCount"] == 2
    # Track 1 carried the album's artwork; none of its shown tracks has any now.
    assert "imageUrl" not in albums[0]
    assert bob_albums.status_code == 400 and bob_albums.json()["error"] == "AccountDeactivated"
    assert bob_list.status_code == 404, bob_list.text
    assert bob_named.status_code == 400 and bob_named.json()["error"] == "AccountDeactivated"


async def test_bad_album_names(db_url: str, validator: Validator) -> None:
    await ingest(db_url, validator, events())
    async with AsyncTestClient(app=app(db_url)) as client:
        both = await client.get("/xrpc/fm.plyr.getAlbum", params={"uri": LIST_URI, "name": "Night Drive"})
        neither = await client.get("/xrpc/fm.plyr.getAlbum")
        name_only = await client.get("/xrpc/fm.plyr.getAlbum", params={"name": "Night Drive"})
        not_a_list = await client.get("/xrpc/fm.plyr.getAlbum", params={"uri": turi(ALICE, 1)})
        unknown = await client.get("/xrpc/fm.plyr.getAlbum", params={"actor": ALICE, "name": "Nope"})
        bad_cursor = await client.get(
            "/xrpc/fm.plyr.getAlbum", params={"uri": LIST_URI, "cursor": "7__1__bafyabcdefgh"}
        )
    for resp in (both, neither, name_only, not_a_list, bad_cursor):
        assert resp.status_code == 400, resp.text
    assert unknown.status_code == 404, unknown.text
