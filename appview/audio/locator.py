"""Where a track's audio plays from: the record's `audioUrl` when it is on an origin we trust and the object is
really there (a HEAD check, cached), else the audio blob on the author's PDS."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from urllib.parse import urlencode, urlsplit

import httpx

from indexer.atproto.identity.resolver import IdentityResolver
from indexer.audio.refs import own_origin

log = logging.getLogger(__name__)


def origin(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return None
    default = {"https": 443, "http": 80}[parts.scheme]
    host = parts.hostname.lower()
    return f"{parts.scheme}://{host}" if port in (None, default) else f"{parts.scheme}://{host}:{port}"


def is_trusted(url: str, trusted: tuple[str, ...]) -> bool:
    return bool(trusted) and origin(url) in trusted


class AudioLocator:
    def __init__(
        self,
        resolver: IdentityResolver,
        trusted: tuple[str, ...],
        *,
        timeout: float = 2.0,
        ttl: float = 300.0,
        size: int = 20_000,
        own_host: str | None = None,
    ) -> None:
        self._resolver = resolver
        # Normalised like `origin()` so "https://CDN.example:443/" and "https://cdn.example" are one origin.
        # Our own origin (uploaded audio) is always trusted; its objects are checked in `audio_objects`.
        own = (own_origin(own_host),) if own_host else ()
        self.trusted = tuple(dict.fromkeys(o for o in (origin(t) for t in (*trusted, *own)) if o))
        self._timeout = timeout
        self._ttl = ttl
        self._size = size
        self._exists: OrderedDict[str, tuple[float, bool]] = OrderedDict()
        self._client: httpx.AsyncClient | None = None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _object_exists(self, url: str) -> bool:
        now = time.monotonic()
        hit = self._exists.get(url)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout, follow_redirects=True)
        try:
            async with asyncio.timeout(self._timeout):
                resp = await self._client.head(url)
            ok = resp.status_code < 400
        except Exception as exc:  # an unreachable CDN means "does not play from there", not an error
            log.info("audio HEAD check failed", extra={"url": url, "error": repr(exc)})
            ok = False
        self._exists[url] = (now, ok)
        if len(self._exists) > self._size:
            self._exists.popitem(last=False)
        return ok

    async def locate(self, did: str, audio_url: str | None, blob_cid: str | None) -> str | None:
        if audio_url and is_trusted(audio_url, self.trusted) and await self._object_exists(audio_url):
            return audio_url
        if blob_cid:
            pds = await self._resolver.pds_endpoint(did)
            if pds:
                return f"{pds}/xrpc/com.atproto.sync.getBlob?{urlencode({'did': did, 'cid': blob_cid})}"
        return None
