"""`plyr-appview replay FILE`: ingest a capture through the same writer as live events.

The cursor of a replay is the item's position in the file, stored under a source name derived from the file's
content, so a killed replay resumes where its last committed batch ended and a finished one is a no-op.

What is ours is the parsers' decision (`indexer.jetstream.parse`, `indexer.firehose.frames`); a line or frame
that holds nothing of ours never reaches the writer and is counted here (`ReadCounts.ignored`). `summary` joins
that count with the writer's (`WriteStats`) into the command's report, whose fields add up:
`items == appended + duplicates + rejected + ignored`.
"""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from indexer import logs
from indexer.audio.refs import OwnAudio
from indexer.capture.bulk import Share
from indexer.capture.files import capture_kind, iter_capture
from indexer.events import Checkpoint, Event, Item, Malformed
from indexer.fold.writer import BatchWriter, WriteStats
from indexer.jetstream.parse import parse_v1
from indexer.settings import Settings

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
    share: Share | None = None,
) -> AsyncIterator[Item]:
    """Items of the capture from position `start`; `on_position(n)` reports n more positions read; `counts`, if
    given, counts the lines or frames that hold nothing of ours; `share`, of a Jetstream capture, keeps only its
    lines (the others are neither items nor counted, but move the position like ignored ones)."""
    report = on_position or (lambda n: None)
    async for item in _items(path, source, start, report, counts or ReadCounts(), share or Share()):
        yield item


async def _items(
    path: Path, source: str, start: int, report: Callable[[int], None], counts: ReadCounts, share: Share
) -> AsyncIterator[Item]:
    kind = capture_kind(path)
    last_yield = position = start - 1
    if kind == "frames":
        assert share.of == 1, "a frame capture is read by one share"
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
            if not share.holds(data):
                parsed = None
            elif (parsed := parse_v1(data, source)) is None:
                counts.ignored += 1
            if parsed is None:
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


# -- bulk: the append in shares (indexer/capture/bulk.py) ---------------------------------------------------------


@dataclass
class Appended:
    """What one share of a bulk replay appended: its position's name, where it began, what became of its items,
    and its tracks naming audio stored here, left for the check after the rebuild."""

    source: str
    start: int
    stats: WriteStats
    read: ReadCounts
    unchecked_audio: set[OwnAudio]


def shares_of(path: Path, wanted: int) -> list[Share]:
    """The shares a bulk replay of `path` runs in: `wanted` for a Jetstream capture, one for frames."""
    n = 1 if capture_kind(path) == "frames" else wanted
    return [Share(i, n) for i in range(n)]


async def append_in_shares(
    settings: Settings,
    conninfo: str,
    path: Path,
    shares: list[Share],
    *,
    batch_size: int | None = None,
    from_start: bool = False,
    on_position: Callable[[int], None] | None = None,
) -> list[Appended]:
    """Append the capture to the log without folding, each share in its own process (one share: in this one);
    `on_position(n)` is given the positions every share has passed, now and then."""
    job = _Job(settings, conninfo, path, replay_source(path), batch_size, from_start)
    if len(shares) == 1:
        return [await job.append(shares[0])]
    names = [share.source(job.source) for share in shares]
    # A pool that can be terminated: when this command is stopped (or one share fails), the other shares stop
    # too, their open transactions rolled back, rather than this process waiting for them to finish.
    pool = multiprocessing.get_context("spawn").Pool(len(shares))
    try:
        running = [pool.apply_async(job.append_in_process, (share,)) for share in shares]
        while not all(result.ready() for result in running):
            if any(result.ready() and not result.successful() for result in running):
                break
            await asyncio.sleep(0.5)
            if on_position is not None:
                on_position(await _passed(conninfo, names))
        return [result.get() for result in running]  # raises the first failure
    finally:
        pool.terminate()
        pool.join()


@dataclass(frozen=True)
class _Job:
    """One bulk replay's append, as each of its shares runs it (pickled into a share's process)."""

    settings: Settings
    conninfo: str
    path: Path
    source: str
    batch_size: int | None
    from_start: bool

    def append_in_process(self, share: Share) -> Appended:
        logs.configure(self.settings.log_level, self.settings.log_format)
        return asyncio.run(self.append(share))

    async def append(self, share: Share) -> Appended:
        name = share.source(self.source)
        start = 0 if self.from_start else await share_position(self.conninfo, self.source, share)
        read = ReadCounts()
        async with BatchWriter.configured(
            self.settings, self.conninfo, batch_size=self.batch_size, fold=False
        ) as writer:
            stats = await writer.run(replay_items(self.path, name, start, counts=read, share=share))
        return Appended(name, start, stats, read, writer.unchecked_audio)


async def share_position(conninfo: str, source: str, share: Share) -> int:
    """Where `share` of a bulk replay of the file `source` names resumes: one past its own last committed position,
    or, if further, one past the least position of a complete earlier run of the file with any number of shares
    (a plain replay is one share), every line before which that run appended. So another --workers count does
    not read again what is in the log already; 0 when nothing was committed."""
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        cur = await conn.execute("SELECT source, cursor FROM cursors WHERE starts_with(source, %s)", (source,))
        positions = {str(name): int(str(cursor)) for name, cursor in await cur.fetchall()}
    runs: dict[int, list[int]] = {}
    for name, cursor in positions.items():
        if (named := Share.named(name, source)) is not None:
            runs.setdefault(named.of, []).append(cursor)
    passed = [min(cursors) + 1 for count, cursors in runs.items() if len(cursors) == count]
    own = positions.get(share.source(source))
    return max([*passed, 0 if own is None else own + 1])


async def _passed(conninfo: str, names: list[str]) -> int:
    """The positions every share has passed: one past the least committed position, 0 before all have one."""
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        cur = await conn.execute("SELECT count(*), min(cursor) FROM cursors WHERE source = ANY(%s)", (names,))
        row = await cur.fetchone()
    return 0 if row is None or row[0] < len(names) else int(row[1]) + 1
