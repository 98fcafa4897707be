"""`plyr-appview capture`: record what a Jetstream source sends, for replays, benchmarks and bug reports.

A capture whose source never accepted a connection is a failure, not an empty recording: it exits 1 with one
line naming the host and its last error, and leaves no file behind. A source that connected but sent nothing
leaves an empty capture and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from pathlib import Path

from appview.cli.command import EXIT_OK, EXIT_USAGE, Command, CommandError, Interrupted
from appview.cli.runtime import run
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


async def record(args: argparse.Namespace, source: JetstreamSource) -> int:
    writer = open_capture_writer(args.out, "jsonl")
    try:
        with writer:
            count = await capture(source.raw(), writer, limit=args.limit, duration=args.duration)
    finally:
        # Also when interrupted: a file that only says "nothing was ever received" must not pass for a capture.
        if writer.count == 0 and not source.ever_connected:
            args.out.unlink(missing_ok=True)
    log.info("capture done", extra={"messages": count, "out": str(args.out)})
    return count


def never_connected(source: JetstreamSource) -> str:
    """One line: which host never accepted a connection, and why."""
    state = source.states[0]
    error = state.last_error or "no connection attempt finished"
    attempts = "1 attempt" if state.attempts == 1 else f"{state.attempts} attempts"
    return f"{state.host}: never connected, nothing captured — last error: {error} ({attempts})"


def _run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        source = JetstreamSource([args.source], start_cursor=args.cursor, rewind_on_start_us=0)
    except ValueError as exc:
        raise CommandError(f"--source: {exc}", status=EXIT_USAGE) from None
    # Interrupting a capture is how an open-ended one ends: what was written is kept.
    with contextlib.suppress(Interrupted):
        run(lambda: record(args, source))
    if not source.ever_connected:
        raise CommandError(never_connected(source))
    return EXIT_OK


COMMAND = Command(_arguments, _run)
