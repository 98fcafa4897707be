"""The pieces of the indexer the ingest commands wire, built from the settings: the batch writer, and the sync
stack (backfill and reconcile with the clients they fetch through). Typed, so each command reads as its wiring."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx

from indexer.atproto.identity.did_docs import DidDocuments
from indexer.atproto.netguard import NetGuard, guarded_client
from indexer.fold.writer import BatchWriter
from indexer.metrics import Metrics
from indexer.settings import Settings
from indexer.sync.backfill import Backfiller, SyncMetrics
from indexer.sync.reconcile import Reconciler


def batch_writer(
    settings: Settings, url: str, metrics: Metrics, batch_size: int | None = None, *, fold: bool = True
) -> BatchWriter:
    """The writer live sources, replays and backfills fold through (`fold=False`: a bulk replay's, which only
    appends to the log: indexer/capture/bulk.py)."""
    return BatchWriter.configured(settings, url, metrics=metrics, batch_size=batch_size, fold=fold)


@dataclass(frozen=True)
class SyncStack:
    backfiller: Backfiller
    reconciler: Reconciler
    docs: DidDocuments
    # For hosts the operator names (--relay, --pds); repos are fetched through the SSRF guard instead.
    client: httpx.AsyncClient


@contextlib.asynccontextmanager
async def sync_stack(
    settings: Settings, url: str, metrics: Metrics, *, concurrency: int = 8, per_host: int = 2
) -> AsyncIterator[SyncStack]:
    """Backfill and reconcile, with a batch writer of their own.

    Repos are fetched from the PDS their DID document names, which anyone can point anywhere: those requests go
    through the SSRF guard. Hosts the operator names are not second-guessed."""
    timeout = httpx.Timeout(60.0, connect=10.0)
    async with (
        httpx.AsyncClient(timeout=timeout, follow_redirects=True) as client,
        guarded_client(NetGuard(allow_private=settings.allow_private_hosts), timeout=timeout) as repo_client,
        DidDocuments(settings.plc_url, client=client, allow_private_hosts=settings.allow_private_hosts) as docs,
        batch_writer(settings, url, metrics) as writer,
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
        yield SyncStack(backfiller, reconciler, docs, client)
