"""`plyr-appview`: the one command operators and tests use.

Machine-readable output goes to stdout, logs (JSON lines) to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import warnings
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import msgspec

from indexer import logs
from indexer.settings import Settings

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

    idx = sub.add_parser("index", help="follow Jetstream (or a raw firehose) and index fm.plyr.* events")
    idx.add_argument(
        "--source",
        action="append",
        help="Jetstream URL (repeatable; default: $JETSTREAM_URL), or one firehose:wss://relay (or PDS) URL",
    )

    bf = sub.add_parser("backfill", help="fetch whole repos (getRepo) and fold their fm.plyr.* records")
    found = bf.add_mutually_exclusive_group(required=True)
    found.add_argument("--relay", help="relay URL: repos from listReposByCollection")
    found.add_argument("--pds", help="PDS URL: every repo it hosts (listRepos)")
    found.add_argument("--did", action="append", help="a repo's DID (repeatable)")
    bf.add_argument("--concurrency", type=int, default=8, help="repos fetched at once (default 8)")
    bf.add_argument("--per-host", type=int, default=2, help="repos fetched at once from one PDS (default 2)")
    bf.add_argument("--no-progress", action="store_true")

    rs = sub.add_parser("resync", help="fetch the repos marked for resync (rev gaps, #sync, OutdatedCursor, ...)")
    rs.add_argument("--concurrency", type=int, default=8)
    rs.add_argument("--per-host", type=int, default=2)
    rs.add_argument("--no-progress", action="store_true")

    rc = sub.add_parser("reconcile", help="compare known repos with their PDS and resync those behind")
    rc.add_argument("--did", action="append", help="only this repo (repeatable)")

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

    aa = sub.add_parser("audit-audio", help="uploaded audio: dangling references and orphaned objects (JSON)")
    aa.add_argument("--delete-orphans", action="store_true", help="delete orphans older than --older-than")
    aa.add_argument("--older-than", help="grace period before an orphan may be deleted, e.g. 7d, 12h, 3600")
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
    from indexer.atproto.identity.handles import ResolvingVerifier, TrustingVerifier
    from indexer.atproto.lexicon import Validator
    from indexer.fold.writer import BatchWriter

    verifier = (
        ResolvingVerifier(settings.plc_url, allow_private_hosts=settings.allow_private_hosts)
        if settings.resolve_identities
        else TrustingVerifier()
    )
    return BatchWriter(
        url,
        validator=Validator.load(),
        metrics=metrics,
        verifier=verifier,
        batch_size=batch_size or settings.batch_size,
        batch_seconds=settings.batch_seconds,
        own_audio_host=settings.public_host,
    )


@contextlib.asynccontextmanager
async def _sync_stack(
    settings: Settings, url: str, metrics: Any, *, concurrency: int = 8, per_host: int = 2
) -> AsyncIterator[tuple[Any, Any, Any, Any]]:
    """(backfiller, reconciler, DID documents, HTTP client), with a batch writer of their own.

    The yielded client is for hosts the operator names (--relay, --pds). Repos are fetched from the PDS their
    DID document names, which anyone can point anywhere: those requests go through the SSRF guard."""
    import httpx

    from indexer.atproto.identity.did_docs import DidDocuments
    from indexer.atproto.netguard import NetGuard, guarded_client
    from indexer.sync.backfill import Backfiller, SyncMetrics
    from indexer.sync.reconcile import Reconciler

    timeout = httpx.Timeout(60.0, connect=10.0)
    async with (
        httpx.AsyncClient(timeout=timeout, follow_redirects=True) as client,
        guarded_client(NetGuard(allow_private=settings.allow_private_hosts), timeout=timeout) as repo_client,
        DidDocuments(settings.plc_url, client=client, allow_private_hosts=settings.allow_private_hosts) as docs,
        _writer(settings, url, metrics) as writer,
    ):
        sync_metrics = SyncMetrics(metrics.registry)
        backfiller = Backfiller(
            url,
            writer,
            docs,
            client=repo_client,
            verify=settings.verify_signatures,
            concurrency=concurrency,
            per_host=per_host,
            metrics=sync_metrics,
        )
        reconciler = Reconciler(url, backfiller, docs, client=repo_client, metrics=sync_metrics)
        yield backfiller, reconciler, docs, client


async def _index(settings: Settings, url: str, metrics: Any, sources: list[str]) -> None:
    from indexer.firehose.source import is_firehose_url
    from indexer.ingest import follow_jetstream

    firehose = [s for s in sources if is_firehose_url(s)]
    if firehose and len(sources) > 1:
        raise SystemExit("a firehose source cannot be combined with other sources")
    async with _writer(settings, url, metrics) as writer, asyncio.TaskGroup() as tg:
        # The stream first: nothing else should delay the connection.
        if firehose:
            tg.create_task(_follow_firehose(settings, url, writer, metrics, firehose[0]))
        else:
            tg.create_task(follow_jetstream(settings, url, writer, metrics, sources))
        if settings.resolve_identities:
            tg.create_task(_introduce_actors(settings, url, metrics))
        if settings.reconcile_minutes > 0:
            # Repairs what the stream dropped or marked (rev gaps, #sync, a blind host) within one period.
            tg.create_task(_reconcile_forever(settings, url, metrics))


async def _follow_firehose(settings: Settings, url: str, writer: Any, metrics: Any, source: str) -> None:
    from indexer.atproto.identity.did_docs import DidDocuments
    from indexer.ingest import follow_firehose

    if not settings.verify_signatures:
        await follow_firehose(settings, url, writer, metrics, source, None)
        return
    async with DidDocuments(settings.plc_url, allow_private_hosts=settings.allow_private_hosts) as docs:
        await follow_firehose(settings, url, writer, metrics, source, docs)


async def _reconcile_forever(settings: Settings, url: str, metrics: Any) -> None:
    async with _sync_stack(settings, url, metrics) as (_backfiller, reconciler, _docs, _client):
        await reconciler.run_forever(settings.reconcile_minutes * 60)


async def _backfill(settings: Settings, url: str, args: argparse.Namespace) -> dict[str, Any]:
    import psycopg
    from tqdm import tqdm

    from indexer.metrics import Metrics
    from indexer.sync import marks
    from indexer.sync.backfill import repos_by_collection, repos_of_pds

    stack = _sync_stack(settings, url, Metrics(), concurrency=args.concurrency, per_host=args.per_host)
    async with stack as (backfiller, _reconciler, _docs, client):
        dids: list[str] = []
        if args.command == "backfill":
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                if args.did:
                    dids = list(dict.fromkeys(args.did))
                    for did in dids:
                        await marks.mark(conn, did, "backfill")
                else:
                    listing = repos_by_collection(client, args.relay) if args.relay else repos_of_pds(client, args.pds)
                    chunk: list[str] = []
                    async for did in listing:
                        dids.append(did)
                        chunk.append(did)
                        if len(chunk) >= 1000:
                            await marks.discover(conn, chunk)
                            chunk = []
                    await marks.discover(conn, chunk)
            log.info("repos found", extra={"repos": len(dids)})
        bar = tqdm(unit="repo", disable=args.no_progress, file=sys.stderr, desc=args.command, dynamic_ncols=True)

        def on_start(total: int) -> None:
            bar.total = total
            bar.refresh()

        def on_repo(stats: Any) -> None:
            bar.set_postfix(records=stats.records, deletes=stats.deletes, failed=stats.failed, refresh=False)
            bar.update(1)

        stats = await backfiller.run_pending(on_start=on_start, on_repo=on_repo)
        bar.close()
    result: dict[str, Any] = {"listed": len(dids), **stats.as_dict()}
    log.info(f"{args.command} done", extra=result)
    return result


async def _reconcile(settings: Settings, url: str, args: argparse.Namespace) -> dict[str, Any]:
    from indexer.metrics import Metrics

    async with _sync_stack(settings, url, Metrics()) as (_backfiller, reconciler, _docs, _client):
        pending = await reconciler.resync_pending()
        stats = await reconciler.run_once(args.did)
    return {"marked_resynced": pending.as_dict(), **stats.as_dict()}


async def _introduce_actors(settings: Settings, url: str, metrics: Any) -> None:
    from indexer.atproto.identity.handles import ResolvingVerifier, TrustingVerifier
    from indexer.atproto.lexicon import Validator
    from indexer.fold.writer import BatchWriter
    from indexer.sync.introduce import introduce_forever

    # Its own connection: identity batches from here interleave with the stream's batches, and the fold is
    # safe under concurrent writers (row locks; a deadlock is retried like a lost connection).
    async with BatchWriter(url, validator=Validator.load(), metrics=metrics, verifier=TrustingVerifier()) as writer:
        await introduce_forever(
            url, writer, ResolvingVerifier(settings.plc_url, allow_private_hosts=settings.allow_private_hosts)
        )


async def _serve(settings: Settings, url: str, metrics: Any, host: str, port: int) -> None:
    import uvicorn

    from appview.app import create_app
    from appview.settings import AppviewSettings

    app_settings = AppviewSettings.from_env()
    app_settings = msgspec.structs.replace(app_settings, storage=_storage(settings, app_settings.storage))
    app = create_app(url, metrics=metrics, replica_url=settings.database_replica_url, settings=app_settings)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False))
    log.info("serving", extra={"host": host, "port": port})
    serving = asyncio.create_task(server.serve())
    try:
        await asyncio.shield(serving)
    except asyncio.CancelledError:
        # Stop the way uvicorn stops on a signal: finish requests, run the app's shutdown (pool close), exit.
        server.should_exit = True
        await serving
        raise


async def _up(settings: Settings, url: str, sources: list[str], host: str, port: int) -> None:
    from indexer.metrics import Metrics

    metrics = Metrics()
    async with asyncio.TaskGroup() as tg:
        tg.create_task(_index(settings, url, metrics, sources))
        tg.create_task(_serve(settings, url, metrics, host, port))


async def _replay(settings: Settings, url: str, args: argparse.Namespace) -> dict[str, Any]:
    from tqdm import tqdm

    from indexer.capture.replay import count_items, replay_items, replay_source, saved_position
    from indexer.metrics import Metrics

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


def _storage(settings: Settings, storage: Any) -> Any:
    """Audio storage settings; the local directory follows --data-dir unless PLYR_APPVIEW_AUDIO_DIR is set."""
    if os.environ.get("PLYR_APPVIEW_AUDIO_DIR"):
        return storage
    return msgspec.structs.replace(storage, audio_dir=settings.data_dir / "audio")


async def _audit_audio(settings: Settings, url: str, args: argparse.Namespace) -> dict[str, Any]:
    from indexer.audio.audit import audit, parse_duration, to_json
    from indexer.audio.store import StorageSettings, open_store

    grace: float | None = None
    if args.delete_orphans:
        if not args.older_than:
            raise SystemExit("--delete-orphans needs --older-than (an upload precedes the record that uses it)")
        grace = parse_duration(args.older_than)
    async with open_store(_storage(settings, StorageSettings.from_env())) as store:
        result = await audit(url, store, settings.public_host, delete_older_than=grace)
    log.info(
        "audio audit done",
        extra={"dangling": len(result.dangling), "orphans": len(result.orphans), "deleted": len(result.deleted)},
    )
    return to_json(result)


async def _capture(args: argparse.Namespace) -> int:
    from indexer.capture.files import capture, open_capture_writer
    from indexer.jetstream.source import JetstreamSource

    source = JetstreamSource([args.source], start_cursor=args.cursor, rewind_on_start_us=0)
    with open_capture_writer(args.out, "jsonl") as out:
        count = await capture(source.raw(), out, limit=args.limit, duration=args.duration)
    log.info("capture done", extra={"messages": count, "out": str(args.out)})
    return count


def main(argv: list[str] | None = None) -> int:
    # platformdirs (through the embedded server) warns when XDG_RUNTIME_DIR is unset, as it is for services.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
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
        elif cmd in ("backfill", "resync"):
            result = _run(lambda: _backfill(settings, url, args))
            if result is None:
                return 130
            print(json.dumps(result))
        elif cmd == "reconcile":
            result = _run(lambda: _reconcile(settings, url, args))
            if result is None:
                return 130
            print(json.dumps(result))
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

            from indexer.fold.rebuild import rebuild

            bar = tqdm(unit="ev", disable=args.no_progress, file=sys.stderr, desc="rebuild", dynamic_ncols=True)

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.n = done
                bar.refresh()

            folded = _run(lambda: rebuild(url, batch_size=args.batch_size, progress=progress))
            bar.close()
            print(json.dumps({"events": folded}))
        elif cmd == "audit-audio":
            result = _run(lambda: _audit_audio(settings, url, args))
            if result is None:
                return 130
            print(json.dumps(result, indent=2))
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
