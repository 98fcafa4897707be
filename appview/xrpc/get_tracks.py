"""fm.plyr.getTracks: up to 25 tracks by URI, in the order asked; missing or hidden ones are left out."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from appview.context import AppContext
from appview.hydrate import present_tracks
from appview.views import TracksOutput
from appview.xrpc.common import ok, respond, split_at_uri, viewer_of

NSID = "fm.plyr.getTracks"
MAX_URIS = 25


@get(f"/xrpc/{NSID}", responses=ok(TracksOutput), operation_id=NSID)
async def handler(
    request: Request[Any, Any, Any],
    ctx: NamedDependency[AppContext],
    uris: Annotated[list[str], QueryParameter(min_items=1, max_items=MAX_URIS, description="Track URIs.")],
) -> Response[bytes]:
    viewer = await viewer_of(ctx, request, NSID)
    for uri in uris:
        split_at_uri(uri, "fm.plyr.track")
    wanted = list(dict.fromkeys(uris))
    async with ctx.pool.connection() as conn:
        views = await present_tracks(conn, wanted, viewer=viewer, audio_base=ctx.audio_base, trusted=ctx.audio.trusted)
    return respond(request, TracksOutput(tracks=views), viewer=viewer, max_age=ctx.settings.cache_max_age)
