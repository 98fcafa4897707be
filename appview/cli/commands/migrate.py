"""`plyr-appview migrate`: apply database migrations (every other command that needs them does so too)."""

from __future__ import annotations

import argparse
import logging

from appview.cli.command import EXIT_OK, Command, no_arguments
from appview.cli.runtime import database
from indexer.settings import Settings

log = logging.getLogger("plyr_appview")


def _run(args: argparse.Namespace, settings: Settings) -> int:
    with database(settings):
        log.info("migrations applied")
    return EXIT_OK


COMMAND = Command(no_arguments, _run)
