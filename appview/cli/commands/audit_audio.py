"""`plyr-appview audit-audio`: uploaded audio against the tracks that reference it (dangling references,
orphaned objects, lost objects), and optionally the deletion of old orphans."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from appview.cli.command import EXIT_OK, EXIT_USAGE, Command, CommandError
from appview.cli.runtime import database, print_json, run
from indexer.audio.audit import audit, parse_duration, to_json
from indexer.audio.store import open_store
from indexer.settings import Settings

log = logging.getLogger("plyr_appview")


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--delete-orphans", action="store_true", help="delete orphans older than --older-than")
    parser.add_argument(
        "--older-than", type=_duration, help="grace period before an orphan may be deleted, e.g. 7d, 12h, 3600"
    )


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


async def audit_audio(settings: Settings, url: str, grace: float | None) -> dict[str, Any]:
    async with open_store(settings.storage) as store:
        result = await audit(url, store, settings.public_origin, delete_older_than=grace)
    log.info(
        "audio audit done",
        extra={"dangling": len(result.dangling), "orphans": len(result.orphans), "deleted": len(result.deleted)},
    )
    return to_json(result)


def _run(args: argparse.Namespace, settings: Settings) -> int:
    grace: float | None = None
    if args.delete_orphans:
        if args.older_than is None:
            raise CommandError(
                "--delete-orphans needs --older-than (an upload precedes the record that uses it)", status=EXIT_USAGE
            )
        grace = args.older_than
    with database(settings) as url:
        result = run(lambda: audit_audio(settings, url, grace))
    print_json(result, indent=2)
    return EXIT_OK


COMMAND = Command(_arguments, _run)
