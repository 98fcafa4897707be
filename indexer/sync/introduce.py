"""Handles for actors the stream never introduced.

Jetstream and the firehose announce a handle only when it changes, so an artist whose identity event predates
our cursor would show `handle.invalid` forever. While identities are resolved, a background task looks up
actors that have records but no identity event yet, verifies their handle like any identity event, and feeds
the result through the normal writer as an identity event (source "resolver"), so it lands in the log and a
rebuild reproduces it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

import psycopg

from indexer.atproto.identity.handles import ResolvingVerifier
from indexer.events import Event
from indexer.fold.writer import BatchWriter

log = logging.getLogger(__name__)

SOURCE = "resolver"

_UNINTRODUCED = """
SELECT did FROM actors
WHERE handle_event_id IS NULL AND status <> 'deleted' AND did > %(after)s
ORDER BY did LIMIT %(limit)s
"""


RETRY_AFTER = 3600.0


async def introduce_round(
    conninfo: str,
    writer: BatchWriter,
    verifier: ResolvingVerifier,
    *,
    limit: int = 500,
    tried: dict[str, float] | None = None,
) -> int:
    """One pass over actors without an identity event; returns how many got a verified handle. DIDs in `tried`
    (did -> monotonic time of the last failed attempt) are skipped for RETRY_AFTER seconds."""
    tried = {} if tried is None else tried
    found = 0
    after = ""
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        while True:
            cur = await conn.execute(_UNINTRODUCED, {"after": after, "limit": limit})
            dids = [str(d) for (d,) in await cur.fetchall()]
            if not dids:
                break
            after = dids[-1]
            now_mono = asyncio.get_running_loop().time()
            dids = [d for d in dids if now_mono - tried.get(d, -RETRY_AFTER) >= RETRY_AFTER]
            claimed = await asyncio.gather(*(verifier.document_handle(did) for did in dids))
            verified = await asyncio.gather(*(verifier.verify(did, h) for did, h in zip(dids, claimed, strict=True)))
            now = dt.datetime.now(dt.UTC).isoformat()
            events = [
                Event(kind="identity", did=did, source=SOURCE, handle=handle, time=now)
                for did, handle in zip(dids, verified, strict=True)
                if handle is not None
            ]
            for did, handle in zip(dids, verified, strict=True):
                if handle is None:
                    tried[did] = now_mono
            if events:
                await writer.write(events)
                found += len(events)
    if found:
        log.info("introduced actors", extra={"handles": found})
    return found


async def introduce_forever(
    conninfo: str, writer: BatchWriter, verifier: ResolvingVerifier, *, every: float = 60.0
) -> None:
    tried: dict[str, float] = {}
    while True:
        try:
            await introduce_round(conninfo, writer, verifier, tried=tried)
        except (psycopg.Error, OSError) as exc:
            log.warning("handle lookup round failed", extra={"error": str(exc)[:300]})
        await asyncio.sleep(every)
