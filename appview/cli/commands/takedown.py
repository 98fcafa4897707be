"""`plyr-appview takedown`: take an account, a record or an uploaded audio object down, undo it, or list what
is down. The change is an event in the log, folded at once (indexer/moderation/takedowns.py): every surface
of the API follows on commit, and `rebuild` keeps it.

    plyr-appview takedown did:plc:... --reason "copyright claim 2026-118"
    plyr-appview takedown at://did:plc:.../fm.plyr.track/3l...
    plyr-appview takedown sha256:<hex>            # an uploaded audio object (also its bare hex or blob CID)
    plyr-appview takedown --undo did:plc:...
    plyr-appview takedown --list [--all]
"""

from __future__ import annotations

import argparse
import getpass
from typing import Any

import psycopg

from appview.cli.command import EXIT_OK, EXIT_USAGE, Command, CommandError
from appview.cli.runtime import database, print_json, run
from indexer.atproto.syntax import is_handle
from indexer.moderation import takedowns
from indexer.moderation.takedowns import Subject, SubjectError, Takedown
from indexer.settings import Settings


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "subject", nargs="?", help="a DID (or a handle the index knows), an at:// record URI, or sha256:<hex>"
    )
    parser.add_argument("--reason", help="why (a claim or report reference); kept with the takedown")
    parser.add_argument("--undo", action="store_true", help="restore the subject")
    parser.add_argument("--list", action="store_true", help="list what is taken down")
    parser.add_argument("--all", action="store_true", help="with --list: also what was restored")


def _parsed(text: str) -> Subject | None:
    """The subject `text` names; None for a handle, which only the index can turn into a DID. A mistake is a
    usage error, found before the database is started."""
    if is_handle(text.strip()):
        return None
    try:
        return takedowns.parse_subject(text)
    except SubjectError as exc:
        raise CommandError(f"{exc}", status=EXIT_USAGE) from None


def _json(t: Takedown) -> dict[str, Any]:
    return {
        "subject": str(t.subject),
        "kind": t.subject.kind,
        "taken_down": t.applied,
        "reason": t.reason,
        "updated_at": t.updated_at.isoformat(),
    }


async def _handle_did(conn: psycopg.AsyncConnection[Any], handle: str) -> str:
    cur = await conn.execute("SELECT did FROM actors WHERE handle = %s", (handle.lower(),))
    found = [str(r[0]) for r in await cur.fetchall()]
    if len(found) != 1:
        raise CommandError(f"the index knows no account with the handle {handle!r}; give its DID", status=EXIT_USAGE)
    return found[0]


async def _change(url: str, text: str, parsed: Subject | None, *, applied: bool, reason: str | None) -> dict[str, Any]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        subject = parsed or Subject.account(await _handle_did(conn, text))
        done = await takedowns.change(conn, subject, applied=applied, reason=reason, by=f"cli:{_user()}")
        found = await takedowns.get(conn, subject)
    out: dict[str, Any] = {
        "subject": str(subject),
        "kind": subject.kind,
        "taken_down": applied,
        "changed": done.changed,
    }
    if found is not None:
        out["reason"] = found.reason
    return out


async def _list(url: str, *, applied_only: bool) -> list[dict[str, Any]]:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        return [_json(t) for t in await takedowns.listed(conn, applied_only=applied_only)]


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _run(args: argparse.Namespace, settings: Settings) -> int:
    if args.list:
        if args.subject or args.undo or args.reason:
            raise CommandError("--list takes no subject, --undo or --reason", status=EXIT_USAGE)
        with database(settings) as url:
            print_json({"takedowns": run(lambda: _list(url, applied_only=not args.all))})
        return EXIT_OK
    if args.all:
        raise CommandError("--all goes with --list", status=EXIT_USAGE)
    if not args.subject:
        raise CommandError("name what to take down: a DID, an at:// record URI or sha256:<hex>", status=EXIT_USAGE)
    if args.undo and args.reason:
        raise CommandError("--reason goes with a takedown, not with --undo", status=EXIT_USAGE)
    text: str = args.subject
    parsed = _parsed(text)
    with database(settings) as url:
        print_json(run(lambda: _change(url, text, parsed, applied=not args.undo, reason=args.reason)))
    return EXIT_OK


COMMAND = Command(_arguments, _run)
