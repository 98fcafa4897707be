"""Backfill and resync: whole repos fetched with `com.atproto.sync.getRepo`, checked, and folded through the
batch writer.

Each repo becomes, at its commit's rev:
- a `create` per record of a collection we want (`WANTED`: `fm.plyr.*`, teal.fm plays and statuses) in the
  signed MST (every block checked against its CID), and
- a `delete` per record we hold for that DID that the repo no longer has,
so the fold's "highest rev wins" rule makes the index equal the repo as of that commit, and any stream event
older than it is refused afterwards. The handle the DID document claims is recorded with an identity event
when it differs from ours (the handle verifier of the writer decides whether it counts).

A repo carries no network time per record, so these events have no `time_us` (no `events.event_time`): in the
feeds a backfilled record arrives when it is folded, and sorts by its `createdAt` capped at that moment (see
`SORT_AT` in indexer/fold/collections/projection.py). The commit's rev is not used instead: it is one time for
the whole repo, and the PDS alone vouches for it.

Which repos are to be fetched lives in `repo_sync` (see `indexer/sync/marks.py`): a repo is done once its
events are committed, so a killed backfill resumes with the repos it had not finished.

Fetches are bounded overall (`concurrency`) and per PDS host (`per_host`); writes go through one writer, one
repo per transaction (a bigger repo in several), so a repo is either wholly applied or retried.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import psycopg
from prometheus_client import CollectorRegistry, Counter

from indexer.atproto.identity.did_docs import DidDocuments, DidResolutionError, handle_of
from indexer.atproto.netguard import ForbiddenHost
from indexer.atproto.repo.car import CarError, RepoCar, read_repo_car
from indexer.atproto.repo.signatures import verify_commit_with_key
from indexer.events import OWN_NAMESPACE, Event, Item, Malformed
from indexer.fold.collections import DISCOVERY, WANTED
from indexer.fold.writer import BatchWriter
from indexer.sync import marks

log = logging.getLogger(__name__)

SOURCE: Final = "backfill"
MAX_REPO_BYTES: Final = 1024 * 1024 * 1024


class SyncMetrics:
    """Counters of backfill, resync and reconciliation, on the process's registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = registry or CollectorRegistry()
        self.repos = Counter("plyr_resync_repos", "Repos fetched with getRepo, by result", ["result"], registry=r)
        self.records = Counter("plyr_resync_records", "Records found in fetched repos", registry=r)
        self.deletes = Counter("plyr_resync_deletes", "Records we held that a fetched repo no longer has", registry=r)
        self.reconcile_runs = Counter("plyr_reconcile_runs", "Reconciliation passes", registry=r)
        self.reconcile_repos = Counter(
            "plyr_reconcile_repos", "Repos checked by reconciliation, by outcome", ["outcome"], registry=r
        )


class RepoFailure(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass
class BackfillStats:
    repos: int = 0
    failed: int = 0
    records: int = 0
    deletes: int = 0
    rejected: int = 0
    failures: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "repos": self.repos,
            "failed": self.failed,
            "records": self.records,
            "deletes": self.deletes,
            "rejected": self.rejected,
            "failures": dict(self.failures),
        }


def xrpc(base: str, method: str) -> str:
    return base.rstrip("/") + "/xrpc/" + method


async def get_json(client: httpx.AsyncClient, url: str, params: dict[str, Any]) -> dict[str, Any]:
    try:
        resp = await client.get(url, params=params)
    except ForbiddenHost as e:
        raise RepoFailure("forbidden_host", f"{url}: {e}") from None
    if resp.status_code != 200:
        raise RepoFailure(f"http_{resp.status_code}", f"{url}: {resp.text[:300]}")
    body = resp.json()
    if not isinstance(body, dict):
        raise RepoFailure("invalid_response", f"{url}: not a JSON object")
    return body


async def _paged_dids(client: httpx.AsyncClient, url: str, params: dict[str, Any], *, limit: int) -> AsyncIterator[str]:
    cursor: str | None = None
    seen: set[str] = set()
    while True:
        query = {**params, "limit": limit}
        if cursor:
            query["cursor"] = cursor
        body = await get_json(client, url, query)
        repos = body.get("repos")
        if not isinstance(repos, list):
            raise RepoFailure("invalid_response", f"{url}: no 'repos' list")
        for repo in repos:
            did = repo.get("did") if isinstance(repo, dict) else None
            if isinstance(did, str) and did.startswith("did:") and did not in seen:
                seen.add(did)
                yield did
        nxt = body.get("cursor")
        # A cursor that does not move would page forever.
        if not isinstance(nxt, str) or not nxt or nxt == cursor or not repos:
            return
        cursor = nxt


