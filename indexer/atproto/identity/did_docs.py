"""DID documents for commit signatures and for finding a repo's PDS: PLC (`PLC_URL`) and did:web, cached.

Signature checks run on every commit frame with `fm.plyr.*` ops, so the signing key must come from memory;
a document is fetched once per DID per `ttl` seconds, and again on demand when a signature fails (the key may
have been rotated since it was cached).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections import OrderedDict
from typing import Any
from urllib.parse import quote

import httpx

from indexer.atproto.netguard import ForbiddenHost, NetGuard, guarded_client
from indexer.atproto.repo.signatures import SigningKeyError, parse_signing_key

log = logging.getLogger(__name__)

MAX_DOC_BYTES = 256 * 1024


class DidResolutionError(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _loopback_host(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def did_web_url(did: str) -> str:
    """The document URL of a did:web (host, optional percent-encoded port, optional path)."""
    rest = did[len("did:web:") :]
    if not rest:
        raise DidResolutionError("invalid_did", did)
    parts = rest.split(":")
    host = parts[0].replace("%3A", ":").replace("%3a", ":")
    # did:web mandates https; a loopback host is a local test setup, reachable only over plain http.
    scheme = "http" if _loopback_host(host) else "https"
    if len(parts) == 1:
        return f"{scheme}://{host}/.well-known/did.json"
    return f"{scheme}://{host}/" + "/".join(parts[1:]) + "/did.json"


def pds_endpoint(doc: dict[str, Any]) -> str | None:
    """The `#atproto_pds` service endpoint of a DID document, without a trailing slash."""
    services = doc.get("service")
    if not isinstance(services, list):
        return None
    did = doc.get("id")
    for service in services:
        if not isinstance(service, dict):
            continue
        if service.get("id") not in ("#atproto_pds", f"{did}#atproto_pds"):
            continue
        endpoint = service.get("serviceEndpoint")
        if isinstance(endpoint, str) and endpoint.startswith(("https://", "http://")):
            return endpoint.rstrip("/")
    return None


def handle_of(doc: dict[str, Any]) -> str | None:
    """The handle the document claims (first `at://` alias); unverified."""
    aliases = doc.get("alsoKnownAs")
    if not isinstance(aliases, list):
        return None
    for alias in aliases:
        if isinstance(alias, str) and alias.startswith("at://"):
            return alias[len("at://") :]
    return None


class DidDocuments:
    """An async, size-bounded TTL cache of DID documents. One in-flight fetch per DID.

    The PLC directory is the operator's choice and is fetched with `client`. A did:web names its own host, so
    its document is fetched through a guarded client of our own (indexer.atproto.netguard): private, loopback and
    link-local hosts are refused unless `allow_private_hosts` (development and tests)."""

    def __init__(
        self,
        plc_url: str = "https://plc.directory",
        *,
        client: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
        ttl: float = 3600.0,
        failure_ttl: float = 30.0,
        cache_size: int = 200_000,
        allow_private_hosts: bool = False,
    ) -> None:
        self.plc_url = plc_url.rstrip("/")
        self._client = client or httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        self._own_client = client is None
        self._guard = NetGuard(allow_private=allow_private_hosts)
        self._web_client = guarded_client(self._guard, timeout=timeout)
        self._ttl = ttl
        self._size = cache_size
        self._docs: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()
        self._keys: dict[str, str] = {}
        self._inflight: dict[str, asyncio.Task[dict[str, Any]]] = {}
        # A failed resolution is remembered briefly, so input naming an unresolvable DID over and over (forged
        # tokens, junk frames) cannot turn into a fetch per request.
        self._failure_ttl = failure_ttl
        self._failures: OrderedDict[str, tuple[float, DidResolutionError]] = OrderedDict()
        self.fetches = 0

    async def aclose(self) -> None:
        await self._web_client.aclose()
        if self._own_client:
            await self._client.aclose()

    async def __aenter__(self) -> DidDocuments:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def cached_key(self, did: str) -> str | None:
        hit = self._docs.get(did)
        if hit is None or time.monotonic() - hit[0] >= self._ttl:
            return None
        return self._keys.get(did)

    async def resolve(self, did: str, *, refresh: bool = False) -> dict[str, Any]:
        """The DID document; raises DidResolutionError."""
        now = time.monotonic()
        if not refresh:
            hit = self._docs.get(did)
            if hit is not None and now - hit[0] < self._ttl:
                self._docs.move_to_end(did)
                return hit[1]
            failed = self._failures.get(did)
            if failed is not None and now - failed[0] < self._failure_ttl:
                raise failed[1]
        task = self._inflight.get(did)
        if task is None:
            task = asyncio.create_task(self._fetch(did))
            self._inflight[did] = task
            task.add_done_callback(lambda _t: self._inflight.pop(did, None))
        try:
            return await asyncio.shield(task)
        except DidResolutionError as e:
            self._failures[did] = (time.monotonic(), e)
            self._failures.move_to_end(did)
            while len(self._failures) > self._size:
                self._failures.popitem(last=False)
            raise

    async def signing_key(self, did: str, *, refresh: bool = False) -> str:
        """The `did:key` of the DID's atproto signing key; raises DidResolutionError."""
        if not refresh and (key := self.cached_key(did)) is not None:
            return key
        await self.resolve(did, refresh=refresh)
        key = self._keys.get(did)
        if key is None:
            raise DidResolutionError("no_signing_key", f"{did} has no usable #atproto key")
        return key

    async def pds(self, did: str) -> str:
        doc = await self.resolve(did)
        endpoint = pds_endpoint(doc)
        if endpoint is None:
            raise DidResolutionError("no_pds", f"{did} names no #atproto_pds service")
        return endpoint

    async def _fetch(self, did: str) -> dict[str, Any]:
        client = self._client
        if did.startswith("did:plc:"):
            url = f"{self.plc_url}/{quote(did, safe=':')}"
        elif did.startswith("did:web:"):
            url = did_web_url(did)
            client = self._web_client
            try:
                self._guard.check_url(url)
            except ForbiddenHost as e:
                raise DidResolutionError("forbidden_host", f"{url}: {e}") from None
        else:
            raise DidResolutionError("unsupported_did", did[:200])
        self.fetches += 1
        try:
            resp = await client.get(url, headers={"accept": "application/did+ld+json, application/json"})
        except ForbiddenHost as e:
            raise DidResolutionError("forbidden_host", f"{url}: {e}") from None
        except httpx.HTTPError as e:
            raise DidResolutionError("did_unreachable", f"{url}: {type(e).__name__}: {e}") from None
        except (httpx.InvalidURL, UnicodeError) as e:  # a host httpx cannot even encode: the DID is malformed
            raise DidResolutionError("invalid_did", f"{url}: {e}") from None
        if resp.status_code == 404 or resp.status_code == 410:
            raise DidResolutionError("did_not_found", f"{url}: HTTP {resp.status_code}")
        if resp.status_code != 200:
            raise DidResolutionError("did_unreachable", f"{url}: HTTP {resp.status_code}")
        if len(resp.content) > MAX_DOC_BYTES:
            raise DidResolutionError("invalid_did_doc", f"{url}: document over {MAX_DOC_BYTES} bytes")
        try:
            doc = resp.json()
        except ValueError:
            raise DidResolutionError("invalid_did_doc", f"{url}: not JSON") from None
        if not isinstance(doc, dict) or doc.get("id") != did:
            raise DidResolutionError("invalid_did_doc", f"{url}: document id is not {did}")
        try:
            self._keys[did] = parse_signing_key(doc)
        except SigningKeyError as e:
            self._keys.pop(did, None)
            log.info("DID document without a usable signing key", extra={"did": did, "reason": e.reason})
        self._docs[did] = (time.monotonic(), doc)
        self._docs.move_to_end(did)
        self._failures.pop(did, None)
        while len(self._docs) > self._size:
            old, _ = self._docs.popitem(last=False)
            self._keys.pop(old, None)
        return doc
