"""fm.plyr.getActorTracks: an actor's tracks, newest first."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.di import NamedDependency

from appview import cursor as keyset
from appview.context import AppContext
from appview.hydrate import present_tracks
from appview.views import TrackPageOutput
from appview.xrpc.common import DEFAULT_LIMIT, Actor, Cursor, Limit, after, ok, resolve_actor, respond, viewer_of

NSID = "fm.plyr.getActorTracks"

# tracks_did_sort_idx, backwards.
SKELETON = """
SELECT uri, sort_at, cid FROM tracks
WHERE did = %(did)s AND author_active{after}
ORDER BY sort_at DESC, cid DESC
LIMIT %(limit)s
"""


@get(f"/xrpc/{NSID}", responses=ok(TrackPageOutput), operation_id=NSID)
async def handler(
    request: Request[Any, Any, Any],
    ctx: NamedDependency[AppContext],
    actor: Actor,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response[bytes]:
    viewer = await viewer_of(ctx, request, NSID)
    clause, params = after(keyset.unpack(cursor))
    async with ctx.pool.connection() as conn:
        author = await resolve_actor(conn, actor)
        cur = await conn.execute(SKELETON.format(after=clause), {**params, "did": author.did, "limit": limit})
        skeleton = await cur.fetchall()
        views = await present_tracks(
            conn, [r[0] for r in skeleton], viewer=viewer, audio_base=ctx.audio_base, trusted=ctx.audio.trusted
        )
    next_cursor = keyset.pack(skeleton[-1][1], skeleton[-1][2]) if len(skeleton) == limit else None
    body = TrackPageOutput(tracks=views, cursor=next_cursor)
    return respond(request, body, viewer=viewer, max_age=ctx.settings.cache_max_age)
