"""DID document lookups the API needs: a viewer's signing key (service auth) and an author's PDS (audio
blobs). Behind a protocol so tests and deployments can substitute their own source of DID documents."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Any, Protocol

log = logging.getLogger(__name__)


class IdentityResolver(Protocol):
    async def signing_key(self, did: str, *, fresh: bool = False) -> str | None:
        """The DID's atproto signing key as a `did:key:...` string, or None if it has none."""
        ...

    async def pds_endpoint(self, did: str) -> str | None:
        """The DID's PDS base URL (no trailing slash), or None."""
        ...


class _Entry:
    __slots__ = ("at", "pds", "signing_key")

    def __init__(self, at: float, signing_key: str | None, pds: str | None) -> None:
        self.at = at
        self.signing_key = signing_key
        self.pds = pds


class DidDocumentResolver:
    """Resolves did:plc (via the PLC directory) and did:web documents, with a bounded TTL cache. A failed
    resolution is cached briefly too, so one unreachable DID cannot make every request wait on it."""

    def __init__(
        self,
        plc_url: str = "https://plc.directory",
        *,
        timeout: float = 3.0,
        ttl: float = 600.0,
        failure_ttl: float = 30.0,
        size: int = 50_000,
    ) -> None:
        from atproto_identity.did.resolver import AsyncDidResolver

        self._resolver = AsyncDidResolver(plc_url=plc_url, timeout=timeout)
        self._timeout = timeout
        self._ttl = ttl
        self._failure_ttl = failure_ttl
        self._size = size
        self._cache: OrderedDict[str, _Entry] = OrderedDict()

    async def _lookup(self, did: str, fresh: bool) -> _Entry:
        now = time.monotonic()
        hit = self._cache.get(did)
        if hit is not None and not fresh:
            ttl = self._ttl if (hit.signing_key or hit.pds) else self._failure_ttl
            if now - hit.at < ttl:
                self._cache.move_to_end(did)
                return hit
        entry = _Entry(now, None, None)
        try:
            async with asyncio.timeout(self._timeout * 2):
                doc: Any = await self._resolver.resolve(did, force_refresh=True)
            if doc is not None:
                entry = _Entry(now, doc.get_did_key(), (doc.get_pds_endpoint() or "").rstrip("/") or None)
        except Exception as exc:  # resolution failures read as "no key/no PDS", never as a server error
            log.info("DID resolution failed", extra={"did": did, "error": repr(exc)})
        self._cache[did] = entry
        self._cache.move_to_end(did)
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return entry

    async def signing_key(self, did: str, *, fresh: bool = False) -> str | None:
        return (await self._lookup(did, fresh)).signing_key

    async def pds_endpoint(self, did: str) -> str | None:
        return (await self._lookup(did, False)).pds
