"""The page cache (appview/page_cache.py): anonymous reads answered from memory until the index changes, against
the real fold, the real trigger of migration 0015 and a real Postgres; the cache's bookkeeping on its own."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import msgspec
import psycopg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from appview.page_cache import Entry, PageCache, PageCacheMiddleware
from bench.synth import BASE_US, commit, identity, make_did, make_tid, track_record
from indexer.atproto.lexicon import Validator
from indexer.db import notify
from indexer.fold.rebuild import rebuild
from indexer.metrics import Metrics
from indexer.settings import Settings
from tests.api_support import SETTINGS, app
from tests.helpers import TRACK, ingest, rows, rows_exec

ALICE = make_did(1)
LATEST = "/xrpc/fm.plyr.getLatestTracks"


def tid(n: int) -> str:
    return make_tid(BASE_US + n * 1000)


def track(n: int) -> Any:
    return commit(ALICE, TRACK, tid(n), tid(n), track_record(f"Track {n}", micros=BASE_US + n * 1000))


def hits(application: Litestar, result: str = "hit") -> float:
    return application.state.ctx.metrics.page_cache_requests.labels(result)._value.get()  # type: ignore[no-any-return]


async def live(application: Litestar) -> None:
    """Until the app's listener is connected (the cache answers nothing before)."""
    for _ in range(200):
        if application.state.ctx.pages.live:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the page cache never went live")


async def titles_until(client: AsyncTestClient[Litestar], wanted: list[str], seconds: float = 3.0) -> list[str]:
    """The latest tracks' titles, asked again until they are `wanted` or `seconds` pass (a change is heard a few
    milliseconds after its commit; entries would otherwise live 10 s)."""
    deadline = time.monotonic() + seconds
    while True:
        resp = await client.get(LATEST)
        assert resp.status_code == 200, resp.text
        titles = [t["title"] for t in resp.json()["tracks"]]
        if titles == wanted or time.monotonic() > deadline:
            return titles
        await asyncio.sleep(0.02)


async def seeded(db_url: str, validator: Validator) -> None:
    await ingest(db_url, validator, [identity(ALICE, "alice.test", seq=1, micros=BASE_US), track(1)])


