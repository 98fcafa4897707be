"""`plyr-appview replay FILE`: ingest a capture through the live path, resuming where a killed replay stopped."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from appview.cli.command import EXIT_OK, EXIT_USAGE, Command, CommandError, positive_int
from appview.cli.runtime import batch_writer, database, print_json, progress_bar, run
from indexer.capture.files import NotACapture, sniff
from indexer.capture.replay import ReadCounts, count_items, replay_items, replay_source, saved_position, summary
from indexer.metrics import Metrics
from indexer.settings import Settings

log = logging.getLogger("plyr_appview")


# Kept beside `indexer.capture.replay.summary`, which builds the object, and README's Commands section.
EPILOG = """\
Prints one JSON object on stdout when done:
  source      the name this capture's position is kept under: replay:<file name>:<content digest>
  start       the position (0-based line or frame) the replay began at: 0, or where an earlier run stopped
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
The counts add up: items = appended + duplicates + rejected + ignored."""


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


def _run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        sniff(args.file)
    except NotACapture as exc:
        raise CommandError(str(exc), status=EXIT_USAGE) from None
    with database(settings) as url:
        result = run(lambda: replay(settings, url, args))
    print_json(result)
    return EXIT_OK


COMMAND = Command("replay", "ingest a capture file (Jetstream JSON lines or raw frames, .zst or not)", _arguments, _run)
