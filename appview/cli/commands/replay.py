"""`plyr-appview replay FILE`: ingest a capture through the live path, resuming where a killed replay stopped;
with `--bulk`, append it to the log and fold it by one rebuild (indexer/capture/bulk.py)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from appview.cli.command import EXIT_OK, EXIT_USAGE, Command, CommandError, positive_int
from appview.cli.commands.rebuild import explained, step_bar
from appview.cli.runtime import database, print_json, progress_bar, run
from appview.cli.stack import batch_writer
from indexer.capture.bulk import check_audio, unfolded
from indexer.capture.files import NotACapture, sniff
from indexer.capture.replay import (
    ReadCounts,
    append_in_shares,
    count_items,
    replay_items,
    replay_source,
    saved_position,
    shares_of,
    summary,
)
from indexer.fold.rebuild import rebuild
from indexer.fold.writer import WriteStats
from indexer.metrics import Metrics
from indexer.settings import Settings

log = logging.getLogger("plyr_appview")


# Kept beside `indexer.capture.replay.summary`, which builds the object, and README's Commands section.
EPILOG = """\
Prints one JSON object on stdout when done:
  source      the name this capture's position is kept under: replay:<file name>:<content digest>
  start       the position (0-based line or frame) the replay began at: 0, or where an earlier run stopped
              (with --bulk, the least of its shares': each keeps its position under `source`:<i>/<n>)
  items       what was read from `start` on: each non-blank line; in a frame capture, each event a frame
              holds for us (one per record operation), or the frame itself when it holds none
  appended    valid events new to the log
  duplicates  valid events already in the log (same did, collection, rkey, rev and operation for a commit;
              the same identity or account event), whether from an earlier run or earlier in this one:
              stored once, they change nothing
  rejected    items refused, each kept in the rejections table with a reason: malformed lines of ours,
              bad envelopes, and records their lexicon refuses (these also enter the log, for their rev,
              and are never shown). A refused item delivered again is counted again but stored once
  ignored     lines or frames that hold nothing of ours: commits of collections we do not index (ours
              are fm.plyr.* and teal.fm's plays and statuses; e.g. app.bsky.feed.like), broken ones
              included when they name such a collection or, unreadable, never mention one of ours; in a
              frame capture also #sync and #info frames
  rejections  `rejected` by reason, e.g. {"invalid_record": 3, "invalid_json": 1}
The counts add up: items = appended + duplicates + rejected + ignored.
With --bulk, also:
  rebuilt     events in the log the closing rebuild folded; null when there was nothing to fold
  flagged_audio  tracks naming audio uploaded here whose object is not stored (checked after the rebuild)

--bulk appends the capture to the log without folding it, in --workers processes (each reads the lines of
a share of the DIDs), then folds the whole log by one online rebuild (the API serves the previous index until
the rebuild swaps the new one in; live ingest waits only for the rebuild). It pays when the capture is large
next to the log: a new index filled from a capture, a long catch-up. A bulk replay stopped before its rebuild
leaves the log's unfolded tail marked (`status` shows it): run it again (each share resumes at its position,
or past what an earlier run with another --workers appended), or `plyr-appview rebuild`, to fold it."""


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "file", type=Path, help="capture file: Jetstream JSON lines or raw firehose frames, .zst or not"
    )
    parser.add_argument("--from-start", action="store_true", help="ignore the saved position of this file")
    parser.add_argument(
        "--batch-size", type=positive_int, help="events per transaction (default: $PLYR_APPVIEW_BATCH_SIZE)"
    )
    parser.add_argument(
        "--bulk",
        action="store_true",
        help="append to the log without folding, then fold by one rebuild: faster for a capture large next to"
        " the log (see below)",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="with --bulk: processes appending the capture (each on a share of its DIDs; one for a frame capture)"
        " and connections of the closing rebuild (default 2)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (it is drawn only on a terminal)")


async def replay(settings: Settings, url: str, args: argparse.Namespace) -> dict[str, Any]:
    path: Path = args.file
    source = replay_source(path)
    start = 0 if args.from_start else await saved_position(url, source)
    total = count_items(path)
    bar = progress_bar(desc=path.name, unit="ev", disable=args.no_progress, total=total, initial=min(start, total))
    read = ReadCounts()
    async with batch_writer(settings, url, Metrics(), args.batch_size) as writer:
        stats = await writer.run(replay_items(path, source, start, on_position=bar.update, counts=read))
    bar.n = total
    bar.close()
    result = summary(source, start, stats, read)
    log.info("replay done", extra=result)
    return result


async def bulk_replay(settings: Settings, url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Append in shares (indexer/capture/replay.py), fold by one online rebuild, then check own audio."""
    path: Path = args.file
    workers = args.workers or 2
    bar = progress_bar(desc=path.name, unit="ev", disable=args.no_progress, total=count_items(path))

    def passed(position: int) -> None:
        bar.n = position
        bar.refresh()

    shares = await append_in_shares(
        settings,
        url,
        path,
        shares_of(path, workers),
        batch_size=args.batch_size,
        from_start=args.from_start,
        on_position=passed,
    )
    bar.n = bar.total
    bar.close()
    stats, read = WriteStats(), ReadCounts()
    for share in shares:
        stats.add(share.stats)
        read.ignored += share.read.ignored
    result = summary(replay_source(path), min(share.start for share in shares), stats, read)
    rebuilt = None
    if await unfolded(url) is not None:
        steps, progress = step_bar(disable=args.no_progress)
        with explained(then=_UNFOLDED):
            rebuilt = await rebuild(url, online=True, workers=workers, progress=progress)
        steps.close()
    unchecked = {track for share in shares for track in share.unchecked_audio}
    result |= {"rebuilt": rebuilt, "flagged_audio": await check_audio(url, unchecked)}
    log.info("replay done", extra=result)
    return result


# What a bulk replay whose rebuild failed leaves, said after the failure's cause and fix.
_UNFOLDED = (
    "; the replay's events are in the log but not yet in the index: `plyr-appview rebuild` (or the same replay"
    " again) folds them"
)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        sniff(args.file)
    except NotACapture as exc:
        raise CommandError(str(exc), status=EXIT_USAGE) from None
    if args.workers is not None and not args.bulk:
        raise CommandError(
            "--workers is for --bulk (its appending processes and its rebuild's connections); add --bulk or drop it",
            status=EXIT_USAGE,
        )
    with database(settings) as url:
        result = run(lambda: (bulk_replay if args.bulk else replay)(settings, url, args))
    print_json(result)
    return EXIT_OK


COMMAND = Command(_arguments, _run)
