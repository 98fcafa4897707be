"""fm.plyr.getLikes: who liked a track, newest first."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.di import NamedDependency

from appview import hydrate, presenters, rules
from appview.context import AppContext
from appview.http import (
    DEFAULT_LIMIT,
    AtUri,
    Cursor,
    Limit,
    Position,
    next_cursor,
    not_found,
    ok,
    respond,
    split_at_uri,
    unpack,
    viewer_of,
)
from appview.hydrate import LikeRow, Skeleton
from appview.views import LikesOutput
from indexer.fold.collections.track import NSID as TRACK

NSID = "fm.plyr.getLikes"

# likes_subject_sort_idx, backwards. The likes table holds all a like view shows but the liker, so the
# skeleton's rows are the likes themselves.
SKELETON = f"""
SELECT {hydrate.columns(LikeRow)} FROM likes
WHERE subject_uri = %(uri)s AND author_active{{after}}
ORDER BY sort_at DESC, cid DESC
LIMIT %(limit)s
"""


def skeleton(uri: str, position: Position | None, limit: int) -> Skeleton:
    after, params = hydrate.keyset(position)
    return Skeleton(SKELETON.format(after=after), {**params, "uri": uri, "limit": limit})


@get(f"/xrpc/{NSID}", responses=ok(LikesOutput), operation_id=NSID)
async def handler(
    request: Request[Any, Any, Any],
    ctx: NamedDependency[AppContext],
    uri: AtUri,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response[bytes]:
    viewer = await viewer_of(ctx, request, NSID)
    split_at_uri(uri, TRACK)
    walk = skeleton(uri, unpack(cursor), limit)
    async with ctx.pool.connection() as conn:
        rows = await hydrate.track_page(conn, uri, LikeRow, walk)
        if rows is None:
            raise not_found("track", uri)
        likers = await hydrate.actors(conn, (r.did for r in rows))
    likes = [presenters.like(row, liker) for row, liker in rules.with_active_authors(rows, likers)]
    body = LikesOutput(uri=uri, likes=likes, cursor=next_cursor(rows, limit))
    return respond(request, body, viewer=viewer, max_age=ctx.settings.cache_max_age)
