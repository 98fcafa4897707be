"""DID document lookups the API needs: a viewer's signing key (service auth) and an author's PDS (audio
blobs). Behind a protocol so tests and deployments can substitute their own source of DID documents; the default
is the same cached resolver the indexer uses (indexer.atproto.identity.did_docs)."""

from __future__ import annotations

from typing import Protocol

from indexer.atproto.identity.did_docs import DidDocuments, DidResolutionError


class IdentityResolver(Protocol):
    async def signing_key(self, did: str, *, fresh: bool = False) -> str | None:
        """The DID's atproto signing key as a `did:key:...` string, or None if it has none."""
        ...

    async def pds_endpoint(self, did: str) -> str | None:
        """The DID's PDS base URL (no trailing slash), or None."""
        ...


class DidDocumentResolver:
    """`IdentityResolver` over a `DidDocuments` cache. Resolution failures read as "no key / no PDS": a request
    naming an unresolvable DID gets a clear 4xx, never a server error."""

    def __init__(self, docs: DidDocuments) -> None:
        self._docs = docs

    async def signing_key(self, did: str, *, fresh: bool = False) -> str | None:
        try:
            return await self._docs.signing_key(did, refresh=fresh)
        except DidResolutionError:
            return None

    async def pds_endpoint(self, did: str) -> str | None:
        try:
            return await self._docs.pds(did)
        except DidResolutionError:
            return None

    async def aclose(self) -> None:
        await self._docs.aclose()
