"""`plyr-appview rebuild`: derive the fold state and the projections again from the whole event log
(indexer/fold/rebuild.py), and print the state hash before and after (equal unless the projections had drifted
from the log).

By default the new index is loaded into shadow tables by `--workers` connections at once while the API keeps
serving the old one, and swapped in at the end; `--offline` rebuilds the tables in place in one transaction,
with no second copy on disk, while readers of the index wait: for a maintenance window or a full disk."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from typing import Any

import psycopg
from tqdm import tqdm

from appview.cli.command import EXIT_OK, Command, CommandError, first_line, positive_int
from appview.cli.runtime import database, print_json, progress_bar, run
from indexer.fold.rebuild import Progress, rebuild
from indexer.fold.shadow import SCHEMA, DependentObjects
from indexer.settings import Settings
from indexer.status import state_hash


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--offline",
        action="store_true",
        help="rebuild in place, with no second copy of the index on disk; API reads wait until it commits",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=2,
        help="connections loading the new index at once (default 2; about one per core of the Postgres server;"
        " each may use up to 1 GB of the server's memory for sorts and index builds)",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=None, help="ignored: the rebuild is one pass over the whole log"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (it is drawn only on a terminal)")


def step_bar(*, disable: bool) -> tuple[tqdm[Any], Progress]:
    """A progress bar of a rebuild's steps, and the `progress` callback that draws it."""
    bar = progress_bar(desc="rebuild", unit="step", disable=disable)

    def progress(step: str, done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.set_description(f"rebuild: {step}", refresh=False)
        bar.refresh()

    return bar, progress


@contextlib.contextmanager
def explained(then: str = "") -> Iterator[None]:
    """A rebuild's expected failures as one line each, naming the cause and the fix; `then` is added to each."""
    try:
        yield
    except (DependentObjects, psycopg.errors.DependentObjectsStillExist) as exc:
        detail = exc.diag.message_detail if isinstance(exc, psycopg.Error) else None
        raise CommandError(
            f"{first_line(exc)}{f' ({first_line(detail)})' if detail else ''}:"
            " the rebuild swaps in new tables; drop what depends on them"
            f" or run `plyr-appview rebuild --offline`{then}"
        ) from None
    except psycopg.errors.LockNotAvailable:
        raise CommandError(
            "the rebuild could not take the index tables for its swap: a session held them through every attempt"
            " (about 100 s; an open transaction? see pg_stat_activity); end it and run the rebuild again,"
            f" nothing was changed{then}"
        ) from None
    except psycopg.errors.InsufficientPrivilege as exc:
        raise CommandError(
            f"{first_line(exc)}: the rebuild builds the new index in schema {SCHEMA}, which needs CREATE on"
            f" the database and ownership of the index tables; grant them or run `plyr-appview rebuild --offline`"
            f"{then}"
        ) from None


async def _hash(url: str) -> str:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return await state_hash(conn)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.batch_size is not None:
        print("note: --batch-size is ignored: rebuild is one set-based pass over the whole log", file=sys.stderr)
    bar, progress = step_bar(disable=args.no_progress)
    with database(settings) as url:
        before = run(lambda: _hash(url))
        with explained():
            events = run(lambda: rebuild(url, online=not args.offline, workers=args.workers, progress=progress))
        bar.close()
        after = run(lambda: _hash(url))
    print_json({"events": events, "state_hash_before": before, "state_hash_after": after})
    return EXIT_OK


COMMAND = Command(_arguments, _run)
