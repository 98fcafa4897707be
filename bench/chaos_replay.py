"""Ingest under faults, judged by the state hash of `plyr-appview status --json`.

    uv run python bench/chaos_replay.py [--events 200000] [--kills 20] [--rewinds 2] [--dup-share 0.3] [--seed N]

1. A synthetic capture (`bench/synth.py`) is replayed once, uninterrupted, into a fresh database: the reference.
2. The same capture is replayed into another fresh database by `plyr-appview replay` subprocesses, each SIGKILLed
   at a random point (a random cursor target, then a random delay, so kills land anywhere in a batch: reading,
   folding, committing) and restarted until one finishes.
3. A variant of the capture (a share of lines delivered twice, later; the order across DIDs shuffled while each
   DID's own order is kept) is replayed into a third database, killed twice, and each time its committed cursor
   is moved back (a real rewind of the row the replay resumes from) before the restart.

Both runs must equal the reference: state hash, visible counts, events in the log, rejections, and stored like/
comment counts equal to a full recount. Prints one JSON summary on stdout (the seed included); exits 1 on a
mismatch. `DATABASE_URL` names a server to create the databases on; otherwise an embedded one is started.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import zstandard

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.postgres import admin_url  # noqa: E402
from bench.synth import workload  # noqa: E402
from indexer.db import migrate  # noqa: E402

ENV = {**os.environ, "PLYR_APPVIEW_RESOLVE_IDENTITIES": "0", "PLYR_APPVIEW_LOG_LEVEL": "WARNING"}
ENV.pop("DATABASE_URL", None)

COUNT_DRIFT = """
SELECT count(*) FROM tracks t
WHERE like_count <> (SELECT count(*) FROM likes l WHERE l.subject_uri = t.uri AND l.author_active)
   OR comment_count <> (SELECT count(*) FROM comments c WHERE c.subject_uri = t.uri AND c.author_active)
