"""`plyr-appview replay FILE`: ingest a capture through the same writer as live events.

The cursor of a replay is the item's position in the file, stored under a source name derived from the file's
content, so a killed replay resumes where its last committed batch ended and a finished one is a no-op.

What is ours is the parsers' decision (`indexer.jetstream.parse`, `indexer.firehose.frames`); a line or frame
that holds nothing of ours never reaches the writer and is counted here (`ReadCounts.ignored`). `summary` joins
that count with the writer's (`WriteStats`) into the command's report, whose fields add up:
`items == appended + duplicates + rejected + ignored`.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from indexer.capture.files import capture_kind, iter_capture
from indexer.events import Checkpoint, Event, Item, Malformed
from indexer.fold.writer import WriteStats
from indexer.jetstream.parse import parse_v1

# A run of ignored items (other collections) still moves the cursor this often.
CHECKPOINT_EVERY = 1000


@dataclass
class ReadCounts:
    """What the reading of a capture kept from the writer: lines (or frames) that hold nothing of ours."""

    ignored: int = 0


def summary(source: str, start: int, stats: WriteStats, read: ReadCounts) -> dict[str, Any]:
    """The report of one replay. `items` are what was read from position `start` on: each non-blank line of a
    Jetstream capture; for a frame capture, each event a frame holds for us (one per record operation of a
    commit), or the frame itself when it holds none. Every item is counted in exactly one of `appended`,
    `duplicates`, `rejected` and `ignored` (see `WriteStats`); the writer's checkpoints only restate positions of
    ignored items, so they are not items here."""
    ignored = read.ignored + stats.ignored
    return {
        "source": source,
        "start": start,
        "items": stats.items - stats.checkpoints + read.ignored,
        "appended": stats.appended,
        "duplicates": stats.duplicates,
        "rejected": stats.rejected,
        "ignored": ignored,
        "rejections": dict(sorted(stats.by_reason.items())),
    }


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
    path: Path,
    source: str,
    start: int = 0,
    *,
    on_position: Callable[[int], None] | None = None,
    counts: ReadCounts | None = None,
) -> AsyncIterator[Item]:
    """Items of the capture from position `start`; `on_position(n)` reports n more positions read; `counts`, if
    given, counts the lines or frames that hold nothing of ours."""
    async for item in _items(path, source, start, on_position or (lambda n: None), counts or ReadCounts()):
        yield item


async def _items(
    path: Path, source: str, start: int, report: Callable[[int], None], counts: ReadCounts
) -> AsyncIterator[Item]:
    kind = capture_kind(path)
    last_yield = position = start - 1
    if kind == "frames":
        from indexer.firehose.frames import decode_frame  # the raw firehose decoder

        for position, data in iter_capture(path, start=start, kind=kind):
            if (position + 1) % PROGRESS_EVERY == 0:
                report(PROGRESS_EVERY)
            for item in decode_frame(data, source=source):
                # #sync / #info control frames matter to a live firehose consumer, not to a replay.
                if isinstance(item, (Event, Malformed)):
                    item.source = source
                    item.cursor = position
                    last_yield = position
                    yield item
            if last_yield != position:
                counts.ignored += 1
            if position - last_yield >= CHECKPOINT_EVERY:
                last_yield = position
                yield Checkpoint(source=source, cursor=position)
    else:
        for position, data in iter_capture(path, start=start, kind=kind):
            if (position + 1) % PROGRESS_EVERY == 0:
                report(PROGRESS_EVERY)
            parsed = parse_v1(data, source)
            if parsed is None:
                counts.ignored += 1
                if position - last_yield >= CHECKPOINT_EVERY:
                    last_yield = position
                    yield Checkpoint(source=source, cursor=position)
                continue
            parsed.source = source
            parsed.cursor = position
            last_yield = position
            yield parsed
    if position != last_yield:
        # A capture that ends with lines of other collections: move past them too, so a finished replay
        # resumes at the end and reads nothing again.
        yield Checkpoint(source=source, cursor=position)
