"""fm.plyr.getTrack: one track by URI."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.di import NamedDependency

from appview.context import AppContext
from appview.errors import XrpcError
from appview.hydrate import present_tracks
from appview.views import TrackOutput
from appview.xrpc.common import AtUri, ok, respond, split_at_uri, viewer_of

NSID = "fm.plyr.getTrack"


@get(f"/xrpc/{NSID}", responses=ok(TrackOutput), operation_id=NSID)
async def handler(request: Request[Any, Any, Any], ctx: NamedDependency[AppContext], uri: AtUri) -> Response[bytes]:
    viewer = await viewer_of(ctx, request, NSID)
    split_at_uri(uri, "fm.plyr.track")
    async with ctx.pool.connection() as conn:
        # skeleton: the URI itself
        views = await present_tracks(conn, [uri], viewer=viewer, audio_base=ctx.audio_base, trusted=ctx.audio.trusted)
    if not views:
        raise XrpcError("NotFound", f"track not found: {uri}", status=404)
    return respond(request, TrackOutput(track=views[0]), viewer=viewer, max_age=ctx.settings.cache_max_age)
