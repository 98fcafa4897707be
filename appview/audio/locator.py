"""`GET|HEAD /audio/<did>/<rkey>`: a 307 to wherever the track plays from right now.

The record's `audioUrl` wins when the object is really there: for audio uploaded here (`https://<our host>/
audio-files/<sha256>`) that is decided from `audio_objects`, with no request to storage; for another origin we
trust, by a HEAD check (cached). Otherwise the audio blob on the author's PDS; 404 when neither plays.
Redirecting rather than proxying keeps audio bytes off the API servers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
from litestar import Response, route
from litestar.di import NamedDependency
from litestar.enums import HttpMethod
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath

from appview.context import AppContext
from appview.errors import XrpcError
from appview.views import ErrorOutput
from indexer.atproto.identity.resolver import IdentityResolver
from indexer.atproto.lexicon.formats import is_did, is_record_key
from indexer.audio.refs import own_origin, own_sha256

log = logging.getLogger(__name__)

TRACK = "fm.plyr.track"


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


_TRACK_AUDIO = """
SELECT audio_url, audio_blob_cid FROM tracks WHERE did = %s AND rkey = %s AND author_active
"""


@route(
    "/audio/{did:str}/{rkey:str}",
    http_method=[HttpMethod.GET, HttpMethod.HEAD],
    status_code=307,
    responses={
        400: ResponseSpec(data_container=ErrorOutput, description="Not a track address"),
        404: ResponseSpec(data_container=ErrorOutput, description="No such track, or nothing plays"),
    },
)
async def audio(ctx: NamedDependency[AppContext], did: FromPath[str], rkey: FromPath[str]) -> Response[Any]:
    if not is_did(did) or not is_record_key(rkey):
        raise XrpcError("InvalidRequest", "expected /audio/<did>/<rkey>")
    async with ctx.pool.connection() as conn:
        cur = await conn.execute(_TRACK_AUDIO, (did, rkey))
        found = await cur.fetchone()
    if found is None:
        raise XrpcError("NotFound", "track not found", status=404)
    audio_url, blob_cid = found
    sha256 = own_sha256(audio_url, ctx.settings.public_host)
    if sha256 is not None:
        stored = ctx.stored_audio is not None and await ctx.stored_audio.mime_type(sha256) is not None
        target = audio_url if stored else await ctx.audio.locate(did, None, blob_cid)
        if not stored:
            log.info("uploaded audio missing; playing the blob", extra={"did": did, "rkey": rkey, "sha256": sha256})
    else:
        target = await ctx.audio.locate(did, audio_url, blob_cid)
    if target is None:
        raise XrpcError("NotFound", "no playable audio for this track", status=404)
    return Response(
        content=b"",
        status_code=307,
        headers={"Location": target, "Cache-Control": "public, max-age=60"},
    )
