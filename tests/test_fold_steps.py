"""The fold's public steps (indexer/fold/prepare.py, apply.py) and its registry of collections
(indexer/fold/collections/): what the batch writer and the write proxy compose."""

from __future__ import annotations

import psycopg
import pytest

from bench.synth import BASE_US, commit, like_record, make_cid, make_did, make_tid, track_record, uri
from indexer.atproto.lexicon import Validator
from indexer.events import OWN_NAMESPACE, Item, Malformed
from indexer.fold import sql
from indexer.fold.apply import apply, create_temp_tables, empty_temp_tables
from indexer.fold.collections import BY_NSID, COLLECTIONS, NSIDS, WANTED
from indexer.fold.prepare import Preparer
from tests.helpers import LIKE, TRACK, rows


def test_registry_is_the_lexicons_records(validator: Validator) -> None:
    assert set(NSIDS) == set(validator.collections)
    # Every projected collection is wanted; from other namespaces exactly those, from ours the whole namespace.
    assert all(WANTED(nsid) for nsid in NSIDS)
    assert WANTED.namespaces == (OWN_NAMESPACE,)
    assert WANTED.nsids == {nsid for nsid in NSIDS if not nsid.startswith(OWN_NAMESPACE)}
    assert WANTED("fm.plyr.unknownThing") and not WANTED("fm.teal.alpha.actor.profile")
    assert list(BY_NSID) == list(NSIDS) == [c.nsid for c in COLLECTIONS]


def test_each_collection_projects_only_itself() -> None:
    for collection in COLLECTIONS:
        others = [nsid for nsid in NSIDS if nsid != collection.nsid]
        for stmt in (*collection.project, collection.flip):
            assert not any(f"'{nsid}'" in stmt or f"/{nsid}/" in stmt for nsid in others), (collection.nsid, stmt)
        assert all(f"'{collection.nsid}'" in stmt for stmt in collection.project), collection.nsid


def _batch() -> list[Item]:
    alice, bob = make_did(1), make_did(2)
    t1, l1 = make_tid(BASE_US), make_tid(BASE_US + 1)
    track = track_record("One")
    return [
        commit(alice, TRACK, t1, t1, track, cursor=1),
        commit(bob, LIKE, l1, l1, like_record(uri(alice, TRACK, t1), make_cid(track)), cursor=2),
        Malformed(source="test", cursor=3, reason="invalid_json", detail="bad", raw="{"),
    ]


@pytest.mark.parametrize("on_commit", ["DELETE ROWS", "PRESERVE ROWS"])
async def test_apply_commits_nothing_itself(db_url: str, validator: Validator, on_commit: sql.OnCommit) -> None:
    """`apply` is a step of the caller's transaction: rolled back, it leaves no trace; committed, it is whole."""
    prepared = await Preparer(validator).prepare(_batch())
    assert len(prepared.events) == 2 and len(prepared.rejections) == 1
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await create_temp_tables(conn, on_commit)
        with pytest.raises(ZeroDivisionError):
            async with conn.transaction():
                await apply(conn, prepared)
                raise ZeroDivisionError
        assert await rows(db_url, "SELECT count(*) FROM events") == [(0,)]
        async with conn.transaction():
            applied = await apply(conn, prepared)
        assert applied.appended == {"commit": 2}
        kept = await conn.execute("SELECT count(*) FROM fold_batch")
        # Rows kept across the commit are the owner's to empty before the next batch.
        assert await kept.fetchone() == ((2,) if on_commit == "PRESERVE ROWS" else (0,))
        await empty_temp_tables(conn)
        for name in sql.TEMP_TABLE_NAMES:
            cur = await conn.execute(f"SELECT count(*) FROM {name}")  # type: ignore[arg-type]
            assert await cur.fetchone() == (0,), name
    assert await rows(db_url, "SELECT count(*) FROM events") == [(2,)]
    assert await rows(db_url, "SELECT count(*) FROM rejections") == [(1,)]
    assert await rows(db_url, "SELECT like_count FROM tracks") == [(1,)]
    assert await rows(db_url, "SELECT source, cursor FROM cursors ORDER BY source") == [("test", 3)]
