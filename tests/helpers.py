"""Shared test helpers: feed events through the real writer and read the projections back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from indexer.atproto.lexicon import Validator
from indexer.events import Item
from indexer.fold.writer import BatchWriter, WriteStats
from indexer.status import status

TRACK = "fm.plyr.track"
LIKE = "fm.plyr.like"
LIST = "fm.plyr.list"
COMMENT = "fm.plyr.comment"
PROFILE = "fm.plyr.actor.profile"


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
