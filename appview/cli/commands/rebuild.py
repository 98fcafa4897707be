"""`plyr-appview rebuild`: refold the whole event log into fresh projections, in one transaction."""

from __future__ import annotations

import argparse

from appview.cli.command import EXIT_OK, Command
from appview.cli.runtime import database, print_json, progress_bar, run
from indexer.fold.rebuild import rebuild
from indexer.settings import Settings


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=int, default=20_000)
    parser.add_argument("--no-progress", action="store_true")


def _run(args: argparse.Namespace, settings: Settings) -> int:
    bar = progress_bar(desc="rebuild", unit="ev", disable=args.no_progress)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    with database(settings) as url:
        folded = run(lambda: rebuild(url, batch_size=args.batch_size, progress=progress))
    bar.close()
    print_json({"events": folded})
    return EXIT_OK


COMMAND = Command("rebuild", "refold the whole event log into fresh projections", _arguments, _run)
