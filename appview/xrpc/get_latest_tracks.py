"""fm.plyr.getLatestTracks: the network-wide discovery feed, newest first."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.di import NamedDependency

from appview import hydrate, labels, presenters, rules
from appview.context import AppContext
from appview.http import DEFAULT_LIMIT, Cursor, Limit, Position, next_cursor, ok, unpack, viewer_of
from appview.hydrate import Skeleton, TrackRows
from appview.views import TrackPageOutput

NSID = "fm.plyr.getLatestTracks"

# Walks tracks_sort_idx backwards, whole rows (hydrate.page).
SKELETON = """
SELECT * FROM tracks
WHERE author_active{after}
ORDER BY sort_at DESC, cid DESC
LIMIT %(limit)s
"""


def skeleton(position: Position | None, limit: int) -> Skeleton:
    after, params = hydrate.keyset(position)
    return TrackRows(SKELETON.format(after=after), {**params, "limit": limit})


@get(f"/xrpc/{NSID}", responses=ok(TrackPageOutput), operation_id=NSID)
async def handler(
    request: Request[Any, Any, Any],
    ctx: NamedDependency[AppContext],
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response[bytes]:
    viewer = await viewer_of(ctx, request, NSID)
    walk = skeleton(unpack(cursor), limit)
    labelers = labels.of_request(request, ctx.settings.labelers)
    async with ctx.pool.connection() as conn:
        rows = await hydrate.page_rows(conn, walk, viewer)
        applied = await labels.for_tracks(conn, rows, labelers)
    shown = rules.not_label_hidden(rules.visible(rows), applied, labelers.redact, listed=True)
    tracks = presenters.tracks(shown, ctx, viewer)
    labels.attach(tracks, applied)
    body = TrackPageOutput(tracks=tracks, cursor=next_cursor(rows, limit))
    return labels.respond_labeled(request, body, viewer=viewer, max_age=ctx.settings.cache_max_age, labelers=labelers)
