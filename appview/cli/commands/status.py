"""`plyr-appview status`: visible counts, log size, cursors, rejections by reason and the state hash."""

from __future__ import annotations

import argparse
from typing import Any

from appview.cli.command import EXIT_OK, Command
from appview.cli.runtime import database, print_json, run
from indexer.settings import Settings
from indexer.status import status


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")


def _print(result: dict[str, Any]) -> None:
    counts = result["counts"]
    print("visible: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print(f"log: {result['log']['events']} events; rejections: {result['rejections']['total']}")
    for reason, n in result["rejections"]["by_reason"].items():
        print(f"  {reason}: {n}")
    for source, c in result["cursors"].items():
        print(f"cursor {source}: {c['cursor']} (event time {c['event_time']}, committed {c['updated_at']})")
    print(f"state hash: {result['state_hash']}")


def _run(args: argparse.Namespace, settings: Settings) -> int:
    # Reading only: a status check never migrates the database it looks at.
    with database(settings, migrate=False) as url:
        result = run(lambda: status(url))
    if args.json:
        print_json(result, indent=2)
    else:
        _print(result)
    return EXIT_OK


COMMAND = Command("status", "counts, cursors, rejections and the state hash", _arguments, _run)
