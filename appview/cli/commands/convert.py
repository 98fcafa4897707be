"""`plyr-appview convert IN OUT`: a raw firehose frame capture as Jetstream v1 JSON lines."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import msgspec

from appview.cli.command import EXIT_FAILED, EXIT_OK, EXIT_USAGE, Command, CommandError
from appview.cli.runtime import print_json
from indexer.capture.convert import convert
from indexer.capture.files import NotACapture, sniff
from indexer.settings import Settings


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="raw firehose frame capture (length-prefixed frames, .zst or not)")
    parser.add_argument("output", type=Path, help="Jetstream v1 JSON lines to write (.zst to compress)")


def _run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        kind = sniff(args.input)
    except NotACapture as exc:
        raise CommandError(str(exc), status=EXIT_USAGE) from None
    if kind != "frames":
        raise CommandError(
            f"{args.input}: Jetstream JSON lines, not a raw firehose frame capture; `plyr-appview replay` reads it"
            " as it is",
            status=EXIT_USAGE,
        )
    if args.output.is_dir() or not args.output.parent.is_dir():
        where = "is a directory" if args.output.is_dir() else "its directory does not exist"
        raise CommandError(f"{args.output}: {where}; name the file to write", status=EXIT_USAGE)
    try:
        stats = convert(args.input, args.output)
    except OSError as exc:
        raise CommandError(f"cannot write {args.output} ({exc.strerror or exc})") from None
    print_json(msgspec.to_builtins(stats))
    if stats.capture_error:
        print(f"error: {stats.capture_error}; the {stats.frames} frames before it were converted", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


COMMAND = Command(_arguments, _run)
