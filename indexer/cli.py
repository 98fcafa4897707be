"""`plyr-appview`: the one command operators and tests use.

Machine-readable output goes to stdout, logs (JSON lines) to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import msgspec

from indexer import logs
from indexer.config import Settings

log = logging.getLogger("plyr_appview")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="plyr-appview", description="Network-wide index and XRPC API for fm.plyr")
    p.add_argument("--database-url", help="Postgres URL (default: $DATABASE_URL, else the embedded server)")
    p.add_argument("--data-dir", type=Path, help="data directory (default: $PLYR_APPVIEW_DATA_DIR or ./.plyr-appview)")
    sub = p.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="migrate, then index and serve (the main job)")
    up.add_argument("--source", action="append", help="Jetstream URL (repeatable; default: $JETSTREAM_URL)")
    up.add_argument("--host")
    up.add_argument("--port", type=int)

    sub.add_parser("migrate", help="apply database migrations")

    idx = sub.add_parser("index", help="follow Jetstream and index fm.plyr.* events")
    idx.add_argument("--source", action="append", help="Jetstream URL (repeatable; default: $JETSTREAM_URL)")

    serve = sub.add_parser("serve", help="run the XRPC API alone")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)

    rp = sub.add_parser("replay", help="ingest a capture file (Jetstream JSON lines or raw frames, .zst or not)")
    rp.add_argument("file", type=Path)
    rp.add_argument("--from-start", action="store_true", help="ignore the saved position of this file")
    rp.add_argument("--batch-size", type=int)
    rp.add_argument("--no-progress", action="store_true")

    cap = sub.add_parser("capture", help="record what a source sends to a file")
    cap.add_argument("--source", required=True, help="Jetstream URL")
    cap.add_argument("--out", type=Path, required=True, help="output file (.zst to compress)")
    cap.add_argument("--limit", type=int, help="stop after this many messages")
    cap.add_argument("--duration", type=float, help="stop after this many seconds")
    cap.add_argument("--cursor", type=int, help="start cursor")

    rb = sub.add_parser("rebuild", help="refold the whole event log into fresh projections")
    rb.add_argument("--batch-size", type=int, default=20_000)
    rb.add_argument("--no-progress", action="store_true")

    st = sub.add_parser("status", help="counts, cursors, rejections and the state hash")
    st.add_argument("--json", action="store_true", help="print JSON")

    cv = sub.add_parser("convert", help="convert a raw firehose frame capture to Jetstream v1 JSON lines")
    cv.add_argument("input", type=Path)
    cv.add_argument("output", type=Path)
    return p


@contextlib.contextmanager
def _database(settings: Settings, *, migrate: bool = True) -> Iterator[str]:
    from indexer.db import migrate as migrations
    from indexer.db.embedded import database_url

    with database_url(settings.database_url, settings.data_dir) as url:
        if migrate:
            migrations.upgrade(url)
        yield url


def _run(coro_factory: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    """Run a coroutine; SIGINT/SIGTERM cancel it so context managers (the embedded server) clean up."""

    async def main() -> Any:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, task.cancel)
        return await coro_factory()

    try:
        return asyncio.run(main())
    except asyncio.CancelledError:
        log.info("stopped")
        return None


def _writer(settings: Settings, url: str, metrics: Any, batch_size: int | None = None) -> Any:
    from indexer.fold.writer import BatchWriter
    from indexer.identity import ResolvingVerifier, TrustingVerifier
    from indexer.lexicon import Validator

    verifier = ResolvingVerifier(settings.plc_url) if settings.resolve_identities else TrustingVerifier()
    return BatchWriter(
        url,
        validator=Validator.load(),
        metrics=metrics,
        verifier=verifier,
        batch_size=batch_size or settings.batch_size,
        batch_seconds=settings.batch_seconds,
    )


async def _index(settings: Settings, url: str, metrics: Any, sources: list[str]) -> None:
    from indexer.ingest import follow_jetstream

    async with _writer(settings, url, metrics) as writer, asyncio.TaskGroup() as tg:
        tg.create_task(follow_jetstream(settings, url, writer, metrics, sources))
        if settings.resolve_identities:
            tg.create_task(_introduce_actors(settings, url, metrics))


async def _introduce_actors(settings: Settings, url: str, metrics: Any) -> None:
    from indexer.fold.writer import BatchWriter
    from indexer.handles import introduce_forever
    from indexer.identity import ResolvingVerifier, TrustingVerifier
    from indexer.lexicon import Validator

    # Its own connection: identity batches from here interleave with the stream's batches, and the fold is
    # safe under concurrent writers (row locks; a deadlock is retried like a lost connection).
    async with BatchWriter(url, validator=Validator.load(), metrics=metrics, verifier=TrustingVerifier()) as writer:
        await introduce_forever(url, writer, ResolvingVerifier(settings.plc_url))


async def _serve(settings: Settings, url: str, metrics: Any, host: str, port: int) -> None:
    import uvicorn

    from appview.app import create_app

    app = create_app(url, metrics=metrics, replica_url=settings.database_replica_url)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False))
    log.info("serving", extra={"host": host, "port": port})
    await server.serve()


async def _up(settings: Settings, url: str, sources: list[str], host: str, port: int) -> None:
    from indexer.metrics import Metrics

    metrics = Metrics()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(_index(settings, url, metrics, sources))
        tg.create_task(_serve(settings, url, metrics, host, port))


async def _replay(settings: Settings, url: str, args: argparse.Namespace) -> dict[str, Any]:
    from tqdm import tqdm

    from indexer.metrics import Metrics
    from indexer.replay import count_items, replay_items, replay_source, saved_position

    path: Path = args.file
    source = replay_source(path)
    start = 0 if args.from_start else await saved_position(url, source)
    total = count_items(path)
    bar = tqdm(
        total=total,
        initial=min(start, total),
        unit="ev",
        disable=args.no_progress,
        file=sys.stderr,
        desc=path.name,
        dynamic_ncols=True,
    )

    async with _writer(settings, url, Metrics(), args.batch_size) as writer:
        stats = await writer.run(replay_items(path, source, start, on_position=bar.update))
    bar.n = total
    bar.close()
    result = {
        "source": source,
        "start": start,
        "items": stats.items,
        "appended": stats.appended,
        "rejected": stats.rejected,
        "skipped": stats.skipped,
        "rejections": dict(stats.by_reason),
    }
    log.info("replay done", extra=result)
    return result


async def _capture(args: argparse.Namespace) -> int:
    from indexer.capture_file import capture, open_capture_writer
    from indexer.jetstream.source import JetstreamSource

    source = JetstreamSource([args.source], start_cursor=args.cursor, rewind_on_start_us=0)
    with open_capture_writer(args.out, "jsonl") as out:
        count = await capture(source.raw(), out, limit=args.limit, duration=args.duration)
    log.info("capture done", extra={"messages": count, "out": str(args.out)})
    return count


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = Settings.from_env()
    if args.database_url:
        settings.database_url = args.database_url
    if args.data_dir:
        settings.data_dir = args.data_dir
    logs.configure(settings.log_level)
    cmd = args.command

    if cmd == "convert":
        from indexer.firehose.convert import convert

        stats = convert(args.input, args.output)
        print(json.dumps(msgspec.to_builtins(stats)))
        return 0
    if cmd == "capture":
        _run(lambda: _capture(args))
        return 0

    with _database(settings, migrate=cmd != "status") as url:
        if cmd == "migrate":
            log.info("migrations applied")
        elif cmd == "up":
            sources = args.source or list(settings.jetstream_urls)
            _run(lambda: _up(settings, url, sources, args.host or settings.host, args.port or settings.port))
        elif cmd == "index":
            from indexer.metrics import Metrics

            sources = args.source or list(settings.jetstream_urls)
            _run(lambda: _index(settings, url, Metrics(), sources))
        elif cmd == "serve":
            from indexer.metrics import Metrics

            _run(lambda: _serve(settings, url, Metrics(), args.host or settings.host, args.port or settings.port))
        elif cmd == "replay":
            result = _run(lambda: _replay(settings, url, args))
            if result is None:
                return 130
            print(json.dumps(result))
        elif cmd == "rebuild":
            from tqdm import tqdm

            from indexer.rebuild import rebuild

            bar = tqdm(unit="ev", disable=args.no_progress, file=sys.stderr, desc="rebuild", dynamic_ncols=True)

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.n = done
                bar.refresh()

            folded = _run(lambda: rebuild(url, batch_size=args.batch_size, progress=progress))
            bar.close()
            print(json.dumps({"events": folded}))
        elif cmd == "status":
            from indexer.status import status

            result = _run(lambda: status(url))
            if args.json:
                print(json.dumps(result, indent=2))
            else:
                _print_status(result)
    return 0


def _print_status(result: dict[str, Any]) -> None:
    counts = result["counts"]
    print("visible: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print(f"log: {result['log']['events']} events; rejections: {result['rejections']['total']}")
    for reason, n in result["rejections"]["by_reason"].items():
        print(f"  {reason}: {n}")
    for source, c in result["cursors"].items():
        print(f"cursor {source}: {c['cursor']} (event time {c['event_time']}, committed {c['updated_at']})")
    print(f"state hash: {result['state_hash']}")


if __name__ == "__main__":
    sys.exit(main())
