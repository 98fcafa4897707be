"""`plyr-appview capture`: record what a Jetstream source sends, for replays, benchmarks and bug reports."""

from __future__ import annotations

import argparse
import contextlib
import logging
from pathlib import Path

from appview.cli.command import EXIT_OK, Command
from appview.cli.runtime import Interrupted, run
from indexer.capture.files import capture, open_capture_writer
from indexer.jetstream.source import JetstreamSource
from indexer.settings import Settings

log = logging.getLogger("plyr_appview")


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True, help="Jetstream URL")
    parser.add_argument("--out", type=Path, required=True, help="output file (.zst to compress)")
    parser.add_argument("--limit", type=int, help="stop after this many messages")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--cursor", type=int, help="start cursor")


async def record(args: argparse.Namespace) -> int:
    source = JetstreamSource([args.source], start_cursor=args.cursor, rewind_on_start_us=0)
    with open_capture_writer(args.out, "jsonl") as out:
        count = await capture(source.raw(), out, limit=args.limit, duration=args.duration)
    log.info("capture done", extra={"messages": count, "out": str(args.out)})
    return count


def _run(args: argparse.Namespace, settings: Settings) -> int:
    # Interrupting a capture is how an open-ended one ends: what was written is kept.
    with contextlib.suppress(Interrupted):
        run(lambda: record(args))
    return EXIT_OK


COMMAND = Command("capture", "record what a source sends to a file", _arguments, _run)
