"""PDS commit -> visible track latency through the raw firehose path, against a real local PDS; and replay
throughput, with the batch writer's default settings against the fixed batching window it used to have.

    bash tests/pds/install.sh                       # once: the PDS's npm packages
    uv run python bench/pds_latency_bench.py [--writes 200] [--replay-events 200000] [--rounds 2]

Latency: a local `@atproto/pds` (with its PLC directory) runs on loopback; the firehose source follows it with
signature checks on, into the batch writer, on an embedded Postgres (or `--database-url`). Each write is one
`createRecord` of an fm.plyr.track, one at a time. Three instants are taken per write: the PDS's answer (the
commit is durable and sequenced), the frame's arrival at the source (before it is decoded and its signature
checked), and the first poll (every 2 ms, on a connection of its own) that sees the row in `tracks`, the row
`getTrack` reads. The PDS's share runs from its answer to the frame's arrival (negative when the frame beats
the HTTP answer); ours from the frame's arrival to the row being visible.

Replay: the generated capture of `bench/replay_bench.py`, replayed through the same writer into a fresh
database, timed from the first item read to the last commit; the writers alternate, `--rounds` times each.

Writers compared, in the same run:
- default: `BatchWriter` as `index` builds it with default settings (PLYR_APPVIEW_BATCH_SECONDS=0: a batch is
  committed as soon as the source has nothing more queued; temp tables emptied after each commit);
- default, temp tables emptied at commit: the same batching with the fold's temp tables `ON COMMIT DELETE ROWS`;
- fixed 0.5 s window: the previous behaviour (PLYR_APPVIEW_BATCH_SECONDS=0.5, `ON COMMIT DELETE ROWS`), where
  a batch waited half a second after its first event for company.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.postgres import admin_url  # noqa: E402
from indexer.atproto.identity.did_docs import DidDocuments  # noqa: E402
from indexer.atproto.lexicon import Validator  # noqa: E402
from indexer.db import migrate  # noqa: E402
from indexer.events import Event, Item  # noqa: E402
from indexer.firehose.source import FirehoseSource  # noqa: E402
from indexer.fold.sql import OnCommit  # noqa: E402
from indexer.fold.writer import BatchWriter  # noqa: E402
from indexer.settings import Settings  # noqa: E402
from indexer.sync.marks import RepoMarker  # noqa: E402
from tests.pds.server import running_pds, unavailable  # noqa: E402

DEFAULTS = Settings()


@dataclass(frozen=True)
class Mode:
    name: str
    batch_seconds: float
    on_commit: OnCommit

    def writer(self, db: str, validator: Validator) -> BatchWriter:
        return BatchWriter(
            db,
            validator=validator,
            batch_size=DEFAULTS.batch_size,
            batch_seconds=self.batch_seconds,
            on_commit=self.on_commit,
        )


MODES = {
    "default": Mode("default", DEFAULTS.batch_seconds, "PRESERVE ROWS"),
    "default-delete-rows": Mode("default, temp tables emptied at commit", DEFAULTS.batch_seconds, "DELETE ROWS"),
    "window": Mode("fixed 0.5 s window (previous)", 0.5, "DELETE ROWS"),
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


class StampedSource(FirehoseSource):
    """The firehose source, noting when each frame that yields a track event reached it."""

    arrived: dict[str, float]

    async def handle(self, data: bytes) -> list[Item]:
        at = time.perf_counter()
        items = await super().handle(data)
        for item in items:
            if isinstance(item, Event) and item.collection == "fm.plyr.track":
                self.arrived[f"at://{item.did}/{item.collection}/{item.rkey}"] = at
        return items


@dataclass
class Latencies:
    total: list[float] = field(default_factory=list)
    pds: list[float] = field(default_factory=list)
    ours: list[float] = field(default_factory=list)


async def measure_latency(db: str, writes: int, mode: Mode) -> Latencies:
    out = Latencies()
    async with running_pds() as pds, DidDocuments(pds.plc_url) as docs:
        account = await pds.create_account("bench")
        marker = RepoMarker(db)
        source = StampedSource(f"firehose:ws://127.0.0.1:{pds.port}", docs=docs, marker=marker)
        source.arrived = {}
        async with (
            mode.writer(db, Validator.load()) as writer,
            await psycopg.AsyncConnection.connect(db, autocommit=True) as conn,
        ):
            task = asyncio.create_task(writer.run(source.events()))
            try:
                # The source connects in its own task and exposes no event for it; a short poll is enough here.
                while source.connections == 0:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
                for i in range(writes):
                    record = {"title": f"t{i}", "artist": "b", "fileType": "mp3", "createdAt": "2026-11-23T10:00:00Z"}
                    created = await pds.create(account, "fm.plyr.track", record)
                    answered = time.perf_counter()
                    while True:
                        cur = await conn.execute("SELECT 1 FROM tracks WHERE uri = %s", (created["uri"],))
                        if await cur.fetchone() is not None:
                            break
                        await asyncio.sleep(0.002)
                    visible = time.perf_counter()
                    arrived = source.arrived.pop(created["uri"])
                    out.total.append(visible - answered)
                    out.pds.append(arrived - answered)
                    out.ours.append(visible - arrived)
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                await marker.aclose()
    return out


async def measure_replay(db: str, capture: Path, mode: Mode) -> tuple[int, float]:
    from indexer.capture.replay import replay_items, replay_source

    async with mode.writer(db, Validator.load()) as writer:
        started = time.perf_counter()
        stats = await writer.run(replay_items(capture, replay_source(capture)))
        return stats.items, time.perf_counter() - started


def fresh_db(admin: str, name: str) -> str:
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {name}")
    db = psycopg.conninfo.make_conninfo(admin, dbname=name)
    migrate.upgrade(db)
    return db


def _ms(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return f"{percentile(ms, 0.5):.1f} | {percentile(ms, 0.99):.1f} | {max(ms):.1f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--writes", type=int, default=200, help="createRecord calls per writer (0: no latency run)")
    ap.add_argument("--replay-events", type=int, default=200_000, help="capture length (0: no replay run)")
    ap.add_argument("--rounds", type=int, default=2, help="replays per writer, alternating")
    ap.add_argument("--modes", default="window,default-delete-rows,default", help=f"of {', '.join(MODES)}")
    ap.add_argument("--database-url", default=os.environ.get("PLYR_BENCH_DATABASE_URL"))
    args = ap.parse_args()
    modes = [MODES[m] for m in args.modes.split(",")]
    if args.writes:
        why = unavailable()
        if why:
            raise SystemExit(f"local PDS unavailable: {why}")
    latency: dict[str, Latencies] = {}
    replays: dict[str, list[tuple[int, float]]] = {m.name: [] for m in modes}
    started = time.time()
    load_before = os.getloadavg()
    with admin_url(args.database_url) as admin:
        if args.writes:
            for i, mode in enumerate(modes):
                db = fresh_db(admin, f"bench_pds_latency_{i}")
                latency[mode.name] = asyncio.run(measure_latency(db, args.writes, mode))
                print(f"latency, {mode.name}: done", file=sys.stderr)
        if args.replay_events:
            from bench.replay_bench import make_capture

            capture = make_capture(args.replay_events)
            for r in range(args.rounds):
                for i, mode in enumerate(modes if r % 2 == 0 else modes[::-1]):
                    db = fresh_db(admin, f"bench_latency_replay_{i}")
                    replays[mode.name].append(asyncio.run(measure_replay(db, capture, mode)))
                    print(f"replay {r + 1}, {mode.name}: done", file=sys.stderr)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    load_after = os.getloadavg()
    print(f"# batch writer: commit -> visible latency and replay throughput ({machine})")
    print()
    print(
        f"{time.time() - started:.0f} s in all; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after"
        " (1 min)"
    )
    if latency:
        print()
        print("ms; ours: frame at the source -> row visible; PDS: its answer -> frame at the source; total: both")
        print()
        print(
            "| writer | writes | ours p50 | ours p99 | ours max | PDS p50 | PDS p99 | PDS max |"
            " total p50 | total p99 | total max |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for name, lat in latency.items():
            print(f"| {name} | {len(lat.total)} | {_ms(lat.ours)} | {_ms(lat.pds)} | {_ms(lat.total)} |")
    if args.replay_events:
        print()
        print("| writer | events | seconds per run | events/s per run | mean events/s |")
        print("|---|---:|---:|---:|---:|")
        for name, runs in replays.items():
            rates = [n / s for n, s in runs]
            print(
                f"| {name} | {runs[0][0]:,} | {' / '.join(f'{s:.1f}' for _, s in runs)} |"
                f" {' / '.join(f'{r:,.0f}' for r in rates)} | {statistics.fmean(rates):,.0f} |"
            )


if __name__ == "__main__":
    main()
