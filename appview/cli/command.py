"""What a `plyr-appview` command is: a name, its arguments, and what it runs. The dispatch table
(appview/cli/__init__.py) lists them; each lives in its own module under appview/cli/commands/."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from indexer.settings import Settings

# Exit statuses: 0 done, 1 a runtime failure, 2 a usage or configuration mistake, 130 interrupted.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class Interrupted(Exception):
    """SIGINT or SIGTERM ended the command before it finished."""


class CommandError(Exception):
    """A failure the operator can act on: printed as one line (`error: ...`), no traceback."""

    def __init__(self, message: str, *, status: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.status = status


def first_line(said: object) -> str:
    """The first line of what an error (or its detail) says, for a one-line message; its type's name if empty."""
    text = str(said).strip()
    return text.splitlines()[0] if text else type(said).__name__


@dataclass(frozen=True)
class Command:
    """What a command does; its name and one-line help are in the table of commands (appview/cli/commands)."""

    add_arguments: Callable[[argparse.ArgumentParser], None]
    # Runs with the parsed arguments and the settings; returns the exit status.
    run: Callable[[argparse.Namespace, Settings], int]


def no_arguments(parser: argparse.ArgumentParser) -> None:
    """For commands that take none of their own."""


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (argparse names the option in its error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is below 1")
    return value
