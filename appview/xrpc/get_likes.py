"""fm.plyr.getLikes: who liked a track, newest first."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.di import NamedDependency

from appview import cursor as keyset
from appview import hydrate
from appview.context import AppContext
from appview.errors import XrpcError
from appview.views import LikesOutput, LikeView
from appview.xrpc.common import DEFAULT_LIMIT, AtUri, Cursor, Limit, after, ok, respond, split_at_uri, viewer_of

NSID = "fm.plyr.getLikes"

VISIBLE_TRACK = "SELECT 1 FROM tracks WHERE uri = %s AND author_active"

SKELETON = f"""
SELECT did, {hydrate.iso("coalesce(created_at, indexed_at)")}, {hydrate.iso("indexed_at")}, sort_at, cid
FROM likes
WHERE subject_uri = %(uri)s AND author_active{{after}}
ORDER BY sort_at DESC, cid DESC
LIMIT %(limit)s
"""


@get(f"/xrpc/{NSID}", responses=ok(LikesOutput), operation_id=NSID)
async def handler(
    request: Request[Any, Any, Any],
    ctx: NamedDependency[AppContext],
    uri: AtUri,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response[bytes]:
    viewer = await viewer_of(ctx, request, NSID)
    split_at_uri(uri, "fm.plyr.track")
    clause, params = after(keyset.unpack(cursor))
    async with ctx.pool.connection() as conn:
        cur = await conn.execute(VISIBLE_TRACK, (uri,))
        if await cur.fetchone() is None:
            raise XrpcError("NotFound", f"track not found: {uri}", status=404)
        cur = await conn.execute(SKELETON.format(after=clause), {**params, "uri": uri, "limit": limit})
        skeleton = await cur.fetchall()
        likers = await hydrate.actors(conn, (r[0] for r in skeleton))
    likes = [
        LikeView(actor=likers[did].view(), created_at=created_at, indexed_at=indexed_at)
        for did, created_at, indexed_at, _, _ in skeleton
        if hydrate.visible_actor(likers.get(did))
    ]
    next_cursor = keyset.pack(skeleton[-1][3], skeleton[-1][4]) if len(skeleton) == limit else None
    body = LikesOutput(uri=uri, likes=likes, cursor=next_cursor)
    return respond(request, body, viewer=viewer, max_age=ctx.settings.cache_max_age)
