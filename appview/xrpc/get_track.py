"""fm.plyr.getTrack: one track by URI."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.di import NamedDependency

from appview import hydrate, presenters, rules
from appview.context import AppContext
from appview.http import AtUri, not_found, ok, respond, split_at_uri, viewer_of
from appview.views import TrackOutput
from indexer.fold.collections.track import NSID as TRACK

NSID = "fm.plyr.getTrack"


@get(f"/xrpc/{NSID}", responses=ok(TrackOutput), operation_id=NSID)
async def handler(request: Request[Any, Any, Any], ctx: NamedDependency[AppContext], uri: AtUri) -> Response[bytes]:
    viewer = await viewer_of(ctx, request, NSID)
    split_at_uri(uri, TRACK)
    async with ctx.pool.connection() as conn:
        # Skeleton: the URI itself.
        found = await hydrate.tracks(conn, [uri], viewer)
    shown = presenters.tracks(rules.in_order([uri], found), ctx, viewer)
    if not shown:
        raise not_found("track", uri)
    return respond(request, TrackOutput(track=shown[0]), viewer=viewer, max_age=ctx.settings.cache_max_age)
