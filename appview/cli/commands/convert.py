"""`plyr-appview convert IN OUT`: a raw firehose frame capture as Jetstream v1 JSON lines."""

from __future__ import annotations

import argparse
from pathlib import Path

import msgspec

from appview.cli.command import EXIT_OK, Command
from appview.cli.runtime import print_json
from indexer.firehose.convert import convert
from indexer.settings import Settings


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    print_json(msgspec.to_builtins(convert(args.input, args.output)))
    return EXIT_OK


COMMAND = Command("convert", "convert a raw firehose frame capture to Jetstream v1 JSON lines", _arguments, _run)
