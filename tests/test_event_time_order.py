"""Feed order comes from the network's event time, not from the clock of the database that indexed it.

A projected row sorts by least(createdAt, arrival), where arrival is the source's event time (Jetstream
`time_us`, the firehose commit's `time`) kept in the log, or the local receive time for events that carry none
(backfill). So a capture replayed into two databases whose clocks disagree, or a rebuild, orders every feed the
same; a `createdAt` in the future never lifts a record above what arrived after it.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
from litestar.testing import AsyncTestClient

from bench.synth import BASE_US, commit, iso, make_did, make_tid, track_record, uri, workload
from indexer.atproto.lexicon import Validator
from tests.api_support import app
from tests.helpers import TRACK, ingest, one, rows, rows_exec

ENV = {**os.environ, "PLYR_APPVIEW_RESOLVE_IDENTITIES": "0", "PLYR_APPVIEW_LOG_LEVEL": "WARNING"}
DAY_US = 86_400_000_000
SORTED_TABLES = ("tracks", "likes", "lists", "comments")
ALICE = make_did(1)
BOB = make_did(2)


def _at(micros: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=micros)


def _capture(path: Path) -> dict[tuple[str, str, str, str, str], int]:
    """A Jetstream v1 capture in which every fifth record claims a `createdAt` 30 days after its event; returns
    each commit's time_us by (did, collection, rkey, rev, operation)."""
    times: dict[tuple[str, str, str, str, str], int] = {}
    with path.open("wb") as out:
        for i, obj in enumerate(workload(2500, seed=5)):
            c = obj.get("commit")
            if c is not None:
                record = c.get("record")
                if record is not None and i % 5 == 0:
                    record["createdAt"] = iso(obj["time_us"] + 30 * DAY_US)
                times[(obj["did"], c["collection"], c["rkey"], c["rev"], c["operation"])] = obj["time_us"]
            out.write(msgspec.json.encode(obj) + b"\n")
    return times


def _cli(db_url: str, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "appview.cli", "--database-url", db_url, *args, "--no-progress"],
        env=ENV, capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip


async def _sort_columns(db_url: str) -> dict[str, list[tuple[Any, ...]]]:
    return {t: await rows(db_url, f"SELECT did, rkey, sort_at FROM {t} ORDER BY did, rkey") for t in SORTED_TABLES}


async def _latest(db_url: str) -> list[str]:
    """Every page of getLatestTracks, in order."""
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 100}
    async with AsyncTestClient(app=app(db_url)) as client:
        while True:
            page = (await client.get("/xrpc/fm.plyr.getLatestTracks", params=params)).json()
            seen += [t["uri"] for t in page["tracks"]]
            if not page.get("cursor"):
                return seen
            params["cursor"] = page["cursor"]


async def test_replays_under_different_clocks_order_feeds_identically(tmp_path: Path, db_factory: object) -> None:
    assert callable(db_factory)
    capture = tmp_path / "capture.jsonl"
    times = _capture(capture)
    early, late = db_factory(), db_factory()
    # Two databases whose clocks disagree by years: the local receive time must not reach the feeds.
    await rows_exec(early, "ALTER TABLE events ALTER COLUMN received_at SET DEFAULT now() - interval '5 years'")
    await rows_exec(late, "ALTER TABLE events ALTER COLUMN received_at SET DEFAULT now() + interval '3 days'")
    _cli(early, "replay", str(capture), "--batch-size", "97")
    _cli(late, "replay", str(capture), "--batch-size", "500")

    # Each commit's network time is in the log, exactly as the capture carried it.
    logged = await rows(
        late,
        "SELECT did, collection, rkey, rev, operation, event_time FROM events"
        " WHERE kind = 'commit' AND invalid IS NULL",
    )
    assert len(logged) > 1500
    assert all(at == _at(times[tuple(key)]) for *key, at in logged), "event_time differs from the capture's time_us"

    first, second = await _sort_columns(early), await _sort_columns(late)
    assert all(first[t] for t in SORTED_TABLES)
    assert first == second
    # Each row sorts at least(createdAt, network time): the future createdAt of every fifth record is capped.
    for table in SORTED_TABLES:
        wrong = await one(
            late,
            f"SELECT count(*) FROM {table} t JOIN events e ON e.id = t.event_id"
            " WHERE t.sort_at <> least(coalesce(e.created_at, e.event_time), e.event_time)",
        )
        assert wrong == 0, table
    capped = await one(late, "SELECT count(*) FROM tracks WHERE created_at > sort_at")
    assert capped > 10

    order = await _latest(early)
    assert len(order) == await one(early, "SELECT count(*) FROM tracks WHERE author_active") > 100
    assert order == await _latest(late)

    # A rebuild refolds the log into the same sort columns.
    _cli(early, "rebuild")
    assert await _sort_columns(early) == second
    assert await _latest(early) == order


