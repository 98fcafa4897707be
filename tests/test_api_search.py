"""searchTracks: ranking, paging and escaping, with and without pg_trgm (whichever this Postgres has)."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from bench.synth import BASE_US, commit, make_did, make_tid, track_record, uri
from indexer.atproto.lexicon import Validator
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
    from bench.synth import account

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


# Two or three tracks in every rank, newest first within each rank; the oldest of a rank is newer than the
# newest of the rank below, and the other way round, so a walk that sorted on time alone would interleave them.
RANKED = [
    (10, "Glow", "Someone"),  # exact (title)
    (1, "Someone Else", "Glow"),  # exact (artist), older
    (2, "Glowing", "Someone"),  # prefix
    (11, "Someone", "Glowworm"),  # prefix (artist), newer
    (12, "Night Glow", "Someone"),  # word prefix
    (3, "The Glowing Hour", "Someone"),  # word prefix, older
    (4, "Afterglow", "Someone"),  # substring
    (13, "Someone", "Afterglowing"),  # substring (artist), newer
    (14, "Unrelated", "Someone"),
]
RANKED_ORDER = [
    "Glow",
    "Someone Else",
    "Someone",  # Glowworm
    "Glowing",
    "Night Glow",
    "The Glowing Hour",
    "Someone",  # Afterglowing
    "Afterglow",
]


async def walk(client: AsyncTestClient[Any], q: str, limit: int) -> tuple[list[str], list[str]]:
    seen: list[str] = []
    cursors: list[str] = []
    cursor = None
    while True:
        page = await search(client, q, limit=limit, **({"cursor": cursor} if cursor else {}))
        assert len(page["tracks"]) <= limit
        seen += titles(page)
        cursor = page.get("cursor")
        if not cursor:
            return seen, cursors
        cursors.append(cursor)


async def test_every_page_size_walks_ranks_in_order(db_url: str, validator: Validator) -> None:
    await ingest(db_url, validator, [track(n, title, artist) for n, title, artist in RANKED])
    async with AsyncTestClient(app=app(db_url)) as client:
        whole = titles(await search(client, "glow", limit=100))
        walks = {limit: await walk(client, "glow", limit) for limit in (1, 2, 3, 5, 8)}
    # Nothing else in the catalog is similar enough to "glow" to be a fuzzy match.
    assert whole == RANKED_ORDER
    for limit, (seen, cursors) in walks.items():
        assert seen == RANKED_ORDER, limit
        assert len(set(cursors)) == len(cursors)


async def test_cursor_names_its_rank_and_later_ranks_start_from_their_newest(db_url: str, validator: Validator) -> None:
    await ingest(db_url, validator, [track(n, title, artist) for n, title, artist in RANKED])
    async with AsyncTestClient(app=app(db_url)) as client:
        _, cursors = await walk(client, "glow", 1)
        # A page that ends on the last prefix match: the next one starts at the newest word-prefix match.
        boundary = await search(client, "glow", limit=1, cursor=cursors[3])
        rest = await search(client, "glow", limit=100, cursor=cursors[3])
        # A position in rank 2 newer than anything: the whole of ranks 2 and 3, none of ranks 0 and 1.
        from_rank_2 = await search(client, "glow", limit=100, cursor=f"2__{10**17}__bafyzzzzzzzz")
        past_everything = await search(client, "glow", cursor="3__0__bafyaaaaaaaa")
    assert [c.split("__")[0] for c in cursors] == ["0", "0", "1", "1", "2", "2", "3", "3"]
    assert titles(boundary) == ["Night Glow"]
    assert titles(rest) == RANKED_ORDER[4:]
    assert "cursor" not in rest or rest["cursor"] is None
    assert titles(from_rank_2) == RANKED_ORDER[4:]
    assert titles(past_everything) == []


def mixed_catalog() -> tuple[list[Any], list[str], list[str]]:
    """150 tracks for "glow": word-prefix matches on every third (common: a probe of the newest tracks fills any
    page), fuzzy-only ones on every fifth of the others (common too, with pg_trgm), and three substring, two
    description and one prefix match, old (rare: their ranks are collected in full). Returns the commits, and the
    expected order of the URIs without and with pg_trgm."""
    commits: list[Any] = []
    ranked: list[tuple[int, int, str]] = []
    for n in range(1, 151):
        extra: dict[str, Any] = {}
        if n in (5, 17, 29):
            title, rank = f"Afterglow {n}", 3
        elif n in (8, 23):
            title, rank, extra = f"Quiet {n}", 4, {"description": f"an afterglow of {n}"}
        elif n == 11:
            title, rank = f"Glowing {n}", 1
        elif n % 3 == 0:
            title, rank = f"Night Glow {n}", 2
        elif n % 5 == 0:
            title, rank = f"Glov {n}", 5
        else:
            title, rank = f"Unrelated {n}", -1
        rec = track_record(title, artist="Someone", micros=BASE_US + n * 1000, **extra)
        commits.append(commit(ALICE, TRACK, tid(n), tid(n), rec))
        if rank >= 0:
            ranked.append((rank, -n, uri(ALICE, TRACK, tid(n))))
    literal = [u for rank, _, u in sorted(ranked) if rank < 5]
    return commits, literal, [u for _, _, u in sorted(ranked)]


async def test_probed_and_collected_ranks_page_alike(db_url: str, validator: Validator) -> None:
    commits, literal, fuzzy = mixed_catalog()
    await ingest(db_url, validator, commits)
    expected = fuzzy if await has_trigram(db_url) else literal
    walked: dict[int, list[str]] = {}
    async with AsyncTestClient(app=app(db_url)) as client:
        for limit in (1, 2, 7, 30, 100):
            walked[limit], cursor = [], None
            while True:
                page = await search(client, "glow", limit=limit, **({"cursor": cursor} if cursor else {}))
                walked[limit] += [t["uri"] for t in page["tracks"]]
                cursor = page.get("cursor")
                if not cursor:
                    break
    for limit, uris in walked.items():
        assert uris == expected, limit


async def test_the_collecting_branch_runs_only_when_the_probe_falls_short(db_url: str, validator: Validator) -> None:
    import psycopg

    from appview.hydrate import Skeleton
    from appview.search import patterns
    from appview.xrpc import search_tracks

    commits, literal, _ = mixed_catalog()
    await ingest(db_url, validator, commits)
    # A collecting branch that fails if it is executed at all.
    failing = "SELECT uri, 2 AS rank, sort_at, cid FROM tracks WHERE 1 / (length(uri) - length(uri)) = 1"
    walk = Skeleton(search_tracks._probed(2, "", failing), patterns("glow"))
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        # Every third track is a word-prefix match: five of them are among the tracks the probe reads.
        page = await search_tracks.ranked_page(conn, [walk], 5, None)
        # There are fifty in all: a page of sixty needs the branch, and runs it.
        with pytest.raises(psycopg.errors.DivisionByZero):
            await search_tracks.ranked_page(conn, [walk], 60, None)
        # The API's own walks, both ways.
        walks = search_tracks.skeleton("glow", None, trigram=False)
        probed = await search_tracks.ranked_page(conn, walks, 6, None)
        collected = await search_tracks.ranked_page(conn, walks, 60, None)
    assert [r.uri for r in page] == literal[1:6]  # literal[0] is the one prefix match
    assert [r.uri for r in probed] == literal[:6]
    assert [r.uri for r in collected] == literal[:60]
