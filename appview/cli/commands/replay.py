"""`plyr-appview replay FILE`: ingest a capture through the live path, resuming where a killed replay stopped."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from appview.cli.command import EXIT_INTERRUPTED, EXIT_OK, Command
from appview.cli.runtime import Interrupted, batch_writer, database, print_json, progress_bar, run
from indexer.capture.replay import count_items, replay_items, replay_source, saved_position
from indexer.metrics import Metrics
from indexer.settings import Settings

log = logging.getLogger("plyr_appview")


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path)
    parser.add_argument("--from-start", action="store_true", help="ignore the saved position of this file")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--no-progress", action="store_true")


async def replay(settings: Settings, url: str, args: argparse.Namespace) -> dict[str, Any]:
    path: Path = args.file
    source = replay_source(path)
    start = 0 if args.from_start else await saved_position(url, source)
    total = count_items(path)
    bar = progress_bar(desc=path.name, unit="ev", disable=args.no_progress, total=total, initial=min(start, total))
    async with batch_writer(settings, url, Metrics(), args.batch_size) as writer:
        stats = await writer.run(replay_items(path, source, start, on_position=bar.update))
    bar.n = total
    bar.close()
    result = {
        "source": source,
        "start": start,
        "items": stats.items,
        "appended": stats.appended,
        "rejected": stats.rejected,
        "skipped": stats.skipped,
        "rejections": dict(stats.by_reason),
    }
    log.info("replay done", extra=result)
    return result


def _run(args: argparse.Namespace, settings: Settings) -> int:
    with database(settings) as url:
        try:
            result = run(lambda: replay(settings, url, args))
        except Interrupted:
            return EXIT_INTERRUPTED
    print_json(result)
    return EXIT_OK


COMMAND = Command(
    "replay", "ingest a capture file (Jetstream JSON lines or raw frames, .zst or not)", _arguments, _run
)
