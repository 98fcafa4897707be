"""Handle verification for identity events.

A handle counts only if both directions agree: the DID document claims it (alsoKnownAs) and the handle
resolves (DNS TXT `_atproto` or `/.well-known/atproto-did`) back to the DID. The verified result is written
into the event log, so replays and `rebuild` reproduce it without touching the network.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Protocol

from indexer.atproto.identity.did_docs import DidDocuments, DidResolutionError, handle_of
from indexer.atproto.syntax import is_handle

log = logging.getLogger(__name__)


class HandleVerifier(Protocol):
    async def verify(self, did: str, handle: str | None) -> str | None:
        """The handle to record for `did`: `handle` (normalized) if verified, else None."""
        ...


class TrustingVerifier:
    """PLYR_APPVIEW_RESOLVE_IDENTITIES=0 (offline replays, tests): take the event's handle as is."""

    async def verify(self, did: str, handle: str | None) -> str | None:
        return handle.lower() if handle and is_handle(handle) else None


HandleResolver = Callable[[str], Awaitable[str | None]]


class ResolvingVerifier:
    """Documents come from the shared DID document cache (PLC directory or did:web,
    indexer.atproto.identity.did_docs); handles resolve with the `atproto` SDK (DNS TXT, then HTTPS
    well-known). `resolve_handle` can be replaced, e.g. for a private DNS setup."""

    def __init__(
        self,
        plc_url: str = "https://plc.directory",
        *,
        timeout: float = 5.0,
        concurrency: int = 16,
        cache_size: int = 100_000,
        cache_ttl: float = 3600.0,
        resolve_handle: HandleResolver | None = None,
        docs: DidDocuments | None = None,
        allow_private_hosts: bool = False,
    ) -> None:
        from atproto_identity.handle.resolver import AsyncHandleResolver

        self._docs = docs or DidDocuments(plc_url, timeout=timeout, allow_private_hosts=allow_private_hosts)
        self._resolve_handle = resolve_handle or AsyncHandleResolver(timeout=timeout).resolve
        self._timeout = timeout
        self._sem = asyncio.Semaphore(concurrency)
        self._cache: OrderedDict[tuple[str, str], tuple[float, str | None]] = OrderedDict()
        self._cache_size = cache_size
        self._cache_ttl = cache_ttl

    async def verify(self, did: str, handle: str | None) -> str | None:
        if not handle or not is_handle(handle):
            return None
        handle = handle.lower()
        key = (did, handle)
        hit = self._cache.get(key)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self._cache_ttl:
            self._cache.move_to_end(key)
            return hit[1]
        result = await self._verify_uncached(did, handle)
        self._cache[key] = (now, result)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return result

    async def document_handle(self, did: str) -> str | None:
        """The handle a DID document claims (not yet verified), or None."""
        async with self._sem:
            try:
                async with asyncio.timeout(self._timeout * 2):
                    doc = await self._docs.resolve(did)
            except (DidResolutionError, TimeoutError) as exc:  # unresolvable: nothing to claim
                log.info("DID resolution failed", extra={"did": did, "error": repr(exc)})
                return None
        return handle_of(doc)

    async def _verify_uncached(self, did: str, handle: str) -> str | None:
        async with self._sem:
            try:
                async with asyncio.timeout(self._timeout * 2):
                    # An identity event means the document may have just changed: skip the cache.
                    doc = await self._docs.resolve(did, refresh=True)
                    if (handle_of(doc) or "").lower() != handle:
                        log.info("handle not claimed by DID document", extra={"did": did, "handle": handle})
                        return None
                    resolved = await self._resolve_handle(handle)
            except Exception as exc:  # any resolution failure means "not verified", never a crash
                log.info("handle verification failed", extra={"did": did, "handle": handle, "error": repr(exc)})
                return None
        if resolved != did:
            log.info("handle resolves elsewhere", extra={"did": did, "handle": handle, "resolved": resolved})
            return None
        return handle
