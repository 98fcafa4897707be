"""The proxy's fold (appview/proxy/fold.py) is the indexer's: folding writes one at a time through it gives the
same index as the indexer's batch writer, its temp tables are empty between batches, writers are recycled, and
the firehose echo of a proxied write is a duplicate."""

from __future__ import annotations

import pytest

from appview.proxy import fold as proxy_fold
from appview.proxy.fold import ProxyFold, commit_event
from bench.synth import BASE_US, commit, like_record, make_cid, make_did, make_tid, track_record, uri
from indexer.atproto.lexicon import Validator
from indexer.events import Event
from indexer.fold import sql
from indexer.metrics import Metrics
from tests.helpers import LIKE, TRACK, ingest, rows, rows_exec, state


def history() -> list[Event]:
    alice, bob = make_did(1), make_did(2)
    t1, t2, l1, l2 = (make_tid(BASE_US + i) for i in (0, 1, 2, 5))
    first, second = track_record("One"), track_record("Two")
    like = like_record(uri(alice, TRACK, t1), make_cid(first))
    events = [
        commit(alice, TRACK, t1, t1, first),
        commit(alice, TRACK, t2, t2, second),
        commit(bob, LIKE, l1, l1, like),
        commit(alice, TRACK, t1, make_tid(BASE_US + 3), track_record("One, again"), operation="update"),
        commit(alice, TRACK, t2, make_tid(BASE_US + 4), None),
        commit(bob, LIKE, l2, l2, like),
    ]
    return [
        commit_event(e.did, e.collection or "", e.rkey or "", e.rev or "", e.operation or "create", e.cid, e.record)
        for e in events
    ]


async def test_same_index_as_the_batch_writer(
    db_factory: object, validator: Validator, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert callable(db_factory)
    proxied, indexed = db_factory(), db_factory()
    monkeypatch.setattr(proxy_fold, "RECYCLE_AFTER", 2)
    folds = ProxyFold(proxied, validator=validator, metrics=Metrics(), writers=1)
    try:
        for event in history():
            await folds.apply([event])
            await folds.settled()
            # The one writer's temp tables are empty again, ready for the next batch.
            for writer in folds._idle:
                assert writer.conn is not None
                for name in sql.TEMP_TABLE_NAMES:
                    cur = await writer.conn.execute(f"SELECT count(*) FROM {name}")  # type: ignore[arg-type]
                    assert await cur.fetchone() == (0,), name
        assert await folds.live(make_did(1), TRACK, make_tid(BASE_US)) is True
        assert await folds.live(make_did(1), TRACK, make_tid(BASE_US + 1)) is False
        assert await folds.live(make_did(1), TRACK, make_tid(BASE_US + 9)) is None
    finally:
        await folds.aclose()
    await ingest(indexed, validator, history())
    mine, theirs = await state(proxied), await state(indexed)
    assert mine["state_hash"] == theirs["state_hash"]
    assert mine["counts"] == theirs["counts"] and mine["counts"]["tracks"] == 1 and mine["counts"]["likes"] == 2
    assert await rows(proxied, "SELECT like_count FROM tracks") == [(2,)]

    # The echo: the same events from another source are duplicates.
    before = await rows(proxied, "SELECT count(*) FROM events")
    echo = [
        commit(e.did, e.collection or "", e.rkey or "", e.rev or "", e.record, operation=e.operation, source="fh")
        for e in history()
    ]
    await ingest(proxied, validator, echo)
    assert await rows(proxied, "SELECT count(*) FROM events") == before
    assert (await state(proxied))["state_hash"] == mine["state_hash"]


async def test_a_connection_lost_while_idle_is_replaced(
    db_url: str, validator: Validator, caplog: pytest.LogCaptureFixture
) -> None:
    """The database restarted, or dropped the idle connection: the next write is folded on a new one."""
    first, second = history()[:2]
    folds = ProxyFold(db_url, validator=validator, metrics=Metrics(), writers=1)
    try:
        await folds.apply([first])
        await folds.settled()
        await rows_exec(
            db_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()",
        )
        await folds.apply([second])
    finally:
        await folds.aclose()
    assert await rows(db_url, "SELECT count(*) FROM tracks") == [(2,)]
    assert any("retrying proxied write" in r.getMessage() for r in caplog.records)