def _track(did: str, n: int, *, created_us: int, time_us: int | None, source: str = "jetstream") -> Any:
    ev = commit(did, TRACK, make_tid(BASE_US + n), make_tid(BASE_US + n), track_record(f"T{n}", micros=created_us))
    ev.source, ev.time_us = source, time_us
    return ev


async def test_future_created_at_never_ranks_above_arrival(db_url: str, validator: Validator) -> None:
    t = BASE_US
    await ingest(
        db_url,
        validator,
        [
            # Claims to be made a year after it was published.
            _track(ALICE, 1, created_us=t + 365 * DAY_US, time_us=t),
            _track(BOB, 2, created_us=t + 1_000_000, time_us=t + 1_000_000),
            _track(BOB, 3, created_us=t - DAY_US, time_us=t + 2_000_000),
        ],
    )
    assert await _latest(db_url) == [uri(BOB, TRACK, make_tid(t + 2)), uri(ALICE, TRACK, make_tid(t + 1)),
                                     uri(BOB, TRACK, make_tid(t + 3))]  # fmt: skip
    sort_at = dict(await rows(db_url, "SELECT rkey, sort_at FROM tracks"))
    assert sort_at[make_tid(t + 1)] == _at(t)  # its arrival, not its claim
    assert sort_at[make_tid(t + 3)] == _at(t - DAY_US)  # an earlier claim stands


async def test_a_network_time_in_the_future_is_not_believed(db_url: str, validator: Validator) -> None:
    """A source that claims a commit happened years from now (a PDS followed directly sets its own `time`) does
    not get its record to the top of the feeds: the event keeps no network time and arrives when received."""
    future = int((dt.datetime.now(dt.UTC) + dt.timedelta(days=3650)).timestamp() * 1_000_000)
    await ingest(db_url, validator, [_track(ALICE, 1, created_us=future, time_us=future)])
    assert await one(db_url, "SELECT event_time FROM events") is None
    sort_at, received_at = await one(db_url, "SELECT t.sort_at, e.received_at FROM tracks t JOIN events e"
                                     " ON e.id = t.event_id")  # fmt: skip
    assert sort_at == received_at
    assert sort_at <= dt.datetime.now(dt.UTC)


async def test_backfilled_records_sort_by_their_creation(db_url: str, validator: Validator) -> None:
    """Backfill has no per-record network time: a backfilled record sorts by its createdAt, capped at the time
    it was fetched, so old records from a backfill stay below what the stream delivers later."""
    t = BASE_US
    await ingest(
        db_url,
        validator,
        [
            _track(ALICE, 1, created_us=t - 30 * DAY_US, time_us=None, source="backfill"),
            _track(ALICE, 2, created_us=t - 10 * DAY_US, time_us=None, source="backfill"),
            _track(ALICE, 3, created_us=t + 3650 * DAY_US * 3, time_us=None, source="backfill"),
        ],
        [_track(BOB, 4, created_us=t, time_us=t)],
    )
    assert await one(db_url, "SELECT count(*) FROM events WHERE event_time IS NOT NULL") == 1
    sort_at = dict(await rows(db_url, "SELECT rkey, sort_at FROM tracks"))
    assert sort_at[make_tid(t + 1)] == _at(t - 30 * DAY_US)
    assert sort_at[make_tid(t + 2)] == _at(t - 10 * DAY_US)
    received = await one(db_url, "SELECT received_at FROM events WHERE rkey = %s", make_tid(t + 3))
    assert sort_at[make_tid(t + 3)] == received  # a claim from the future is capped at the fetch
    latest = await _latest(db_url)
    assert latest[0] == uri(ALICE, TRACK, make_tid(t + 3))
    assert latest[1:] == [uri(BOB, TRACK, make_tid(t + 4)), uri(ALICE, TRACK, make_tid(t + 2)),
                          uri(ALICE, TRACK, make_tid(t + 1))]  # fmt: skip
