"""`plyr-appview index`: follow Jetstream into the batch writer."""

from __future__ import annotations

import logging

import psycopg

from indexer.config import Settings
from indexer.fold.writer import BatchWriter
from indexer.jetstream.source import JetstreamSource
from indexer.metrics import Metrics

log = logging.getLogger(__name__)

V1_SOURCE = "jetstream"


async def committed_cursor(conninfo: str, source: str) -> int | None:
    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        cur = await conn.execute("SELECT cursor FROM cursors WHERE source = %s", (source,))
        row = await cur.fetchone()
    return None if row is None else int(row[0])


async def follow_jetstream(
    settings: Settings, conninfo: str, writer: BatchWriter, metrics: Metrics, urls: list[str]
) -> None:
    rewind_us = int(settings.failover_rewind_seconds * 1_000_000)
    stored = await committed_cursor(conninfo, V1_SOURCE)
    # We cannot know that the host we reach now is the one that produced the stored cursor, so a restart is
    # treated like a host switch: rewind, and let the log's idempotency absorb the overlap.
    start = None if stored is None else max(0, stored - rewind_us)
    log.info("following jetstream", extra={"urls": urls, "stored_cursor": stored, "start_cursor": start})
    source = JetstreamSource(urls, start_cursor=start, metrics=metrics, rewind_on_switch_us=rewind_us)
    await writer.run(source.events())
