"""searchTracks: ranking, paging and escaping, with and without pg_trgm (whichever this Postgres has)."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from indexer.lexicon import Validator
from indexer.synth import BASE_US, commit, make_did, make_tid, track_record, uri
from tests.api_support import app
from tests.helpers import TRACK, ingest, rows

ALICE = make_did(1)


def tid(n: int) -> str:
    return make_tid(BASE_US + n * 1000)


def track(n: int, title: str, artist: str = "Someone") -> Any:
    return commit(ALICE, TRACK, tid(n), tid(n), track_record(title, artist=artist, micros=BASE_US + n * 1000))


CATALOG = [
    (1, "Premidnightly", "Someone"),  # substring
    (2, "After Midnight", "Someone"),  # word prefix
    (3, "Midnight City", "Someone"),  # prefix
    (4, "midnight", "Someone"),  # exact
    (5, "Sunrise", "Midnight"),  # exact, on the artist
    (6, "Midnite", "Someone"),  # fuzzy only
    (7, "Noon", "Someone"),  # no match
    (8, "Midnight Train", "Someone"),  # prefix, newer than 3
]


async def search(client: AsyncTestClient[Any], q: str, **params: Any) -> dict[str, Any]:
    resp = await client.get("/xrpc/fm.plyr.searchTracks", params={"q": q, **params})
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def titles(body: dict[str, Any]) -> list[str]:
    return [t["title"] for t in body["tracks"]]


async def has_trigram(db_url: str) -> bool:
    return bool(await rows(db_url, "SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'"))


async def test_ranked_exact_prefix_word_substring_fuzzy(db_url: str, validator: Validator) -> None:
    await ingest(db_url, validator, [track(n, title, artist) for n, title, artist in CATALOG])
    expected = ["Sunrise", "midnight", "Midnight Train", "Midnight City", "After Midnight", "Premidnightly"]
    if await has_trigram(db_url):
        expected.append("Midnite")
    async with AsyncTestClient(app=app(db_url)) as client:
        body = await search(client, "  MIDNIGHT ")
        walked: list[str] = []
        cursor = None
        while True:
            page = await search(client, "midnight", limit=2, **({"cursor": cursor} if cursor else {}))
            walked += titles(page)
            cursor = page.get("cursor")
            if not cursor:
                break
    assert titles(body) == expected
    assert walked == expected


async def test_like_and_regex_characters_are_literal(db_url: str, validator: Validator) -> None:
    await ingest(db_url, validator, [track(1, "100% Pure"), track(2, "a_b (live)"), track(3, "Plain")])
    async with AsyncTestClient(app=app(db_url)) as client:
        percent = titles(await search(client, "0%"))
        underscore = titles(await search(client, "_"))
        paren = titles(await search(client, "(live"))
        dot = titles(await search(client, "."))
    assert percent == ["100% Pure"]
    assert underscore == ["a_b (live)"]
    assert paren == ["a_b (live)"]
    assert dot == []


async def test_search_hides_inactive_and_rejects_bad_input(db_url: str, validator: Validator) -> None:
    from indexer.synth import account

    await ingest(db_url, validator, [track(1, "Echo"), account(ALICE, False, "suspended", seq=1, micros=BASE_US)])
    async with AsyncTestClient(app=app(db_url)) as client:
        hidden = await search(client, "echo")
        empty = await client.get("/xrpc/fm.plyr.searchTracks", params={"q": "   "})
        missing = await client.get("/xrpc/fm.plyr.searchTracks")
        bad_cursor = await client.get("/xrpc/fm.plyr.searchTracks", params={"q": "echo", "cursor": "9999__1__bafyabc"})
    assert hidden["tracks"] == []
    assert uri(ALICE, TRACK, tid(1)) not in str(hidden)
    for resp in (empty, missing, bad_cursor):
        assert resp.status_code == 400, resp.text
