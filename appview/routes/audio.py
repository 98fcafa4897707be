"""`GET|HEAD /audio/<did>/<rkey>`: a 307 to wherever the track plays from right now.

The record's `audioUrl` wins when the object is really there: for audio uploaded here (`https://<our host>/
audio-files/<sha256>`) that is decided from `audio_objects`, with no request to storage; for another origin we
trust, by a HEAD check (appview/audio/locator.py). Otherwise the audio blob on the author's PDS; 404 when
neither plays. Redirecting rather than proxying keeps audio bytes off the API servers."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Response, route
from litestar.di import NamedDependency
from litestar.enums import HttpMethod
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath

from appview.context import AppContext
from appview.http import XrpcError
from appview.views import ErrorOutput
from indexer.atproto.syntax import is_did, is_record_key
from indexer.audio.refs import own_sha256

log = logging.getLogger(__name__)

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
        stored = await ctx.stored_audio.mime_type(sha256) is not None
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
