"""Shared test helpers: feed events through the real writer and read the projections back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from bench.synth import BASE_US, commit, like_record, make_cid, make_tid, track_record, uri
from indexer.atproto.lexicon import Validator
from indexer.events import Event, Item
from indexer.fold.writer import BatchWriter, WriteStats
from indexer.status import status

TRACK = "fm.plyr.track"
LIKE = "fm.plyr.like"
LIST = "fm.plyr.list"
COMMENT = "fm.plyr.comment"
PROFILE = "fm.plyr.actor.profile"


def tid(n: int) -> str:
    """The n-th record key (and rev) of a test: a TID n milliseconds after `BASE_US`."""
    return make_tid(BASE_US + n * 1000)


def track_rec(n: int) -> dict[str, Any]:
    """Track n's record: "Track n", created at `tid(n)`'s time."""
    return track_record(f"Track {n}", micros=BASE_US + n * 1000)


def track_event(did: str, n: int) -> Event:
    return commit(did, TRACK, tid(n), tid(n), track_rec(n))


def track_uri(did: str, n: int) -> str:
    return uri(did, TRACK, tid(n))


def like_event(liker: str, n: int, author: str, track_n: int) -> Event:
    """Like n, by `liker`, of `author`'s track `track_n`."""
    subject = like_record(track_uri(author, track_n), make_cid(track_rec(track_n)), micros=BASE_US + n * 1000)
    return commit(liker, LIKE, tid(n), tid(n), subject)


async def ingest(db_url: str, validator: Validator, *batches: Sequence[Item]) -> WriteStats:
    """Write each sequence as its own batch (its own transaction), in order."""
    total = WriteStats()
    async with BatchWriter(db_url, validator=validator) as writer:
        for batch in batches:
            total.add(await writer.write(list(batch)))
    return total


async def rows(db_url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        cur = await conn.execute(query, params or None)
        return list(await cur.fetchall())


async def one(db_url: str, query: str, *params: Any) -> Any:
    result = await rows(db_url, query, *params)
    assert len(result) == 1, result
    return result[0][0] if len(result[0]) == 1 else result[0]


async def state(db_url: str) -> dict[str, Any]:
    return await status(db_url)


async def rows_exec(db_url: str, statement: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute(statement)  # type: ignore[arg-type]
