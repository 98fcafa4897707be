"""fm.plyr.getTrack: one track by URI. A supporter-gated track carries its audio for its author and, unlike in
feeds and search, for a signed-in viewer the supporter check proves to support its artist."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.di import NamedDependency

from appview import hydrate, labels, presenters, rules
from appview.context import AppContext
from appview.http import AtUri, not_found, ok, split_at_uri, viewer_of
from appview.views import TrackOutput
from indexer.fold.collections.track import NSID as TRACK

NSID = "fm.plyr.getTrack"


@get(f"/xrpc/{NSID}", responses=ok(TrackOutput), operation_id=NSID)
async def handler(request: Request[Any, Any, Any], ctx: NamedDependency[AppContext], uri: AtUri) -> Response[bytes]:
    viewer = await viewer_of(ctx, request, NSID)
    split_at_uri(uri, TRACK)
    labelers = labels.of_request(request, ctx.settings.labelers)
    async with ctx.pool.connection() as conn:
        # Skeleton: the URI itself.
        found = await hydrate.tracks(conn, [uri], viewer)
        applied = await labels.for_tracks(conn, found.values(), labelers)
    # A direct read shows a track labeled !hide (with its label); only a redacted takedown removes it.
    rows = rules.not_label_hidden(rules.in_order([uri], found), applied, labelers.redact, listed=False)
    # One track, one artist: a signed-in viewer's support is checked here (cached), never on feeds.
    proven = await ctx.gate.proven_artists(viewer, rows)
    shown = presenters.tracks(rows, ctx, viewer, proven)
    if not shown:
        raise not_found("track", uri)
    labels.attach(shown, applied)
    body = TrackOutput(track=shown[0])
    return labels.respond_labeled(request, body, viewer=viewer, max_age=ctx.settings.cache_max_age, labelers=labelers)
