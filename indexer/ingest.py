"""`plyr-appview index`: follow Jetstream, or a raw firehose (`firehose:` URLs), into the batch writer.

Each follower records the live connection state of its hosts in `source_status` (indexer/source_status.py)
through a `SourceStatusRecorder` of its own, which writes on its own connection and never holds up the stream."""

from __future__ import annotations

import logging

import psycopg

from indexer.atproto.identity.did_docs import DidDocuments
from indexer.firehose.source import FirehoseSource
from indexer.firehose.source import source_name as firehose_source_name
from indexer.fold.writer import BatchWriter
from indexer.jetstream.source import JetstreamSource, parse_endpoint
from indexer.metrics import Metrics
from indexer.settings import Settings
from indexer.source_status import SourceStatusRecorder
from indexer.sync.known import KnownActors
from indexer.sync.marks import RepoMarker

log = logging.getLogger(__name__)


async def committed_cursors(conninfo: str, prefix: str) -> dict[str, tuple[int, int | None]]:
    """source -> (cursor, event time in unix microseconds) for the sources starting with `prefix`."""
    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        cur = await conn.execute(
            "SELECT source, cursor, (extract(epoch FROM event_time) * 1000000)::bigint FROM cursors"
            " WHERE source LIKE %s ORDER BY event_time DESC NULLS LAST",
            (prefix + "%",),
        )
        found = await cur.fetchall()
    return {str(s): (int(c), None if t is None else int(t)) for s, c, t in found}


async def start_position(conninfo: str, urls: list[str]) -> tuple[int | None, int | None]:
    """(start_cursor, start_time_us) for a JetstreamSource over `urls`.

    v1 time_us cursors are comparable across hosts: one cursor, rewound by the source on start (we cannot know
    the host we reach now produced it). v2 seqs belong to one host: the first URL's seq if we have one, else a
    timestamp cursor from the most recent v2 position of any host."""
    first = parse_endpoint(urls[0])
    if first.version == 1:
        found = await committed_cursors(conninfo, first.source)
        return (found[first.source][0], None) if first.source in found else (None, None)
    found = await committed_cursors(conninfo, "jetstream-v2:")
    if first.source in found:
        return found[first.source]
    for _source, (_seq, time_us) in found.items():
        if time_us is not None:
            return time_us, None
    return None, None


async def follow_jetstream(
    settings: Settings, conninfo: str, writer: BatchWriter, metrics: Metrics, urls: list[str]
) -> None:
    start_cursor, start_time_us = await start_position(conninfo, urls)
    log.info("following jetstream", extra={"urls": urls, "start_cursor": start_cursor})
    async with SourceStatusRecorder(conninfo) as recorder:
        source = JetstreamSource(
            urls,
            start_cursor=start_cursor,
            start_time_us=start_time_us,
            metrics=metrics,
            rewind_on_switch_us=int(settings.failover_rewind_seconds * 1_000_000),
            status=recorder,
        )
        recorder.track(source.states)
        await writer.run(source.events())


async def follow_firehose(
    settings: Settings,
    conninfo: str,
    writer: BatchWriter,
    metrics: Metrics,
    url: str,
    docs: DidDocuments | None,
) -> None:
    """Follow one relay or PDS firehose from the committed seq; `docs` None turns signature checks off."""
    name = firehose_source_name(url)
    found = await committed_cursors(conninfo, name)
    start = found[name][0] if name in found else None
    log.info("following firehose", extra={"url": url, "start_cursor": start, "verify": docs is not None})
    # Bluesky profiles are ours only for the actors the index knows: the set keeps strangers' commits foreign.
    known = KnownActors(conninfo)
    await known.load()
    log.info("known actors loaded", extra={"known": len(known)})
    marker = RepoMarker(conninfo)
    try:
        async with SourceStatusRecorder(conninfo) as recorder:
            source = FirehoseSource(
                url, start_cursor=start, docs=docs, marker=marker, metrics=metrics, status=recorder, known=known
            )
            recorder.track(source.connection_states.states)
            await writer.run(source.events())
    finally:
        await marker.aclose()
