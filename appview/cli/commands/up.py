"""`plyr-appview up`: migrate, then index and serve in one process (the main job)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from appview.cli.command import EXIT_OK, Command, Interrupted
from appview.cli.commands.index import add_source_argument, index, sources_of
from appview.cli.commands.serve import add_listen_arguments, check_listen, serve
from appview.cli.runtime import database, run
from indexer.metrics import Metrics
from indexer.settings import Settings


def _arguments(parser: argparse.ArgumentParser) -> None:
    add_source_argument(parser)
    add_listen_arguments(parser)


async def up(settings: Settings, url: str, sources: list[str], host: str, port: int) -> None:
    metrics = Metrics()  # one registry: /metrics shows ingest and API together
    async with asyncio.TaskGroup() as tg:
        tg.create_task(index(settings, url, metrics, sources))
        tg.create_task(serve(settings, url, metrics, host, port))


def _run(args: argparse.Namespace, settings: Settings) -> int:
    sources = sources_of(args, settings)
    check_listen(args.host or settings.host, args.port or settings.port)
    # A signal is how a service is told to stop: a clean stop is a success.
    with database(settings) as url, contextlib.suppress(Interrupted):
        run(lambda: up(settings, url, sources, args.host or settings.host, args.port or settings.port))
    return EXIT_OK


COMMAND = Command(_arguments, _run)
