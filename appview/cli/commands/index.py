"""`plyr-appview index`: follow Jetstream (or one raw firehose) into the index, with the background jobs that
keep it whole: introducing actors the stream never named, and periodic reconciliation."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from urllib.parse import urlsplit

from appview.cli.command import EXIT_OK, EXIT_USAGE, Command, CommandError, Interrupted
from appview.cli.runtime import database, run
from appview.cli.stack import batch_writer, sync_stack
from indexer.atproto.identity.did_docs import DidDocuments
from indexer.atproto.identity.handles import ResolvingVerifier, TrustingVerifier
from indexer.atproto.lexicon import Validator
from indexer.capture.bulk import unfolded
from indexer.firehose.source import PREFIX as FIREHOSE_PREFIX
from indexer.firehose.source import FirehoseError, is_firehose_url, parse_firehose_url
from indexer.fold.writer import BatchWriter
from indexer.ingest import follow_firehose, follow_jetstream
from indexer.jetstream.source import parse_endpoint
from indexer.labels.source import follow_labelers
from indexer.metrics import Metrics
from indexer.settings import Settings
from indexer.sync.introduce import introduce_forever

log = logging.getLogger("plyr_appview")


def add_source_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source",
        action="append",
        help="Jetstream URL (repeatable; default: $JETSTREAM_URL), or one firehose:wss://relay (or PDS) URL",
    )


def sources_of(args: argparse.Namespace, settings: Settings) -> list[str]:
    """The sources to follow, each checked: a typo must stop the command, not be retried forever."""
    sources: list[str] = args.source or list(settings.jetstream_urls)
    named = "--source" if args.source else "JETSTREAM_URL"
    if len(sources) > 1 and any(is_firehose_url(s) for s in sources):
        raise CommandError(f"{named}: a firehose source cannot be combined with other sources", status=EXIT_USAGE)
    for source in sources:
        problem = _source_problem(source)
        if problem:
            raise CommandError(
                f"{named} {source!r}: {problem}; give ws(s)://host[/subscribe] (Jetstream v1),"
                " ws(s)://host/xrpc/network.bsky.jetstream.subscribeEvents (v2) or firehose:wss://host",
                status=EXIT_USAGE,
            )
    return sources


def _source_problem(source: str) -> str | None:
    try:
        if is_firehose_url(source):
            parse_firehose_url(source)
        else:
            parse_endpoint(source)
    except (ValueError, FirehoseError) as exc:
        return str(exc)
    text = source.removeprefix(FIREHOSE_PREFIX).strip()
    if "://" not in text:
        # A bare host is taken as wss://host; one without a dot or port that is not loopback is a typo.
        host = urlsplit("//" + text.split("/", 1)[0]).hostname or ""
        if "." not in host and ":" not in text.split("/", 1)[0] and host != "localhost":
            return "not a URL"
    return None


async def index(settings: Settings, url: str, metrics: Metrics, sources: list[str]) -> None:
    if (tail := await unfolded(url)) is not None:
        # Ingest goes on (its events are folded as usual); the index lacks the tail until a rebuild folds it.
        log.warning(
            "the log holds events a bulk replay appended that the index does not show yet: run"
            " `plyr-appview rebuild` (or finish the bulk replay) to fold them",
            extra={"after_id": tail.after_id, "since": tail.since.isoformat()},
        )
    async with batch_writer(settings, url, metrics) as writer, asyncio.TaskGroup() as tg:
        # The stream first: nothing else should delay the connection.
        if is_firehose_url(sources[0]):
            tg.create_task(_follow_firehose(settings, url, writer, metrics, sources[0]))
        else:
            tg.create_task(follow_jetstream(settings, url, writer, metrics, sources))
        if settings.labelers:
            # Moderation labels of the configured labelers, each stream with its own cursor (indexer/labels).
            tg.create_task(
                follow_labelers(
                    url,
                    settings.labelers,
                    plc_url=settings.plc_url,
                    allow_private_hosts=settings.allow_private_hosts,
                    metrics=metrics,
                )
            )
        if settings.resolve_identities:
            tg.create_task(_introduce_actors(settings, url, metrics))
        if settings.reconcile_minutes > 0:
            # Repairs what the stream dropped or marked (rev gaps, #sync, a blind host) within one period.
            tg.create_task(_reconcile_forever(settings, url, metrics))


async def _follow_firehose(settings: Settings, url: str, writer: BatchWriter, metrics: Metrics, source: str) -> None:
    if not settings.verify_signatures:
        await follow_firehose(settings, url, writer, metrics, source, None)
        return
    async with DidDocuments(settings.plc_url, allow_private_hosts=settings.allow_private_hosts) as docs:
        await follow_firehose(settings, url, writer, metrics, source, docs)


async def _reconcile_forever(settings: Settings, url: str, metrics: Metrics) -> None:
    async with sync_stack(settings, url, metrics) as stack:
        await stack.reconciler.run_forever(settings.reconcile_minutes * 60)


async def _introduce_actors(settings: Settings, url: str, metrics: Metrics) -> None:
    # Its own connection: identity batches from here interleave with the stream's batches, and the fold is
    # safe under concurrent writers (row locks; a deadlock is retried like a lost connection).
    async with BatchWriter(url, validator=Validator.load(), metrics=metrics, verifier=TrustingVerifier()) as writer:
        await introduce_forever(
            url, writer, ResolvingVerifier(settings.plc_url, allow_private_hosts=settings.allow_private_hosts)
        )


def _run(args: argparse.Namespace, settings: Settings) -> int:
    sources = sources_of(args, settings)
    # A signal is how a service is told to stop: a clean stop is a success.
    with database(settings) as url, contextlib.suppress(Interrupted):
        run(lambda: index(settings, url, Metrics(), sources))
    return EXIT_OK


COMMAND = Command(add_source_argument, _run)
