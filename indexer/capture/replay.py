"""`plyr-appview replay FILE`: ingest a capture through the same writer as live events.

The cursor of a replay is the item's position in the file, stored under a source name derived from the file's
content, so a killed replay resumes where its last committed batch ended and a finished one is a no-op.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import psycopg

from indexer.capture.files import capture_kind, iter_capture
from indexer.events import Checkpoint, Event, Item, Malformed
from indexer.jetstream.parse import parse_v1

# A run of skipped items (other collections) still moves the cursor this often.
CHECKPOINT_EVERY = 1000


def replay_source(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        h.update(f.read(1 << 20))
    h.update(str(path.stat().st_size).encode())
    return f"replay:{path.name}:{h.hexdigest()[:16]}"


def count_items(path: Path) -> int:
    return sum(1 for _ in iter_capture(path))


async def saved_position(conninfo: str, source: str) -> int:
    """Where a replay of this file resumes: one past the last committed position, or 0."""
    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        cur = await conn.execute("SELECT cursor FROM cursors WHERE source = %s", (source,))
        row = await cur.fetchone()
    return 0 if row is None else int(row[0]) + 1


PROGRESS_EVERY = 2048


async def replay_items(
    path: Path, source: str, start: int = 0, *, on_position: Callable[[int], None] | None = None
) -> AsyncIterator[Item]:
    """Items of the capture from position `start`; `on_position(n)` reports n more positions read."""
    async for item in _items(path, source, start, on_position or (lambda n: None)):
        yield item


async def _items(path: Path, source: str, start: int, report: Callable[[int], None]) -> AsyncIterator[Item]:
    kind = capture_kind(path)
    if kind == "frames":
        from indexer.firehose.frames import decode_frame  # the raw firehose decoder

        last_yield = start - 1
        for position, data in iter_capture(path, start=start):
            if (position + 1) % PROGRESS_EVERY == 0:
                report(PROGRESS_EVERY)
            for item in decode_frame(data, source=source):
                # #sync / #info control frames matter to a live firehose consumer, not to a replay.
                if isinstance(item, (Event, Malformed)):
                    item.source = source
                    item.cursor = position
                    last_yield = position
                    yield item
            if position - last_yield >= CHECKPOINT_EVERY:
                last_yield = position
                yield Checkpoint(source=source, cursor=position)
        return
    last_yield = start - 1
    for position, data in iter_capture(path, start=start):
        if (position + 1) % PROGRESS_EVERY == 0:
            report(PROGRESS_EVERY)
        parsed = parse_v1(data, source)
        if parsed is None:
            if position - last_yield >= CHECKPOINT_EVERY:
                last_yield = position
                yield Checkpoint(source=source, cursor=position)
            continue
        parsed.source = source
        parsed.cursor = position
        last_yield = position
        yield parsed
