"""`plyr-appview`: the one command operators and tests use. It sits above both halves of the system: the
indexer (`indexer/`) and the API (`appview/`); nothing else imports both sides' wiring.

Each command is a module under appview/cli/commands/ exposing a `Command`, imported only when it runs;
`appview.cli.commands.ENTRIES` is the dispatch table.
Machine-readable output goes to stdout, logs (JSON lines) to stderr. A mistake in the configuration or the
command line is one line on stderr and exit status 2; a command that fails in a way the operator can act on
prints one line and exits 1; an interrupted command exits 130.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import sys
import warnings
from pathlib import Path
from typing import NoReturn

from appview.cli.command import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, Command, CommandError, Interrupted
from appview.cli.commands import ENTRIES
from indexer import logs
from indexer.settings import ConfigError, Settings

log = logging.getLogger("plyr_appview")


def _global_arguments(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """--database-url and --data-dir, accepted before the command and after it (`plyr-appview status
    --database-url ...`); after it, they are only set when given, so they never undo the earlier position."""
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument(
        "--database-url", default=default, help="Postgres URL (default: $DATABASE_URL, else the embedded server)"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=default,
        help="data directory (default: $PLYR_APPVIEW_DATA_DIR or ./.plyr-appview)",
    )


class _Parser(argparse.ArgumentParser):
    """Usage mistakes are one line naming the option and where help is, not a usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {message} (see `{self.prog} --help`)\n")


def parser(chosen: str | None = None) -> argparse.ArgumentParser:
    """The command line: every command's name and help; the arguments of `chosen` only (its module is imported
    for them), the others' ignored. Without one, it is for finding out which command was chosen."""
    p = _Parser(prog="plyr-appview", description="Network-wide index and XRPC API for fm.plyr")
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    _global_arguments(p, suppress=False)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for entry in ENTRIES:
        if entry.name == chosen:
            child = sub.add_parser(entry.name, help=entry.help, description=entry.help)
            entry.load().add_arguments(child)
            _global_arguments(child, suppress=True)
        else:
            sub.add_parser(entry.name, help=entry.help, add_help=False)
    return p


def _command(argv: list[str] | None) -> tuple[argparse.Namespace, Command]:
    chosen, _ = parser().parse_known_args(argv)  # the command's name (or a usage error, --help, --version)
    entry = next(e for e in ENTRIES if e.name == chosen.command)
    return parser(entry.name).parse_args(argv), entry.load()


def _version() -> str:
    try:
        return importlib.metadata.version("plyr-appview")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    # platformdirs (through the embedded server) warns when XDG_RUNTIME_DIR is unset, as it is for services.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
    args, command = _command(argv)
    try:
        settings = Settings.from_env(overrides={"database_url": args.database_url, "data_dir": args.data_dir})
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    logs.configure(settings.log_level, settings.log_format)
    try:
        return command.run(args, settings)
    except CommandError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.status
    except Interrupted:
        return EXIT_INTERRUPTED
    except Exception as exc:
        # Anything else is a failure we did not foresee: still one line, the traceback only when debugging.
        if settings.log_level == "DEBUG":
            raise
        log.debug("command failed", exc_info=True)
        print(f"error: {_unforeseen(exc)} (PLYR_APPVIEW_LOG_LEVEL=DEBUG shows the traceback)", file=sys.stderr)
        return EXIT_FAILED


def _unforeseen(exc: Exception) -> str:
    import psycopg

    first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    if isinstance(exc, psycopg.OperationalError):
        return f"lost the connection to Postgres ({first or 'no reason given'}); check that it is running"
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


__all__ = ["COMMANDS", "main", "parser"]
