"""`GET|HEAD /audio/<did>/<rkey>`: a 307 to wherever the track plays from right now.

The record's `audioUrl` wins when the object is really there: for audio uploaded here (`<our origin>/
audio-files/<sha256>`) that is decided from `audio_objects`, with no request to storage; for another origin we
trust, by a HEAD check (appview/audio/locator.py). Otherwise the audio blob on the author's PDS; 404 when
neither plays. Redirecting rather than proxying keeps audio bytes off the API servers.

A supporter-gated track (`supportGate` in its record) is played only for a request signed (service auth, lxm
`fm.plyr.getAudio`) by its author or by a viewer the supporter check proves to support its author
(appview/audio/gate.py); anyone else gets an XRPC error saying why (appview/rules.py `gate_refusal`) and no
redirect of any kind, the blob on the PDS included. Its redirect is private: no shared cache may keep it."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response, route
from litestar.di import NamedDependency
from litestar.enums import HttpMethod
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath

from appview import rules
from appview.audio.gate import AUDIO_LXM, gate_type
from appview.context import AppContext
from appview.http import XrpcError
from appview.views import ErrorOutput
from indexer.atproto.syntax import is_did, is_record_key
from indexer.audio.refs import own_sha256

log = logging.getLogger(__name__)

_TRACK_AUDIO = """
SELECT t.audio_url, t.audio_blob_cid, (e.record->'supportGate')::text
FROM tracks t JOIN events e ON e.id = t.event_id
WHERE t.did = %s AND t.rkey = %s AND t.author_active
"""
_PUBLIC = "public, max-age=60"

# How gated audio is refused (appview/rules.py `gate_refusal`), for the API page of both audio routes.
GATE_RESPONSES = {
    401: ResponseSpec(data_container=ErrorOutput, description="`AuthRequired` (gated audio: no token) or a bad token"),
    403: ResponseSpec(data_container=ErrorOutput, description="`SupporterRequired` or `UnsupportedGate` (gated audio)"),
    501: ResponseSpec(data_container=ErrorOutput, description="`SupporterCheckUnavailable`: no supporter check here"),
    503: ResponseSpec(data_container=ErrorOutput, description="`SupporterCheckFailed`: the check did not answer"),
}


async def admit_gated(ctx: AppContext, request: Request[Any, Any, Any], artist: str, support_gate: str) -> None:
    """Raises the XRPC error that refuses a gated track's audio to this request, unless it is signed by the
    artist or by a proven supporter. The token is read only here: ungated audio needs none."""
    viewer = await ctx.auth.viewer(request.headers.get("authorization"), AUDIO_LXM)
    proof = await ctx.gate.proof(viewer, artist, support_gate)
    refusal = rules.gate_refusal(proof)
    if refusal is not None:
        log.info("gated audio refused", extra={"did": artist, "viewer": viewer, "proof": proof})
        raise refusal


@route(
    "/audio/{did:str}/{rkey:str}",
    http_method=[HttpMethod.GET, HttpMethod.HEAD],
    status_code=307,
    responses={
        400: ResponseSpec(data_container=ErrorOutput, description="Not a track address"),
        404: ResponseSpec(data_container=ErrorOutput, description="No such track, or nothing plays"),
        **GATE_RESPONSES,
    },
)
async def audio(
    request: Request[Any, Any, Any], ctx: NamedDependency[AppContext], did: FromPath[str], rkey: FromPath[str]
) -> Response[Any]:
    if not is_did(did) or not is_record_key(rkey):
        raise XrpcError("InvalidRequest", "expected /audio/<did>/<rkey>")
    async with ctx.pool.connection() as conn:
        cur = await conn.execute(_TRACK_AUDIO, (did, rkey))
        found = await cur.fetchone()
    if found is None:
        raise XrpcError("NotFound", "track not found", status=404)
    audio_url, blob_cid, support_gate = found
    gated = gate_type(support_gate) is not None
    if gated:
        await admit_gated(ctx, request, did, support_gate)
    sha256 = own_sha256(audio_url, ctx.settings.public_origin)
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
        headers={"Location": target, **(rules.PRIVATE if gated else {"Cache-Control": _PUBLIC})},
    )
