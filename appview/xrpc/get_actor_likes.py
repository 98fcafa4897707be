"""fm.plyr.getActorLikes: the tracks an actor liked, newest like first."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.di import NamedDependency

from appview import cursor as keyset
from appview.context import AppContext
from appview.hydrate import present_tracks
from appview.views import TrackPageOutput
from appview.xrpc.common import DEFAULT_LIMIT, Actor, Cursor, Limit, after, ok, resolve_actor, respond, viewer_of

NSID = "fm.plyr.getActorLikes"

# likes_did_sort_idx, backwards. A like whose track does not exist (never indexed, deleted, or its author
# hidden) is skipped here, in the skeleton, so pages stay full.
SKELETON = """
SELECT l.subject_uri, l.sort_at, l.cid FROM likes l
WHERE l.did = %(did)s AND l.author_active{after}
  AND EXISTS (SELECT 1 FROM tracks t WHERE t.uri = l.subject_uri AND t.author_active)
ORDER BY l.sort_at DESC, l.cid DESC
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
    clause, params = after(keyset.unpack(cursor), "l.sort_at", "l.cid")
    async with ctx.pool.connection() as conn:
        liker = await resolve_actor(conn, actor)
        cur = await conn.execute(SKELETON.format(after=clause), {**params, "did": liker.did, "limit": limit})
        skeleton = await cur.fetchall()
        views = await present_tracks(
            conn, [r[0] for r in skeleton], viewer=viewer, audio_base=ctx.audio_base, trusted=ctx.audio.trusted
        )
    next_cursor = keyset.pack(skeleton[-1][1], skeleton[-1][2]) if len(skeleton) == limit else None
    body = TrackPageOutput(tracks=views, cursor=next_cursor)
    return respond(request, body, viewer=viewer, max_age=ctx.settings.cache_max_age)