"""


# -- captures ------------------------------------------------------------------------------------------------


def capture_lines(n: int, seed: int) -> list[bytes]:
    return [msgspec.json.encode(obj) for obj in workload(n, seed=seed)]


def write_capture(path: Path, lines: Sequence[bytes]) -> Path:
    with path.open("wb") as raw, zstandard.ZstdCompressor(level=3).stream_writer(raw) as out:
        for line in lines:
            out.write(line + b"\n")
    return path


class _Did(msgspec.Struct):
    did: str


_did_of = msgspec.json.Decoder(_Did)


def variant_lines(lines: Sequence[bytes], rng: random.Random, dup_share: float, window: int = 5000) -> list[bytes]:
    """The capture as an at-least-once, differently-interleaved source would deliver it: the order across DIDs
    is a uniform random interleaving that keeps each DID's own order, then `dup_share` of the lines are
    delivered a second time, up to `window` lines later (a redelivery after a reconnect)."""
    per_did: dict[str, list[bytes]] = {}
    for line in lines:
        per_did.setdefault(_did_of.decode(line).did, []).append(line)
    slots = [did for did, own in per_did.items() for _ in own]
    rng.shuffle(slots)
    cursor = dict.fromkeys(per_did, 0)
    shuffled: list[bytes] = []
    for did in slots:
        shuffled.append(per_did[did][cursor[did]])
        cursor[did] += 1
    # Duplicates are placed by bucketing them at their delivery position, then emitted after the line there.
    later: dict[int, list[bytes]] = {}
    for i, line in enumerate(shuffled):
        if rng.random() < dup_share:
            later.setdefault(min(len(shuffled) - 1, i + rng.randint(0, window)), []).append(line)
    out: list[bytes] = []
    for i, line in enumerate(shuffled):
        out.append(line)
        out.extend(later.get(i, ()))
    return out


# -- databases -----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """An admin URL: `DATABASE_URL` if set, else an embedded server in a temporary directory."""
    with admin_url(os.environ.get("DATABASE_URL")) as url:
        yield url


def fresh_database(admin_url: str) -> str:
    name = f"plyr_chaos_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = psycopg.conninfo.make_conninfo(admin_url, dbname=name)
    # Migrated up front so the cursor can be watched from the first moment (the replay migrates too: a no-op).
    migrate.upgrade(url)
    return url


def drop_database(admin_url: str, url: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(url)["dbname"]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# -- the command line, as an operator runs it ----------------------------------------------------------------


def _argv(db: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "appview.cli", "--database-url", db, *args]


def cli(db: str, *args: str) -> str:
    done = subprocess.run(_argv(db, *args), env=ENV, capture_output=True, text=True, timeout=3600, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"plyr-appview {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


def status(db: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(cli(db, "status", "--json"))
    return result


def count_drift(db: str) -> int:
    with psycopg.connect(db) as conn:
        row = conn.execute(COUNT_DRIFT).fetchone()
    assert row is not None
    return int(row[0])


def replay_cursor(conn: psycopg.Connection[Any]) -> int | None:
    row = conn.execute("SELECT max(cursor) FROM cursors WHERE source LIKE 'replay:%'").fetchone()
    return None if row is None or row[0] is None else int(row[0])


def _spawn(db: str, capture: Path, batch_size: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        _argv(db, "replay", str(capture), "--no-progress", "--batch-size", str(batch_size)),
        env=ENV,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _run_until(
    db: str, capture: Path, batch_size: int, target: int | None, delay: float | None, timeout: float = 600
) -> tuple[bool, int | None]:
    """Start a replay; once its committed cursor reaches `target` (None: at once), wait `delay` seconds and
    SIGKILL it (`delay` None: let it finish). Returns (killed, committed cursor after the process is gone)."""
    proc = _spawn(db, capture, batch_size)
    deadline = time.monotonic() + timeout
    with psycopg.connect(db, autocommit=True) as conn:
        try:
            while target is not None and proc.poll() is None and time.monotonic() < deadline:
                now = replay_cursor(conn)
                if now is not None and now >= target:
                    break
                time.sleep(0.01)
            if delay is None:
                proc.wait(timeout=timeout)
            elif proc.poll() is None:
                time.sleep(delay)
            killed = proc.poll() is None
            if killed:
                proc.send_signal(signal.SIGKILL)
            rc = proc.wait(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if not killed and rc != 0:
            raise RuntimeError(f"replay exited with {rc}")
        return killed, replay_cursor(conn)


def killed_replay(
    db: str, capture: Path, n_lines: int, kills: int, rng: random.Random, batch_size: int
) -> dict[str, Any]:
    """Kill a replay at `kills` random points, restarting each time, then let it finish."""
    targets = sorted(rng.randrange(n_lines // 100, n_lines - n_lines // 10) for _ in range(kills))
    points: list[dict[str, Any]] = []
    started = time.monotonic()
    for target in targets:
        # A target already passed (an earlier run overshot it) becomes a kill after a random delay from start,
        # which may land in start-up or migration: also a point worth surviving.
        delay = rng.uniform(0.0, 0.25)
        with psycopg.connect(db) as conn:
            before = replay_cursor(conn)
        killed, after = _run_until(db, capture, batch_size, target if (before or -1) < target else None, delay)
        points.append(
            {
                "target": target,
                "delay_s": round(delay, 3),
                "cursor_before": before,
                "cursor_after": after,
                "killed": killed,
            }
        )
        if not killed:
            break
    killed_count = sum(1 for p in points if p["killed"])
    _, final_cursor = _run_until(db, capture, batch_size, None, None)
    return {
        "kills": killed_count,
        "kill_points": points,
        "final_cursor": final_cursor,
        "seconds": round(time.monotonic() - started, 1),
    }


def rewound_replay(
    db: str, capture: Path, n_lines: int, rewinds: int, rng: random.Random, batch_size: int
) -> dict[str, Any]:
    """Replay with `rewinds` stops, each followed by moving the committed cursor back to an earlier line, so the
    restarted replay delivers a stretch again."""
    done: list[dict[str, Any]] = []
    source: str | None = None
    for i in range(rewinds):
        target = (i + 1) * n_lines // (rewinds + 1)
        killed, cursor = _run_until(db, capture, batch_size, target, rng.uniform(0.0, 0.3))
        if not killed or cursor is None:
            raise RuntimeError("the replay finished before it could be rewound; use a larger capture")
        back_to = rng.randrange(max(0, cursor - n_lines // 3), max(1, cursor - n_lines // 20))
        with psycopg.connect(db, autocommit=True) as conn:
            row = conn.execute("SELECT source FROM cursors WHERE source LIKE 'replay:%'").fetchone()
            assert row is not None
            source = str(row[0])
            conn.execute("UPDATE cursors SET cursor = %s WHERE source = %s", (back_to, source))
        done.append({"stopped_at": cursor, "rewound_to": back_to, "lines_again": cursor - back_to})
    _, final_cursor = _run_until(db, capture, batch_size, None, None)
    return {"rewinds": done, "final_cursor": final_cursor, "source": source}


def judge(reference: dict[str, Any], got: dict[str, Any], drift: int) -> dict[str, Any]:
    checks = {
        "state_hash": got["state_hash"] == reference["state_hash"],
        "counts": got["counts"] == reference["counts"],
        "log_events": got["log"] == reference["log"],
        "rejections": got["rejections"] == reference["rejections"],
        "count_drift_zero": drift == 0,
    }
    return {
        "equal": all(checks.values()),
        "checks": checks,
        "state_hash": got["state_hash"],
        "log": got["log"],
        "rejections_total": got["rejections"]["total"],
        "count_drift": drift,
    }


def run(
    admin_url: str,
    workdir: Path,
    *,
    events: int,
    kills: int,
    rewinds: int,
    dup_share: float,
    seed: int,
    batch_size: int,
    keep: bool = False,
) -> dict[str, Any]:
    rng = random.Random(seed)
    lines = capture_lines(events, seed=seed)
    capture = write_capture(workdir / f"chaos-{events}-{seed}.jsonl.zst", lines)
    variant = variant_lines(lines, rng, dup_share)
    variant_capture = write_capture(workdir / f"chaos-{events}-{seed}-variant.jsonl.zst", variant)
    dbs: list[str] = []
    try:
        reference_db = fresh_database(admin_url)
        dbs.append(reference_db)
        t0 = time.monotonic()
        cli(reference_db, "replay", str(capture), "--no-progress", "--batch-size", str(batch_size))
        reference_seconds = time.monotonic() - t0
        reference = status(reference_db)

        killed_db = fresh_database(admin_url)
        dbs.append(killed_db)
        killed = killed_replay(killed_db, capture, len(lines), kills, rng, batch_size)
        killed_status = status(killed_db)

        variant_db = fresh_database(admin_url)
        dbs.append(variant_db)
        rewound = rewound_replay(variant_db, variant_capture, len(variant), rewinds, rng, batch_size)
        variant_status = status(variant_db)

        result = {
            "seed": seed,
            "events": events,
            "batch_size": batch_size,
            "reference": {
                "seconds": round(reference_seconds, 1),
                "state_hash": reference["state_hash"],
                "counts": reference["counts"],
                "log": reference["log"],
                "rejections_total": reference["rejections"]["total"],
                "count_drift": count_drift(reference_db),
            },
            "killed": {**killed, **judge(reference, killed_status, count_drift(killed_db))},
            "variant": {
                "lines": len(variant),
                "duplicated_lines": len(variant) - len(lines),
                "dup_share": dup_share,
                **rewound,
                **judge(reference, variant_status, count_drift(variant_db)),
            },
        }
        result["ok"] = bool(result["killed"]["equal"] and result["variant"]["equal"] and killed["kills"] >= kills)
        return result
    finally:
        if not keep:
            for db in dbs:
                with contextlib.suppress(psycopg.Error):
                    drop_database(admin_url, db)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--rewinds", type=int, default=2)
    p.add_argument("--dup-share", type=float, default=0.3)
    p.add_argument("--seed", type=int, default=None, help="default: random (printed in the summary)")
    p.add_argument("--batch-size", type=int, default=5000)
    args = p.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    print(json.dumps({"seed": seed, "events": args.events}), file=sys.stderr, flush=True)
    with postgres_server() as admin, tempfile.TemporaryDirectory(prefix="plyr-chaos-") as tmp:
        started = time.monotonic()
        result = run(
            admin,
            Path(tmp),
            events=args.events,
            kills=args.kills,
            rewinds=args.rewinds,
            dup_share=args.dup_share,
            seed=seed,
            batch_size=args.batch_size,
        )
        result["total_seconds"] = round(time.monotonic() - started, 1)
        result["machine"] = {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        }
    print(json.dumps(result, indent=2))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
