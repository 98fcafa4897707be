"""`plyr-appview serve`: the XRPC API alone (stateless; run as many as you like)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

import uvicorn

from appview.app import create_app
from appview.cli.command import EXIT_OK, Command, CommandError, Interrupted
from appview.cli.runtime import database, run
from indexer.metrics import Metrics
from indexer.settings import Settings

log = logging.getLogger("plyr_appview")


def add_listen_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="listen address (default: $PLYR_APPVIEW_HOST or 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port (default: $PLYR_APPVIEW_PORT or 8080)")


class _Server(uvicorn.Server):
    """uvicorn, minus its own signal handling: signals belong to the command (appview/cli/runtime.py), which
    cancels `serve` once; uvicorn would take a second Ctrl-C as "exit now" and skip the app's shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(settings: Settings, url: str, metrics: Metrics, host: str, port: int) -> None:
    app = create_app(url, metrics=metrics, replica_url=settings.database_replica_url, settings=settings)
    # proxy_headers off: the client address is the app's to derive (PLYR_APPVIEW_TRUSTED_PROXIES), never
    # uvicorn's (which would trust X-Forwarded-For from FORWARDED_ALLOW_IPS, loopback by default).
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, proxy_headers=False)
    server = _Server(config)
    log.info("serving", extra={"host": host, "port": port})
    serving = asyncio.create_task(server.serve())
    try:
        await asyncio.shield(serving)
    except asyncio.CancelledError:
        # Stop the way uvicorn stops on a signal: finish requests, run the app's shutdown (pool close), exit.
        server.should_exit = True
        await serving
        raise


def check_listen(host: str, port: int) -> None:
    """Bind once before anything starts, so a busy port is one line up front rather than a server error
    after the database and the indexer have started."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise CommandError(
            f"cannot listen on {host}:{port} ({exc.strerror}); check --host / PLYR_APPVIEW_HOST"
        ) from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            reason = (exc.strerror or str(exc)).lower()
            raise CommandError(
                f"cannot listen on {host}:{port} ({reason}); stop what uses it or choose another with"
                " --port / PLYR_APPVIEW_PORT (--host / PLYR_APPVIEW_HOST)"
            ) from None


def _run(args: argparse.Namespace, settings: Settings) -> int:
    check_listen(args.host or settings.host, args.port or settings.port)
    # A signal is how a service is told to stop: a clean stop is a success.
    with database(settings) as url, contextlib.suppress(Interrupted):
        run(lambda: serve(settings, url, Metrics(), args.host or settings.host, args.port or settings.port))
    return EXIT_OK


COMMAND = Command(add_listen_arguments, _run)
