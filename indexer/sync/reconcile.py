"""Reconciliation: catch what a stream silently dropped (NOTES.md failure 4, the "blind" host).

For each repo we know, the PDS's latest commit (`getLatestCommit`) is compared with the newest rev we hold
for it (the max folded rev of the collections we index, or the rev last fetched or confirmed). A repo whose PDS
is ahead is not necessarily missing anything of ours, since commits of other collections advance its rev too, so
its records of the collections we reconcile (`RECONCILED`: those we index, but for Bluesky's profile) are listed
(`listRecords`) and compared with ours, key and CID; only a repo that differs
is marked "behind" and fetched whole (getRepo, signature checked) through the backfill path. One that
matches is confirmed at that rev, so it is not listed again until it commits something new.

Bluesky's profile is left out of the comparison: a known actor whose profile predates their first record of
ours holds one the log never received, and every such repo would be fetched whole once for it. Profiles come
from the live stream only (and from a repo fetched for another reason, or `plyr-appview backfill --did`).

`run_forever` runs a pass every `interval` seconds inside `index` / `up`, after first fetching any repos the
stream marked (rev gaps, #sync, OutdatedCursor): a dropped event is repaired within one interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import psycopg

from indexer.atproto.identity.did_docs import DidDocuments, DidResolutionError
from indexer.fold.collections import RECONCILED
from indexer.sync import marks
from indexer.sync.backfill import Backfiller, BackfillStats, RepoFailure, SyncMetrics, get_json, xrpc

log = logging.getLogger(__name__)


@dataclass
class ReconcileStats:
    checked: int = 0
    current: int = 0
    confirmed: int = 0
    behind: int = 0
    errors: int = 0
    resynced: int = 0
    resync_failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class Reconciler:
    def __init__(
        self,
        conninfo: str,
        backfiller: Backfiller,
        docs: DidDocuments,
        *,
        client: httpx.AsyncClient,
        metrics: SyncMetrics | None = None,
        concurrency: int = 8,
    ) -> None:
        self._conninfo = conninfo
        self._backfiller = backfiller
        self._docs = docs
        self._client = client
        self.metrics = metrics or backfiller.metrics
        self._sem = asyncio.Semaphore(concurrency)

    async def resync_pending(self) -> BackfillStats:
        return await self._backfiller.run_pending()

    async def run_once(self, dids: Sequence[str] | None = None) -> ReconcileStats:
        stats = ReconcileStats()
        self.metrics.reconcile_runs.inc()
        async with await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True) as conn:
            repos = list(dids) if dids is not None else await marks.known_repos(conn)
            ours = await marks.last_revs(conn, repos)
            behind: list[str] = []

            async def check(did: str) -> None:
                async with self._sem:
                    outcome = await self._check(conn, did, ours.get(did))
                stats.checked += 1
                setattr(stats, outcome, getattr(stats, outcome) + 1)
                self.metrics.reconcile_repos.labels(outcome=outcome).inc()
                if outcome == "behind":
                    behind.append(did)

            async with asyncio.TaskGroup() as tg:
                for did in repos:
                    tg.create_task(check(did))
            for did in behind:
                await marks.mark(conn, did, "behind")
        if behind:
            result = await self._backfiller.run_pending(dids=behind)
            stats.resynced = result.repos
            stats.resync_failed = result.failed
        log.info("reconciliation done", extra=stats.as_dict())
        return stats

    async def _check(self, conn: psycopg.AsyncConnection[Any], did: str, our_rev: str | None) -> str:
        try:
            pds = await self._docs.pds(did)
            latest = await get_json(self._client, xrpc(pds, "com.atproto.sync.getLatestCommit"), {"did": did})
            rev = latest.get("rev")
            if not isinstance(rev, str):
                raise RepoFailure("invalid_response", f"getLatestCommit {did}: no rev")
            if our_rev is not None and rev <= our_rev:
                return "current"
            theirs = await self._list_records(pds, did)
        except (RepoFailure, DidResolutionError, httpx.HTTPError, ValueError) as e:
            log.info("reconciliation could not check repo", extra={"did": did, "error": str(e)[:300]})
            return "errors"
        cur = await conn.execute(
            "SELECT r.collection, r.rkey, e.cid FROM records r JOIN events e ON e.id = r.event_id"
            " WHERE r.did = %s AND r.op <> 2 AND r.collection = ANY(%s)",
            (did, list(RECONCILED)),
        )
        mine = {(str(c), str(k)): (None if cid is None else str(cid)) for c, k, cid in await cur.fetchall()}
        if mine == theirs:
            await marks.confirm_rev(conn, did, rev)
            return "confirmed"
        log.warning(
            "repo behind its PDS",
            extra={"did": did, "our_rev": our_rev, "pds_rev": rev, "ours": len(mine), "theirs": len(theirs)},
        )
        return "behind"

    async def _list_records(self, pds: str, did: str) -> dict[tuple[str, str], str | None]:
        out: dict[tuple[str, str], str | None] = {}
        url = xrpc(pds, "com.atproto.repo.listRecords")
        for collection in RECONCILED:
            cursor: str | None = None
            while True:
                params: dict[str, Any] = {"repo": did, "collection": collection, "limit": 100}
                if cursor:
                    params["cursor"] = cursor
                body = await get_json(self._client, url, params)
                records = body.get("records")
                if not isinstance(records, list):
                    raise RepoFailure("invalid_response", f"listRecords {did} {collection}: no records")
                for rec in records:
                    uri = rec.get("uri") if isinstance(rec, dict) else None
                    if isinstance(uri, str):
                        rkey = uri.rsplit("/", 1)[-1]
                        cid = rec.get("cid")
                        out[(collection, rkey)] = cid if isinstance(cid, str) else None
                nxt = body.get("cursor")
                if not isinstance(nxt, str) or not nxt or nxt == cursor or not records:
                    break
                cursor = nxt
        return out

    async def run_forever(self, interval: float) -> None:
        """Resync marked repos, then reconcile, every `interval` seconds; a failed pass is logged, not fatal."""
        while True:
            await asyncio.sleep(interval)
            try:
                pending = await self.resync_pending()
                if pending.repos or pending.failed:
                    log.info("marked repos resynced", extra=pending.as_dict())
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reconciliation pass failed")
