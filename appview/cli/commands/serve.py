"""`plyr-appview serve`: the XRPC API alone (stateless; run as many as you like)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging

import uvicorn

from appview.app import create_app
from appview.cli.command import EXIT_OK, Command
from appview.cli.runtime import Interrupted, database, run
from indexer.metrics import Metrics
from indexer.settings import Settings

log = logging.getLogger("plyr_appview")


def add_listen_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="listen address (default: $PLYR_APPVIEW_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port (default: $PLYR_APPVIEW_PORT or 8080)")


async def serve(settings: Settings, url: str, metrics: Metrics, host: str, port: int) -> None:
    app = create_app(url, metrics=metrics, replica_url=settings.database_replica_url, settings=settings)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False))
    log.info("serving", extra={"host": host, "port": port})
    serving = asyncio.create_task(server.serve())
    try:
        await asyncio.shield(serving)
    except asyncio.CancelledError:
        # Stop the way uvicorn stops on a signal: finish requests, run the app's shutdown (pool close), exit.
        server.should_exit = True
        await serving
        raise


def _run(args: argparse.Namespace, settings: Settings) -> int:
    # A signal is how a service is told to stop: a clean stop is a success.
    with database(settings) as url, contextlib.suppress(Interrupted):
        run(lambda: serve(settings, url, Metrics(), args.host or settings.host, args.port or settings.port))
    return EXIT_OK


COMMAND = Command("serve", "run the XRPC API alone", add_listen_arguments, _run)
