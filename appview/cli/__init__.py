"""`plyr-appview`: the one command operators and tests use. It sits above both halves of the system: the
indexer (`indexer/`) and the API (`appview/`); nothing else imports both sides' wiring.

Each command is a module under appview/cli/commands/ exposing a `Command`; `COMMANDS` is the dispatch table.
Machine-readable output goes to stdout, logs (JSON lines) to stderr. A mistake in the configuration or the
command line is one line on stderr and exit status 2; a command that fails in a way the operator can act on
prints one line and exits 1; an interrupted command exits 130.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from pathlib import Path

from appview.cli.command import EXIT_INTERRUPTED, EXIT_USAGE, Command, CommandError
from appview.cli.commands import (
    audit_audio,
    backfill,
    capture,
    convert,
    index,
    migrate,
    rebuild,
    reconcile,
    replay,
    serve,
    status,
    up,
)
from appview.cli.runtime import Interrupted
from indexer import logs
from indexer.settings import ConfigError, Settings

log = logging.getLogger("plyr_appview")

COMMANDS: tuple[Command, ...] = (
    up.COMMAND,
    migrate.COMMAND,
    index.COMMAND,
    backfill.BACKFILL,
    backfill.RESYNC,
    reconcile.COMMAND,
    serve.COMMAND,
    replay.COMMAND,
    capture.COMMAND,
    rebuild.COMMAND,
    status.COMMAND,
    convert.COMMAND,
    audit_audio.COMMAND,
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="plyr-appview", description="Network-wide index and XRPC API for fm.plyr")
    p.add_argument("--database-url", help="Postgres URL (default: $DATABASE_URL, else the embedded server)")
    p.add_argument("--data-dir", type=Path, help="data directory (default: $PLYR_APPVIEW_DATA_DIR or ./.plyr-appview)")
    sub = p.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_arguments(sub.add_parser(command.name, help=command.help))
    return p


def main(argv: list[str] | None = None) -> int:
    # platformdirs (through the embedded server) warns when XDG_RUNTIME_DIR is unset, as it is for services.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
    args = parser().parse_args(argv)
    try:
        settings = Settings.from_env(overrides={"database_url": args.database_url, "data_dir": args.data_dir})
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logs.configure(settings.log_level)
    command = next(c for c in COMMANDS if c.name == args.command)
    try:
        return command.run(args, settings)
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.status
    except Interrupted:
        return EXIT_INTERRUPTED


__all__ = ["COMMANDS", "main", "parser"]
