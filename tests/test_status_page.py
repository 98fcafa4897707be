"""The operator status page: sources with cursor, lag and rate; rejections with escaped examples; backfill
progress; table counts; and its cost does not depend on the size of the log."""

from __future__ import annotations

import html
import re
import time

import msgspec
import psycopg
import pytest
from litestar.testing import AsyncTestClient

from appview.pages import status_data
from appview.pages.status_data import snapshot
from bench.synth import BASE_US, commit, make_did, make_tid, track_record
from indexer.atproto.lexicon import Validator
from indexer.events import Malformed
from tests.api_support import app
from tests.helpers import TRACK, ingest, rows_exec

ALICE = make_did(1)
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def _text(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


async def test_status_page_shows_ingest_rejections_and_sync(db_url: str, validator: Validator) -> None:
    now_us = int(time.time() * 1_000_000)
    await ingest(
        db_url,
        validator,
        [
            msgspec.structs.replace(
                commit(ALICE, TRACK, make_tid(BASE_US + i), make_tid(BASE_US + i), track_record(f"T{i}")),
                source="jetstream:a.example",
                cursor=now_us - 3_000_000 + i,
                time_us=now_us - 3_000_000 + i,
            )
            for i in range(5)
        ],
        [
            Malformed(reason="bad_frame", detail=HOSTILE, source="jetstream:a.example", raw=HOSTILE * 2),
            Malformed(reason="bad_frame", detail="second", source="jetstream:a.example", raw="{}"),
            Malformed(reason="not_json", detail="oops", source="firehose:b.example", raw="\x00\x01"),
        ],
    )
    await rows_exec(
        db_url,
        "INSERT INTO repo_sync (did, reason, synced_at) VALUES "
        "('did:plc:done1', 'backfill', now()), ('did:plc:done2', 'backfill', now())",
    )
    await rows_exec(
        db_url,
        "INSERT INTO repo_sync (did, reason, attempts, last_error) VALUES "
        "('did:plc:pending1', 'rev_gap', 0, NULL), "
        "('did:plc:pending2', 'backfill', 3, 'HTTP 502 from <b>pds</b>')",
    )
    async with AsyncTestClient(app=app(db_url)) as client:
        root = await client.get("/", follow_redirects=False)
        page = await client.get("/status")
    assert root.status_code == 302 and root.headers["location"] == "/status"
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    body = page.text
    assert '<meta http-equiv="refresh"' in body
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "script-src" not in page.headers["content-security-policy"], "the status page runs no script"
    # Hostile input never reaches the page as markup.
    assert "<script>alert" not in body and "<img src=x" not in body and "<b>pds</b>" not in body
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in body
    assert "HTTP 502 from &lt;b&gt;pds&lt;/b&gt;" in body
    text = _text(body)
    # The source row: its cursor, a lag of about three seconds, and a rate from the last minute of the log.
    row = re.search(r"jetstream:a\.example (\d+) ([\d.]+) s ([\d.]+) s ([\d.]+)", text)
    assert row is not None, text
    assert int(row.group(1)) == now_us - 3_000_000 + 4
    assert 2.0 <= float(row.group(2)) < 60
    assert float(row.group(4)) == round(5 / status_data.RATE_WINDOW, 1)
    assert re.search(r"bad_frame 2 ", text) and re.search(r"not_json 1 ", text)
    assert "second" in text and "oops" in text
    assert re.search(r"Repos known to backfill/reconcile: 4 ; pending fetch: 2 ; synced: 2", text), text
    assert re.search(r"rev_gap 1", text) and "did:plc:pending2" in text
    assert "did:plc:pending1" not in text, "a pending repo that never failed is not listed as failing"
    assert re.search(r"tracks 5 ", text) and re.search(r"rejections 3 ", text)


async def test_status_page_shows_each_sources_connection_and_replays_apart(db_url: str, validator: Validator) -> None:
    """What the indexer (another process) records in source_status is on the page: a host that never connected
    with its (hostile, escaped) last error and attempts, a standby failover host, a connected one; replays in a
    table of their own, without a lag; fuzzy search said to be unavailable without pg_trgm."""
    await ingest(
        db_url,
        validator,
        [
            msgspec.structs.replace(
                commit(ALICE, TRACK, make_tid(BASE_US), make_tid(BASE_US), track_record("old")),
                source="replay:cap.jsonl:0123456789abcdef",
                cursor=41,
                time_us=BASE_US,
            )
        ],
    )
    await rows_exec(
        db_url,
        "INSERT INTO source_status (source, host, kind, url, active, connected, since, last_error, attempts) VALUES"
        " ('jetstream', 'js1.example', 'jetstream', 'wss://js1.example/subscribe', true, false,"
        f"  now() - interval '5 minutes', '{HOSTILE.replace(chr(39), chr(39) * 2)}', 12),"
        " ('jetstream', 'js2.example', 'jetstream', 'wss://js2.example/subscribe', false, false, now(), NULL, 0)",
    )
    async with AsyncTestClient(app=app(db_url)) as client:
        body = (await client.get("/status")).text
    assert "<script>alert" not in body and "<img src=x" not in body
    text = _text(body)
    assert "No ingest source" not in text
    escaped = html.escape(HOSTILE, quote=True)
    assert f"<code>js1.example</code>: not connected — last error: <code>{escaped}</code> (12 attempts)" in body, body
    assert "never connected; trying since" in text
    assert "js2.example : standby" in text
    assert f"Ingest is not healthy: no live source connected (js1.example: {escaped} since " in body
    # The replay is listed apart, not as a live source with a lag of a year.
    replays = body.split('id="replays"', 1)
    assert len(replays) == 2 and "replay:cap.jsonl:0123456789abcdef" in replays[1]
    assert "replay:cap.jsonl" not in replays[0]
    assert re.search(r"replay:cap\.jsonl:0123456789abcdef 41 [\d.]+ s ago", text), text
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        cur = await conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
        trigram = await cur.fetchone() is not None
    assert ('id="no-fuzzy"' in body) == (not trigram)

    # Connected: the page says since when, and ingest is healthy once an event is committed.
    now_us = int(time.time() * 1_000_000)
    await ingest(
        db_url,
        validator,
        [
            msgspec.structs.replace(
                commit(ALICE, TRACK, make_tid(BASE_US + 1), make_tid(BASE_US + 1), track_record("new")),
                source="jetstream",
                cursor=now_us,
                time_us=now_us,
            )
        ],
    )
    await rows_exec(db_url, "UPDATE source_status SET connected = true, since = now() WHERE host = 'js1.example'")
    async with AsyncTestClient(app=app(db_url)) as client:
        body = (await client.get("/status")).text
    text = _text(body)
    assert re.search(r"js1\.example : connected since \d\d:\d\d:\d\d UTC", text), text
    assert 'id="ingest-problem"' not in body


async def test_status_page_uses_estimates_on_big_tables(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the exact-count limits, table counts come from planner statistics, and a frequent rejection
    reason's count from the planner's most-common-value share."""
    monkeypatch.setattr(status_data, "EXACT_LIMIT", 100)
    monkeypatch.setattr(status_data, "REASON_COUNT_LIMIT", 50)
    await rows_exec(
        db_url,
        "INSERT INTO rejections (source, reason, detail, dedup) "
        "SELECT 'test', CASE WHEN g <= 150 THEN 'many' ELSE 'few' END, 'r' || g, decode(md5(g::text), 'hex') "
        "FROM generate_series(1, 200) g",
    )
    await rows_exec(db_url, "ANALYZE rejections")
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        snap = await snapshot(conn)
    rejections = next(t for t in snap.tables if t.name == "rejections")
    assert rejections.rows == status_data.Count(200, "estimate")
    tracks = next(t for t in snap.tables if t.name == "tracks")
    assert tracks.rows == status_data.Count(0, "exact")
    by_reason = {r.reason: r for r in snap.rejections}
    assert by_reason["many"].count == status_data.Count(150, "estimate")
    assert by_reason["few"].count == status_data.Count(50, "exact")
    assert [x.detail for x in by_reason["many"].examples] == ["r150", "r149", "r148"]
    # Newest trouble first.
    assert [r.reason for r in snap.rejections] == ["few", "many"]


async def test_status_page_when_database_is_down() -> None:
    async with AsyncTestClient(app=app("postgresql://nobody@127.0.0.1:1/none?connect_timeout=1")) as client:
        page = await client.get("/status")
    assert page.status_code == 503
    assert 'id="db-error"' in page.text
    assert "127.0.0.1" not in page.text


async def test_listen_page_and_its_assets_are_served(db_url: str) -> None:
    async with AsyncTestClient(app=app(db_url)) as client:
        page = await client.get("/listen")
        script = await client.get("/static/listen.js")
        style = await client.get("/static/listen.css")
        missing = await client.get("/static/nothing.js")
    assert page.status_code == 200 and '<audio id="player"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert script.status_code == 200 and "fm.plyr.getLatestTracks" in script.text
    # The page builds its DOM from API data with textContent only.
    assert "innerHTML" not in script.text
    assert style.status_code == 200
    assert missing.status_code == 404
