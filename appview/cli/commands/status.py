"""`plyr-appview status`: visible counts, log size, cursors, live sources with their connection state, replays,
rejections by reason and the state hash.

`status --check` is the ingest health check (the compose healthcheck of the indexer): it reads only the live
sources, never the counts or the hash, and exits 0 when at least one live source is connected and the newest
event the live sources committed is at most `--max-lag` seconds old; otherwise it prints one line on stderr
saying why and exits 1.
"""

from __future__ import annotations

import argparse
from typing import Any

from appview.cli.command import EXIT_OK, Command, CommandError
from appview.cli.runtime import database, print_json, run
from indexer.settings import Settings
from indexer.source_status import DEFAULT_MAX_LAG_SECONDS, IngestState
from indexer.status import check, status


def _max_lag(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 0 when ingest is up (a live source connected, newest committed event within --max-lag), else"
        " print why on stderr and exit 1",
    )
    parser.add_argument(
        "--max-lag",
        type=_max_lag,
        default=DEFAULT_MAX_LAG_SECONDS,
        metavar="SECONDS",
        help=f"with --check: the oldest the newest committed event may be (default {DEFAULT_MAX_LAG_SECONDS:g})",
    )


def _print_sources(result: dict[str, Any]) -> None:
    for name, src in result["sources"].items():
        lag = "—" if src["lag_seconds"] is None else f"{src['lag_seconds']:.1f} s"
        print(f"source {name}: cursor {src['cursor']}, lag {lag}")
        if not src["hosts"]:
            print("  no connection state reported")
        for h in src["hosts"]:
            print(f"  {_host_line(h)}")
    for name, rep in result["replays"].items():
        print(f"replay {name}: cursor {rep['cursor']} (last committed {rep['committed_at']})")
    if result["ingest_problem"] is not None:
        print(f"ingest not healthy: {result['ingest_problem']}")


def _host_line(h: dict[str, Any]) -> str:
    if h["stale"]:
        return f"{h['host']}: unknown, the indexer has not reported since {h['reported_at']}"
    if h["connected"]:
        return f"{h['host']}: connected since {h['since']}"
    if not h["active"] and not h["attempts"] and h["last_error"] is None:
        return f"{h['host']}: standby"
    never = " (never connected)" if h["last_connected_at"] is None else ""
    error = f" — last error: {h['last_error']}" if h["last_error"] else ""
    return f"{h['host']}: not connected since {h['since']}{never}{error} ({h['attempts']} failed attempts)"


def _print(result: dict[str, Any]) -> None:
    counts = result["counts"]
    print("visible: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print(f"log: {result['log']['events']} events; rejections: {result['rejections']['total']}")
    for reason, n in result["rejections"]["by_reason"].items():
        print(f"  {reason}: {n}")
    for source, c in result["cursors"].items():
        print(f"cursor {source}: {c['cursor']} (event time {c['event_time']}, committed {c['updated_at']})")
    _print_sources(result)
    print(f"state hash: {result['state_hash']}")
    if (rebuild := result.get("rebuild")) is not None:
        print(f"rebuild: schema {rebuild['schema']}, {rebuild['shadow_bytes'] / 2**20:.1f} MiB: {rebuild['note']}")
    if (unfolded := result.get("unfolded")) is not None:
        print(f"unfolded: {unfolded['events']} events after log id {unfolded['after_id']}: {unfolded['note']}")


def _healthy(state: IngestState) -> str:
    connected = [h.host for s in state.followed for h in s.hosts if h.up]
    lags = [s.lag_seconds for s in state.followed if s.lag_seconds is not None]
    return f"ok: connected to {', '.join(connected)}; lag {min(lags):.1f} s"


def _run(args: argparse.Namespace, settings: Settings) -> int:
    # Reading only: a status check never migrates the database it looks at.
    with database(settings, migrate=False) as url:
        if args.check:
            state, problem = run(lambda: check(url, args.max_lag))
            if problem is not None:
                raise CommandError(problem)
            print(_healthy(state))
            return EXIT_OK
        result = run(lambda: status(url))
    if args.json:
        print_json(result, indent=2)
    else:
        _print(result)
    return EXIT_OK


COMMAND = Command(_arguments, _run)