async def test_anonymous_read_is_sent_again_from_memory_byte_for_byte(db_url: str, validator: Validator) -> None:
    await seeded(db_url, validator)
    application = app(db_url)
    async with AsyncTestClient(app=application) as client:
        await live(application)
        first = await client.get(LATEST)
        second = await client.get(LATEST)
        assert first.status_code == second.status_code == 200
        assert second.content == first.content
        assert second.headers["etag"] == first.headers["etag"]
        assert second.headers["cache-control"] == first.headers["cache-control"]
        assert (hits(application, "miss"), hits(application)) == (1, 1)
        # A matching If-None-Match is answered from memory too, with the same ETag and no body.
        again = await client.get(LATEST, headers={"If-None-Match": first.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        assert again.headers["etag"] == first.headers["etag"]
        assert hits(application) == 2
        # Another query string is another entry.
        other = await client.get(LATEST, params={"limit": 1})
        assert other.status_code == 200 and hits(application, "miss") == 2


async def test_a_committed_change_is_seen_at_once(db_url: str, validator: Validator) -> None:
    await seeded(db_url, validator)
    application = app(db_url)
    async with AsyncTestClient(app=application) as client:
        await live(application)
        assert await titles_until(client, ["Track 1"]) == ["Track 1"]
        await client.get(LATEST)
        assert hits(application) >= 1
        # A new track, folded by another process's writer: the trigger's notification empties the cache.
        await ingest(db_url, validator, [track(2)])
        assert await titles_until(client, ["Track 2", "Track 1"]) == ["Track 2", "Track 1"]
        # Any writer is heard, not only the fold: an operator's plain UPDATE of a projection.
        await rows_exec(db_url, "UPDATE tracks SET title = 'Renamed' WHERE title = 'Track 1'")
        assert await titles_until(client, ["Track 2", "Renamed"]) == ["Track 2", "Renamed"]


async def test_requests_with_credentials_never_meet_the_cache(db_url: str, validator: Validator) -> None:
    await seeded(db_url, validator)
    application = app(db_url)
    async with AsyncTestClient(app=application) as client:
        await live(application)
        assert (await client.get(LATEST)).status_code == 200
        assert (await client.get(LATEST)).status_code == 200
        # The same request with a token is the handler's: it refuses the bad token instead of sending the kept 200.
        refused = await client.get(LATEST, headers={"Authorization": "Bearer not-a-token"})
        assert refused.status_code == 401, refused.text
        assert hits(application) == 1


async def test_accepted_labelers_are_part_of_the_key(db_url: str, validator: Validator) -> None:
    await seeded(db_url, validator)
    labeler = make_did(900)
    application = app(db_url, settings=msgspec.structs.replace(SETTINGS, labelers=(labeler,)))
    async with AsyncTestClient(app=application) as client:
        await live(application)
        default = await client.get(LATEST)
        none = await client.get(LATEST, headers={"atproto-accept-labelers": "did:plc:nobodyhere"})
        assert labeler in default.headers["atproto-content-labelers"]
        assert labeler not in none.headers.get("atproto-content-labelers", "")
        assert hits(application) == 0
        assert (await client.get(LATEST, headers={"atproto-accept-labelers": "did:plc:nobodyhere"})).headers.get(
            "atproto-content-labelers"
        ) == none.headers.get("atproto-content-labelers")
        assert hits(application) == 1


async def test_nothing_is_served_while_changes_cannot_be_heard(
    db_url: str, validator: Validator, caplog: pytest.LogCaptureFixture
) -> None:
    await seeded(db_url, validator)
    application = app(db_url)
    async with AsyncTestClient(app=application) as client:
        await live(application)
        await client.get(LATEST)
        # The listening connection dies; a change made meanwhile is never notified to this process.
        await rows_exec(
            db_url,
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = 'LISTEN {notify.INDEX_CHANGED}'",
        )
        await ingest(db_url, validator, [track(2)])
        assert await titles_until(client, ["Track 2", "Track 1"], seconds=0.5) == ["Track 2", "Track 1"]
        assert any("page cache off: cannot hear the index's changes" in r.getMessage() for r in caplog.records)
        # It reconnects, and the cache works again from empty.
        await live(application)
        before = hits(application)
        await client.get(LATEST)
        await client.get(LATEST)
        assert hits(application) > before


async def test_disabled_by_setting(db_url: str, validator: Validator) -> None:
    await seeded(db_url, validator)
    application = app(db_url, settings=msgspec.structs.replace(SETTINGS, page_cache_bytes=0))
    async with AsyncTestClient(app=application) as client:
        for _ in range(3):
            assert (await client.get(LATEST)).status_code == 200
        assert not application.state.ctx.pages.live
        assert hits(application) == hits(application, "miss") == 0


def test_setting_is_parsed_strictly() -> None:
    assert Settings.from_env({}).page_cache_bytes == 64 * 2**20
    assert Settings.from_env({"PLYR_APPVIEW_PAGE_CACHE_MB": "0"}).page_cache_bytes == 0
    with pytest.raises(Exception, match="PLYR_APPVIEW_PAGE_CACHE_MB"):
        Settings.from_env({"PLYR_APPVIEW_PAGE_CACHE_MB": "lots"})
    with pytest.raises(Exception, match="PLYR_APPVIEW_PAGE_CACHE_MB"):
        Settings.from_env({"PLYR_APPVIEW_PAGE_CACHE_MB": "-1"})


async def test_every_table_the_reads_read_notifies_once_per_transaction(db_url: str) -> None:
    triggered = await rows(
        db_url,
        "SELECT c.relname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
        " WHERE NOT t.tgisinternal AND t.tgfoid = 'plyr_index_changed'::regproc",
    )
    assert sorted(r[0] for r in triggered) == sorted(notify.TABLES)
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as listener:
        await listener.execute(f"LISTEN {notify.INDEX_CHANGED}")
        async with await psycopg.AsyncConnection.connect(db_url) as writer:
            for table in notify.TABLES:
                await writer.execute(f"DELETE FROM {table}")  # type: ignore[arg-type]
            await writer.commit()
            # A rolled-back change is never announced.
            await writer.execute("DELETE FROM tracks")
            await writer.rollback()
        heard = []
        gen = listener.notifies(timeout=0.5)
        async for n in gen:
            heard.append(n.channel)
        assert heard == [notify.INDEX_CHANGED]


# -- the cache on its own -------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def cache(max_bytes: int = 10_000, ttl: float = 10.0, clock: Clock | None = None) -> PageCache:
    pages = PageCache(frozenset({"/x"}), max_bytes, ttl, Metrics(), clock or Clock())
    pages.live = True
    return pages


def entry(size: int, at: float = 0.0) -> Entry:
    return Entry([(b"etag", b'"e"')], b"x" * size, b'"e"', at)


def test_bounded_by_bytes_least_recently_used_first() -> None:
    pages = cache(max_bytes=3 * (100 + 600))
    for k in "abc":
        assert pages.put(("/x", k.encode(), b""), entry(100), pages.generation)
    assert pages.get(("/x", b"a", b"")) is not None  # a is now the most recently used
    assert pages.put(("/x", b"d", b""), entry(100), pages.generation)
    assert [k for k in "abcd" if pages.get(("/x", k.encode(), b"")) is not None] == ["a", "c", "d"]
    assert pages.size <= pages.max_bytes
    # An entry larger than the whole cache is not kept, and evicts nothing.
    assert not pages.put(("/x", b"big", b""), entry(10_000), pages.generation)
    assert len(pages) == 3


def test_expires_after_ttl_and_refuses_what_was_computed_before_a_change() -> None:
    clock = Clock()
    pages = cache(ttl=5.0, clock=clock)
    key = ("/x", b"", b"")
    started = pages.generation
    pages.changed()
    assert not pages.put(key, entry(10), started)
    assert pages.put(key, entry(10), pages.generation)
    clock.now = 4.9
    assert pages.get(key) is not None
    clock.now = 5.0
    assert pages.get(key) is None and len(pages) == 0
    pages.live = False
    assert not pages.put(key, entry(10, at=5.0), pages.generation)


async def test_concurrent_misses_of_one_key_run_the_handler_once() -> None:
    calls = 0
    release = asyncio.Event()

    async def handler(scope: Any, receive: Any, send: Any) -> None:
        nonlocal calls
        calls += 1
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"etag", b'"v"')]})
        await send({"type": "http.response.body", "body": b"page", "more_body": False})

    pages = cache()

    app = SimpleNamespace(state=SimpleNamespace(ctx=SimpleNamespace(pages=pages)))
    middleware = PageCacheMiddleware(handler)
    scope = {"type": "http", "method": "GET", "path": "/x", "query_string": b"", "headers": [], "litestar_app": app}
    bodies: list[list[bytes]] = [[] for _ in range(5)]

    def sender(i: int) -> Any:
        async def send(message: Any) -> None:
            if message["type"] == "http.response.body":
                bodies[i].append(message["body"])

        return send

    tasks = [asyncio.create_task(middleware(scope, None, sender(i))) for i in range(5)]  # type: ignore[arg-type]
    await asyncio.sleep(0.01)
    release.set()
    await asyncio.gather(*tasks)
    assert calls == 1
    assert bodies == [[b"page"]] * 5


