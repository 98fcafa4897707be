"""Every mistake an operator makes ends in one line on stderr naming the cause (and the fix), the documented exit
status (2: usage or configuration, 1: a runtime failure), no traceback, and nothing written: neither to the
database (these run against an empty, never-migrated one, which must stay empty) nor to an output path."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import psycopg
import pytest

from bench.synth import workload
from tests.test_firehose_support import CORPUS

UNREACHABLE = "postgresql://postgres@127.0.0.1:1/nowhere"
FRAMES = CORPUS / "frames.bin.zst"


@dataclass(frozen=True)
class Case:
    name: str
    args: list[str]
    status: int
    says: str
    env: dict[str, str] = field(default_factory=dict)
    # The case's database is the empty one unless it names another (e.g. an unreachable server).
    database: str | None = None
    # Paths (relative to the test's directory) that must not exist afterwards.
    not_written: tuple[str, ...] = ()


def _capture(tmp: Path) -> None:
    (tmp / "good.jsonl").write_bytes(b"".join(msgspec.json.encode(o) + b"\n" for o in workload(20, seed=1)))
    (tmp / "empty.jsonl").write_bytes(b"")
    (tmp / "random.bin").write_bytes(os.urandom(50_000))
    (tmp / "text.txt").write_text("hello\nworld\n")
    (tmp / "adir").mkdir()
    (tmp / "afile").write_text("not a directory")


CASES = [
    # Input the command refuses before touching anything.
    Case("replay a missing file", ["replay", "{tmp}/missing.jsonl"], 2, "no such file"),
    Case("replay a directory", ["replay", "{tmp}/adir"], 2, "is a directory"),
    Case("replay an empty file", ["replay", "{tmp}/empty.jsonl"], 2, "the file is empty"),
    Case("replay random bytes", ["replay", "{tmp}/random.bin"], 2, "not a capture"),
    Case("replay a text file", ["replay", "{tmp}/text.txt"], 2, "not a capture"),
    Case("replay with --workers but not --bulk", ["replay", "{tmp}/good.jsonl", "--workers", "2"], 2, "add --bulk"),
    Case("replay --bulk with no workers", ["replay", "{tmp}/good.jsonl", "--bulk", "--workers", "0"], 2, "--workers"),
    Case(
        "convert JSON lines",
        ["convert", "{tmp}/good.jsonl", "{tmp}/out.jsonl"],
        2,
        "not a raw firehose frame",
        not_written=("out.jsonl",),
    ),
    Case(
        "convert random bytes",
        ["convert", "{tmp}/random.bin", "{tmp}/out.jsonl"],
        2,
        "not a capture",
        not_written=("out.jsonl",),
    ),
    Case(
        "convert into a directory that does not exist",
        ["convert", "{frames}", "{tmp}/nodir/out.jsonl"],
        2,
        "its directory does not exist",
    ),
    Case("convert into a directory", ["convert", "{frames}", "{tmp}/adir"], 2, "is a directory"),
    Case("backfill a string that is not a DID", ["backfill", "--did", "notadid"], 2, "--did 'notadid' is not a DID"),
    Case("index a source that is not a URL", ["index", "--source", "notaurl"], 2, "--source 'notaurl': not a URL"),
    Case("index a source of another scheme", ["index", "--source", "ftp://x.example"], 2, "not a Jetstream"),
    Case(
        "up with a firehose and a Jetstream",
        ["up", "--source", "firehose:wss://a.example", "--source", "wss://b.example"],
        2,
        "cannot be combined",
    ),
    Case(
        "audit-audio with an unreadable grace period",
        ["audit-audio", "--delete-orphans", "--older-than", "soon"],
        2,
        "argument --older-than: not a duration",
    ),
    Case("audit-audio deleting without a grace period", ["audit-audio", "--delete-orphans"], 2, "--older-than"),
    Case("rebuild with a batch size of zero", ["rebuild", "--batch-size", "0"], 2, "argument --batch-size"),
    Case("an unknown command", ["bogus"], 2, "invalid choice: 'bogus'"),
    Case(
        "a port that is not a number",
        ["status"],
        2,
        "PLYR_APPVIEW_PORT='abc' is not a whole number",
        env={"PLYR_APPVIEW_PORT": "abc"},
    ),
    Case(
        "a log level that does not exist",
        ["status"],
        2,
        "PLYR_APPVIEW_LOG_LEVEL='LOUD' is not one of",
        env={"PLYR_APPVIEW_LOG_LEVEL": "LOUD"},
    ),
    Case(
        "a boolean that is not one",
        ["status"],
        2,
        "PLYR_APPVIEW_VERIFY_SIGNATURES='maybe' is not a boolean",
        env={"PLYR_APPVIEW_VERIFY_SIGNATURES": "maybe"},
    ),
    # The database: unreachable, never migrated, or no place to keep the embedded one.
    *(
        Case(
            f"{command[0]} with Postgres unreachable",
            command,
            1,
            "cannot connect to Postgres at 127.0.0.1:1/nowhere (connection refused); check DATABASE_URL",
            database=UNREACHABLE,
        )
        for command in (
            ["migrate"],
            ["status"],
            ["rebuild"],
            ["audit-audio"],
            ["replay", "{tmp}/good.jsonl"],
            ["serve", "--port", "{port}"],
            ["up", "--port", "{port}", "--source", "ws://127.0.0.1:1/subscribe"],
            ["reconcile"],
        )
    ),
    Case(
        "status of a database never migrated", ["status"], 1, "has no plyr-appview schema; run `plyr-appview migrate`"
    ),
    Case(
        "a data directory that cannot be made",
        ["status"],
        1,
        "cannot use the data directory",
        database="",
        env={"PLYR_APPVIEW_DATA_DIR": "{tmp}/afile/data"},
    ),
]


@pytest.fixture
def empty_database(pg_admin_url: str) -> Iterator[str]:
    name = f"plyr_empty_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield psycopg.conninfo.make_conninfo(pg_admin_url, dbname=name)
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PLYR_APPVIEW_", "DATABASE_"))}
    return subprocess.run(
        [sys.executable, "-m", "appview.cli", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _tables(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
    assert row is not None
    return int(row[0])


def _assert_one_line(done: subprocess.CompletedProcess[str], status: int, says: str) -> None:
    lines = done.stderr.splitlines()
    assert done.returncode == status, done.stderr
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ") and says in lines[0], lines[0]
    assert "Traceback" not in done.stderr and done.stdout == ""


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_a_mistake_is_one_line_and_writes_nothing(case: Case, empty_database: str, tmp_path: Path) -> None:
    _capture(tmp_path)
    port = str(_free_port())

    def fill(text: str) -> str:
        return text.replace("{tmp}", str(tmp_path)).replace("{port}", port).replace("{frames}", str(FRAMES))

    env = {k: fill(v) for k, v in case.env.items()}
    database = empty_database if case.database is None else case.database
    if database:
        env["DATABASE_URL"] = database
    done = _run([fill(a) for a in case.args], env)
    _assert_one_line(done, case.status, case.says)
    assert _tables(empty_database) == 0, "the command wrote to the database"
    for path in case.not_written:
        assert not (tmp_path / path).exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary file left


def test_a_busy_port_is_one_line_before_anything_starts(empty_database: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        for command in (["serve"], ["up", "--source", "ws://127.0.0.1:1/subscribe"]):
            done = _run([*command, "--port", port], {"DATABASE_URL": empty_database})
            _assert_one_line(done, 1, f"cannot listen on 127.0.0.1:{port} (address already in use)")
    assert _tables(empty_database) == 0


def test_global_options_may_follow_the_command(empty_database: str) -> None:
    done = _run(["status", "--database-url", empty_database], {"DATABASE_URL": UNREACHABLE})
    # The option after the command wins over the environment: the database is reached, and is not migrated.
    _assert_one_line(done, 1, "has no plyr-appview schema")


def test_version_and_help() -> None:
    version = _run(["--version"], {})
    assert version.returncode == 0 and version.stdout.startswith("plyr-appview ")
    helped = _run(["--help"], {})
    assert helped.returncode == 0
    for command in ("up", "index", "backfill", "replay", "convert", "rebuild", "status", "audit-audio"):
        assert command in helped.stdout


def test_every_option_has_help() -> None:
    from appview.cli import parser

    root = parser()
    undocumented: list[str] = []

    def walk(p: object, prefix: str) -> None:
        for action in getattr(p, "_actions", []):
            if action.help is None and action.dest not in ("help", "command"):
                undocumented.append(f"{prefix} {'/'.join(action.option_strings) or action.dest}")
            for name, child in (getattr(action, "choices", None) or {}).items():
                if hasattr(child, "_actions"):
                    walk(child, f"{prefix} {name}")

    walk(root, "plyr-appview")
    assert undocumented == []
