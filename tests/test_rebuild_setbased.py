"""The set-based `rebuild` derives, row for row, the index the live fold built incrementally, and so does the live
fold run over the log batch by batch: over varied generated logs (likes, lists, comments, deletes, handle
changes, account flips and deletions, invalid records, operator takedowns applied and undone, events arriving
before what they name), in both lock modes. And the live fold carries on from a rebuilt index exactly as from the
incremental one."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import msgspec
import psycopg
import pytest

from bench.synth import BASE_US, account, identity, workload
from indexer.atproto.lexicon import Validator
from indexer.db.schema import FOLD_STATE, PROJECTIONS
from indexer.events import Item
from indexer.fold.collections import COLLECTIONS
from indexer.fold.rebuild import rebuild, rebuild_batched
from indexer.jetstream.parse import parse_v1
from indexer.moderation import takedowns
from indexer.moderation.takedowns import Subject
from indexer.status import state_hash
from tests.helpers import ingest

Rows = dict[str, list[str]]


async def snapshot(db_url: str) -> tuple[str, Rows]:
    """The state hash and every row of the fold state and the projections, as text, sorted."""
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        tables: Rows = {}
        for table in FOLD_STATE + PROJECTIONS:
            cur = await conn.execute(f"SELECT t::text FROM {table} t ORDER BY 1")  # type: ignore[arg-type]
            tables[table] = [str(r[0]) for r in await cur.fetchall()]
        return await state_hash(conn), tables


def events(n: int, seed: int) -> list[Item]:
    parsed = [parse_v1(msgspec.json.encode(obj), "test") for obj in workload(n, seed=seed, invalid_share=0.03)]
    return [ev for ev in parsed if ev is not None]


def batches(items: Sequence[Item], rng: random.Random) -> list[list[Item]]:
    out: list[list[Item]] = []
    i = 0
    while i < len(items):
        size = rng.choice((1, 7, 50, 400))
        out.append(list(items[i : i + size]))
        i += size
    return out


async def take_down(db_url: str, rng: random.Random, count: int) -> None:
    """Takedowns of accounts and records (indexed or not yet), and of an audio object; some undone."""
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        cur = await conn.execute("SELECT did, collection, rkey FROM records ORDER BY 1, 2, 3")
        keys = [(str(d), str(c), str(k)) for d, c, k in await cur.fetchall()]
        subjects = [Subject("audio", "", "blob", f"{rng.getrandbits(256):064x}")]
        for did, collection, rkey in rng.sample(keys, min(count, len(keys))):
            subjects.append(Subject("account", did) if rng.random() < 0.3 else Subject("record", did, collection, rkey))
        for subject in subjects:
            await takedowns.change(conn, subject, applied=True, reason=f"r{rng.randrange(3)}", by="test")
        for subject in rng.sample(subjects, len(subjects) // 3):
            await takedowns.change(conn, subject, applied=False, reason=None, by="test")


def status_events(items: Sequence[Item], rng: random.Random) -> list[Item]:
    """Account deletions and returns, handles removed, and events of one DID sharing a time (the seq decides)."""
    dids = sorted({str(getattr(ev, "did", "")) for ev in items} - {""})
    out: list[Item] = []
    seq = 1_000_000
    for did in rng.sample(dids, min(6, len(dids))):
        micros = BASE_US + rng.randrange(10**9)
        seq += 1
        out.append(account(did, False, "deleted", seq=seq, micros=micros))
        if rng.random() < 0.5:
            seq += 1
            out.append(account(did, True, None, seq=seq, micros=micros))  # same time, later seq: wins
        seq += 1
        out.append(identity(did, None, seq=seq, micros=micros))
    return out


def stale_events(items: Sequence[Item]) -> list[Item]:
    """Account and identity events older than any the log has for their DID: they must change nothing."""
    dids = sorted({str(getattr(ev, "did", "")) for ev in items if getattr(ev, "kind", "") in ("account", "identity")})
    out: list[Item] = []
    for did in dids[:20]:
        out.append(account(did, False, "suspended", seq=0, micros=BASE_US - 10))
        out.append(identity(did, "stale.test", seq=0, micros=BASE_US - 10))
    return out


@pytest.mark.parametrize("seed", [3, 17])
async def test_rebuild_equals_the_incremental_fold(db_url: str, validator: Validator, seed: int) -> None:
    rng = random.Random(seed)
    items = events(1500, seed)
    half = len(items) // 2
    await ingest(db_url, validator, *batches(items[:half], rng))
    await take_down(db_url, rng, 25)
    # After the takedowns: records they name may arrive only now, and accounts come and go.
    await ingest(db_url, validator, *batches(items[half:] + status_events(items, rng), rng))
    await take_down(db_url, rng, 10)
    live_hash, live_rows = await snapshot(db_url)
    assert sum(len(rows) for rows in live_rows.values()) > 1000
    assert any("t" in row.split(",")[-1] for row in live_rows["actors"])  # an account is taken down
    assert any(",deleted," in row for row in live_rows["actors"])

    assert await rebuild(db_url) > len(items)
    assert await snapshot(db_url) == (live_hash, live_rows)
    await rebuild(db_url, online=False)
    assert await snapshot(db_url) == (live_hash, live_rows)
    await rebuild_batched(db_url, batch_size=97)
    assert await snapshot(db_url) == (live_hash, live_rows)


async def test_the_live_fold_carries_on_from_a_rebuilt_index(db_factory: Any, validator: Validator) -> None:
    """The fold state a rebuild leaves (winning event ids, handle and status times and seqs, takedowns) is what
    the live fold compares the next events with: continuing from it gives the incremental result."""
    rng = random.Random(5)
    items = events(1200, 5)
    first, rest = items[:800], items[800:]
    incremental, rebuilt = db_factory(), db_factory()
    for db in (incremental, rebuilt):
        await ingest(db, validator, *batches(first, random.Random(1)))
        await take_down(db, random.Random(2), 15)
    await rebuild(rebuilt, online=False)
    later = stale_events(first) + rest + status_events(items, rng)
    assert len(later) > len(rest) + 20
    for db in (incremental, rebuilt):
        await ingest(db, validator, *batches(later, random.Random(3)))
    # Takedown events carry their own time and a random dedup key: compare what the index shows.
    assert (await snapshot(rebuilt))[0] == (await snapshot(incremental))[0]


async def test_progress_names_every_step_and_ends_complete(db_url: str, validator: Validator) -> None:
    await ingest(db_url, validator, events(200, 9))
    seen: list[tuple[str, int, int]] = []
    total = await rebuild(db_url, online=False, progress=lambda step, done, of: seen.append((step, done, of)))
    assert total > 150
    assert [s for s, _, _ in seen[:2]] == ["clear", "records"]
    assert "projections" in [s for s, _, _ in seen] and "indexes" in [s for s, _, _ in seen]
    assert [d for _, d, _ in seen] == sorted(d for _, d, _ in seen)
    assert seen[-1] == ("done", seen[-1][2], seen[-1][2])


async def test_offline_rebuild_restores_every_index(db_url: str, validator: Validator) -> None:
    query = (
        "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index"
        " WHERE indrelid::regclass::text = ANY(%s) ORDER BY 1"
    )
    tables = list(FOLD_STATE + PROJECTIONS)
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        before = await (await conn.execute(query, (tables,))).fetchall()
    await ingest(db_url, validator, events(100, 4))
    await rebuild(db_url, online=False)
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        after = await (await conn.execute(query, (tables,))).fetchall()
    assert len(before) > 10
    assert after == before


async def test_an_empty_log_rebuilds_to_an_empty_index(db_url: str) -> None:
    assert await rebuild(db_url) == 0
    _, rows = await snapshot(db_url)
    assert all(not r for r in rows.values())


def test_a_rebuild_projects_every_record_from_the_log_by_the_live_statements() -> None:
    """Each collection's rebuild statements are its live ones with the rows read from the log: none still reads
    the batch's changed records (a rebuild fills no `fold_changed`), except the deletes, which find nothing in the
    empty tables a rebuild loads."""
    for collection in COLLECTIONS:
        assert len(collection.rebuild) == len(collection.project)
        for live, whole in zip(collection.project, collection.rebuild, strict=True):
            if live.lstrip().startswith(("DELETE", "WITH changed AS (DELETE")):
                assert whole == live
            else:
                assert "fold_changed" in live
                assert "fold_changed" not in whole, (collection.nsid, whole)