async def repos_by_collection(
    client: httpx.AsyncClient, relay: str, collections: Sequence[str] = DISCOVERY
) -> AsyncIterator[str]:
    """DIDs holding records of any of `collections`, per the relay's `listReposByCollection`."""
    seen: set[str] = set()
    for collection in collections:
        async for did in _paged_dids(
            client, xrpc(relay, "com.atproto.sync.listReposByCollection"), {"collection": collection}, limit=2000
        ):
            if did not in seen:
                seen.add(did)
                yield did


async def repos_of_pds(client: httpx.AsyncClient, pds: str) -> AsyncIterator[str]:
    """Every repo a PDS hosts (`com.atproto.sync.listRepos`)."""
    async for did in _paged_dids(client, xrpc(pds, "com.atproto.sync.listRepos"), {}, limit=1000):
        yield did


class Backfiller:
    def __init__(
        self,
        conninfo: str,
        writer: BatchWriter,
        docs: DidDocuments,
        *,
        client: httpx.AsyncClient,
        verify: bool = True,
        concurrency: int = 8,
        per_host: int = 2,
        metrics: SyncMetrics | None = None,
        max_repo_bytes: int = MAX_REPO_BYTES,
    ) -> None:
        self._conninfo = conninfo
        self._writer = writer
        self._docs = docs
        self._client = client
        self._verify = verify
        self._concurrency = concurrency
        self._per_host = per_host
        self._hosts: dict[str, asyncio.Semaphore] = {}
        self._write_lock = asyncio.Lock()
        self.metrics = metrics or SyncMetrics()
        self._max_repo_bytes = max_repo_bytes

    async def run_pending(
        self,
        *,
        dids: Sequence[str] | None = None,
        on_start: Callable[[int], None] | None = None,
        on_repo: Callable[[BackfillStats], None] | None = None,
    ) -> BackfillStats:
        """Fetch every pending repo in `repo_sync` (only those of `dids` if given)."""
        async with await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True) as conn:
            todo = await marks.pending(conn, dids=dids)
            if on_start is not None:
                on_start(len(todo))
            stats = BackfillStats()
            queue: asyncio.Queue[str] = asyncio.Queue()
            for did in todo:
                queue.put_nowait(did)

            async def worker() -> None:
                while True:
                    try:
                        did = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        return
                    await self._one(conn, did, stats)
                    if on_repo is not None:
                        on_repo(stats)

            async with asyncio.TaskGroup() as tg:
                for _ in range(max(1, min(self._concurrency, len(todo)))):
                    tg.create_task(worker())
        return stats

    async def _one(self, conn: psycopg.AsyncConnection[Any], did: str, stats: BackfillStats) -> None:
        started_at = await marks.started(conn, did)
        try:
            rev, records, deletes, rejected = await self.sync_repo(conn, did)
        except RepoFailure as e:
            stats.failed += 1
            stats.failures[e.reason] = stats.failures.get(e.reason, 0) + 1
            self.metrics.repos.labels(result=e.reason).inc()
            log.warning("repo fetch failed", extra={"did": did, "reason": e.reason, "detail": e.detail[:500]})
            await marks.failed(conn, did, f"{e.reason}: {e.detail}")
            return
        await marks.done(conn, did, started_at, rev)
        stats.repos += 1
        stats.records += records
        stats.deletes += deletes
        stats.rejected += rejected
        self.metrics.repos.labels(result="ok").inc()
        self.metrics.records.inc(records)
        self.metrics.deletes.inc(deletes)

    def _host_limit(self, url: str) -> asyncio.Semaphore:
        host = urlsplit(url).netloc
        sem = self._hosts.get(host)
        if sem is None:
            sem = self._hosts[host] = asyncio.Semaphore(self._per_host)
        return sem

    async def fetch_car(self, pds: str, did: str) -> bytes:
        url = xrpc(pds, "com.atproto.sync.getRepo")
        async with self._host_limit(pds):
            try:
                async with self._client.stream("GET", url, params={"did": did}) as resp:
                    if resp.status_code != 200:
                        body = (await resp.aread())[:300].decode("utf-8", "replace")
                        raise RepoFailure(f"http_{resp.status_code}", f"getRepo {did} at {pds}: {body}")
                    chunks: list[bytes] = []
                    size = 0
                    async for chunk in resp.aiter_bytes():
                        size += len(chunk)
                        if size > self._max_repo_bytes:
                            raise RepoFailure("repo_too_large", f"{did}: over {self._max_repo_bytes} bytes")
                        chunks.append(chunk)
            except ForbiddenHost as e:
                raise RepoFailure("forbidden_host", f"getRepo {did} at {pds}: {e}") from None
            except httpx.HTTPError as e:
                raise RepoFailure("fetch_failed", f"getRepo {did} at {pds}: {type(e).__name__}: {e}") from None
        return b"".join(chunks)

    async def _check_signature(self, did: str, car: RepoCar) -> None:
        key = await self._docs.signing_key(did)
        if verify_commit_with_key(car.commit.raw, key) is None:
            return
        fresh = await self._docs.signing_key(did, refresh=True)
        reason = verify_commit_with_key(car.commit.raw, fresh)
        if reason is not None:
            raise RepoFailure("invalid_signature", f"{did} commit {car.commit.cid}: {reason}")

    async def sync_repo(self, conn: psycopg.AsyncConnection[Any], did: str) -> tuple[str, int, int, int]:
        """Fetch, check and fold one repo: (rev, records, deletes, rejected)."""
        try:
            doc = await self._docs.resolve(did)
            pds = await self._docs.pds(did)
        except DidResolutionError as e:
            raise RepoFailure(e.reason, e.detail) from None
        data = await self.fetch_car(pds, did)
        try:
            car = await asyncio.to_thread(read_repo_car, data)
            found = await asyncio.to_thread(lambda: list(car.records(WANTED)))
        except CarError as e:
            raise RepoFailure(e.reason, f"{did}: {e.detail}") from None
        if car.commit.did != did:
            raise RepoFailure("did_mismatch", f"getRepo for {did} returned a repo of {car.commit.did}")
        if self._verify:
            try:
                await self._check_signature(did, car)
            except DidResolutionError as e:
                raise RepoFailure(e.reason, e.detail) from None
        rev = car.commit.rev
        items: list[Item] = []
        present: set[tuple[str, str]] = set()
        rejected = 0
        for rec in found:
            present.add((rec.collection, rec.rkey))
            if isinstance(rec.record, Malformed):
                rec.record.source = SOURCE
                items.append(rec.record)
                rejected += 1
                continue
            items.append(
                Event(
                    kind="commit",
                    did=did,
                    source=SOURCE,
                    operation="create",
                    collection=rec.collection,
                    rkey=rec.rkey,
                    rev=rev,
                    cid=rec.cid,
                    record=rec.record,
                )
            )
        cur = await conn.execute("SELECT collection, rkey FROM records WHERE did = %s AND op <> 2", (did,))
        deletes = 0
        for collection, rkey in await cur.fetchall():
            if WANTED(collection) and (collection, rkey) not in present:
                deletes += 1
                items.append(
                    Event(
                        kind="commit",
                        did=did,
                        source=SOURCE,
                        operation="delete",
                        collection=str(collection),
                        rkey=str(rkey),
                        rev=rev,
                    )
                )
        identity = await self._identity(conn, did, doc)
        if identity is not None:
            items.append(identity)
        # Records of our namespace first: a Bluesky profile (which sorts before them in the repo) enters the log
        # only once its author is known (indexer/fold/collections/bsky_profile.py), and the items of a large
        # repo span several batches.
        items.sort(key=lambda it: not (isinstance(it, Event) and (it.collection or "").startswith(OWN_NAMESPACE)))
        async with self._write_lock:
            size = max(1, self._writer.batch_size)
            for start in range(0, len(items), size):
                await self._writer.write(items[start : start + size])
        log.info(
            "repo synced",
            extra={"did": did, "rev": rev, "records": len(found), "deletes": deletes, "rejected": rejected},
        )
        return rev, len(found), deletes, rejected

    async def _identity(self, conn: psycopg.AsyncConnection[Any], did: str, doc: dict[str, Any]) -> Event | None:
        handle = handle_of(doc)
        if handle is None:
            return None
        cur = await conn.execute("SELECT handle FROM actors WHERE did = %s", (did,))
        row = await cur.fetchone()
        if row is not None and row[0] == handle.lower():
            return None
        now = dt.datetime.now(dt.UTC)
        return Event(
            kind="identity",
            did=did,
            source=SOURCE,
            handle=handle,
            time=now.isoformat().replace("+00:00", "Z"),
            time_us=int(now.timestamp() * 1_000_000),
        )
