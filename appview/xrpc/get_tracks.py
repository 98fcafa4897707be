"""fm.plyr.getTracks: up to 25 tracks by URI, in the order asked; missing or hidden ones are left out."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from appview import hydrate, labels, presenters, rules
from appview.context import AppContext
from appview.http import ok, split_at_uri, viewer_of
from appview.views import TracksOutput
from indexer.fold.collections.track import NSID as TRACK

NSID = "fm.plyr.getTracks"
MAX_URIS = 25

Uris = Annotated[list[str], QueryParameter(min_items=1, max_items=MAX_URIS, description="Track URIs.")]


@get(f"/xrpc/{NSID}", responses=ok(TracksOutput), operation_id=NSID)
async def handler(request: Request[Any, Any, Any], ctx: NamedDependency[AppContext], uris: Uris) -> Response[bytes]:
    viewer = await viewer_of(ctx, request, NSID)
    for uri in uris:
        split_at_uri(uri, TRACK)
    # Skeleton: the URIs asked for, each once.
    wanted = list(dict.fromkeys(uris))
    labelers = labels.of_request(request, ctx.settings.labelers)
    async with ctx.pool.connection() as conn:
        found = await hydrate.tracks(conn, wanted, viewer)
        applied = await labels.for_tracks(conn, found.values(), labelers)
    rows = rules.not_label_hidden(rules.in_order(wanted, found), applied, labelers.redact, listed=False)
    tracks = presenters.tracks(rows, ctx, viewer)
    labels.attach(tracks, applied)
    return labels.respond_labeled(
        request, TracksOutput(tracks=tracks), viewer=viewer, max_age=ctx.settings.cache_max_age, labelers=labelers
    )
