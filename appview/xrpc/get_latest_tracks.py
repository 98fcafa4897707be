"""fm.plyr.getLatestTracks: the network-wide discovery feed, newest first."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.di import NamedDependency

from appview import cursor as keyset
from appview.context import AppContext
from appview.hydrate import present_tracks
from appview.views import TrackPageOutput
from appview.xrpc.common import DEFAULT_LIMIT, Cursor, Limit, after, ok, respond, viewer_of

NSID = "fm.plyr.getLatestTracks"

# Walks tracks_sort_idx backwards.
SKELETON = """
SELECT uri, sort_at, cid FROM tracks
WHERE author_active{after}
ORDER BY sort_at DESC, cid DESC
LIMIT %(limit)s
"""


@get(f"/xrpc/{NSID}", responses=ok(TrackPageOutput), operation_id=NSID)
async def handler(
    request: Request[Any, Any, Any],
    ctx: NamedDependency[AppContext],
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response[bytes]:
    viewer = await viewer_of(ctx, request, NSID)
    clause, params = after(keyset.unpack(cursor))
    async with ctx.pool.connection() as conn:
        cur = await conn.execute(SKELETON.format(after=clause), {**params, "limit": limit})
        skeleton = await cur.fetchall()
        views = await present_tracks(
            conn, [r[0] for r in skeleton], viewer=viewer, audio_base=ctx.audio_base, trusted=ctx.audio.trusted
        )
    next_cursor = keyset.pack(skeleton[-1][1], skeleton[-1][2]) if len(skeleton) == limit else None
    body = TrackPageOutput(tracks=views, cursor=next_cursor)
    return respond(request, body, viewer=viewer, max_age=ctx.settings.cache_max_age)
