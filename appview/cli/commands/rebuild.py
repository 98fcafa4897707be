"""`plyr-appview rebuild`: derive the fold state and the projections again from the whole event log, in one
transaction (indexer/fold/rebuild.py), and print the state hash before and after (equal unless the projections
had drifted from the log).

By default the API keeps serving the old index until the rebuild commits; `--offline` empties the tables by
TRUNCATE and builds their indexes again after the load, about 1.7 times as fast, while readers of the index wait:
for a maintenance window."""

from __future__ import annotations

import argparse
import sys

import psycopg

from appview.cli.command import EXIT_OK, Command, positive_int
from appview.cli.runtime import database, print_json, progress_bar, run
from indexer.fold.rebuild import rebuild
from indexer.settings import Settings
from indexer.status import state_hash


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--offline",
        action="store_true",
        help="faster, but API reads wait until the rebuild commits; by default they keep seeing the old index",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=None, help="ignored: the rebuild is one pass over the whole log"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (it is drawn only on a terminal)")


async def _hash(url: str) -> str:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await state_hash(conn)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.batch_size is not None:
        print("note: --batch-size is ignored: rebuild is one set-based pass over the whole log", file=sys.stderr)
    bar = progress_bar(desc="rebuild", unit="step", disable=args.no_progress)

    def progress(step: str, done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.set_description(f"rebuild: {step}", refresh=False)
        bar.refresh()

    with database(settings) as url:
        before = run(lambda: _hash(url))
        events = run(lambda: rebuild(url, online=not args.offline, progress=progress))
        bar.close()
        after = run(lambda: _hash(url))
    print_json({"events": events, "state_hash_before": before, "state_hash_after": after})
    return EXIT_OK


COMMAND = Command("rebuild", "derive the fold state and projections again from the whole event log", _arguments, _run)