async def test_a_rebuild_swapping_in_new_tables_is_heard_and_read_through_the_same_pool(
    db_url: str, validator: Validator
) -> None:
    """The online rebuild replaces the tables (indexer/fold/shadow.py): the API's pooled connections, with their
    prepared statements, read the new ones, and the swap's own notification empties the cache."""
    await seeded(db_url, validator)
    await ingest(db_url, validator, [track(2)])
    application = app(db_url)
    async with AsyncTestClient(app=application) as client:
        await live(application)
        # The index drifted from the log (what a rebuild is for), and the drifted page is cached.
        await rows_exec(db_url, "UPDATE tracks SET title = 'Drifted' WHERE title = 'Track 1'")
        assert await titles_until(client, ["Track 2", "Drifted"]) == ["Track 2", "Drifted"]
        assert (await client.get(LATEST)).status_code == 200
        assert hits(application) >= 1
        await rebuild(db_url)
        assert await titles_until(client, ["Track 2", "Track 1"]) == ["Track 2", "Track 1"]
        track_uri = (await rows(db_url, "SELECT uri FROM tracks WHERE title = 'Track 2'"))[0][0]
        resp = await client.get("/xrpc/fm.plyr.getTrack", params={"uri": track_uri})
        assert resp.status_code == 200 and resp.json()["track"]["title"] == "Track 2"
