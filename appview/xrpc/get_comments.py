"""fm.plyr.getComments: a track's timed comments, in playback order."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get
from litestar.di import NamedDependency

from appview import cursor as keyset
from appview import hydrate
from appview.context import AppContext
from appview.errors import XrpcError
from appview.views import CommentsOutput, CommentView
from appview.xrpc.common import DEFAULT_LIMIT, AtUri, Cursor, Limit, ok, respond, split_at_uri, viewer_of

NSID = "fm.plyr.getComments"

VISIBLE_TRACK = "SELECT 1 FROM tracks WHERE uri = %s AND author_active"

# comments_subject_idx (subject_uri, timestamp_ms). A timestampMs beyond bigint is stored as NULL; such a
# comment has no place on the playback timeline and is not listed.
SKELETON = """
SELECT uri, timestamp_ms, cid FROM comments
WHERE subject_uri = %(uri)s AND author_active AND timestamp_ms IS NOT NULL{after}
ORDER BY timestamp_ms, cid
LIMIT %(limit)s
"""
AFTER = " AND (timestamp_ms, cid) > (%(after)s, %(after_cid)s)"

HYDRATE = f"""
SELECT c.uri, c.cid, c.did, c.text, c.timestamp_ms, {hydrate.iso("coalesce(c.created_at, c.indexed_at)")},
       {hydrate.iso("c.indexed_at")}, e.record::text
FROM comments c JOIN events e ON e.id = c.event_id
WHERE c.uri = ANY(%s)
"""


@get(f"/xrpc/{NSID}", responses=ok(CommentsOutput), operation_id=NSID)
async def handler(
    request: Request[Any, Any, Any],
    ctx: NamedDependency[AppContext],
    uri: AtUri,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response[bytes]:
    viewer = await viewer_of(ctx, request, NSID)
    split_at_uri(uri, "fm.plyr.track")
    position = keyset.unpack_int(cursor)
    params: dict[str, Any] = {"uri": uri, "limit": limit}
    if position is not None:
        params.update(after=position[0], after_cid=position[1])
    async with ctx.pool.connection() as conn:
        cur = await conn.execute(VISIBLE_TRACK, (uri,))
        if await cur.fetchone() is None:
            raise XrpcError("NotFound", f"track not found: {uri}", status=404)
        cur = await conn.execute(SKELETON.format(after=AFTER if position else ""), params)
        skeleton = await cur.fetchall()
        cur = await conn.execute(HYDRATE, ([r[0] for r in skeleton],))
        found = {str(r[0]): r for r in await cur.fetchall()}
        authors = await hydrate.actors(conn, (r[2] for r in found.values()))
    comments = []
    for key, _, _ in skeleton:
        row = found.get(key)
        if row is None or not hydrate.visible_actor(authors.get(row[2])):
            continue
        c_uri, cid, did, text, ms, created_at, indexed_at, record = row
        comments.append(
            CommentView(
                uri=c_uri,
                cid=cid,
                author=authors[did].view(),
                text=text,
                timestamp_ms=ms,
                created_at=created_at,
                indexed_at=indexed_at,
                record=msgspec.Raw(record.encode()),  # type: ignore[arg-type]
            )
        )
    next_cursor = f"{skeleton[-1][1]}__{skeleton[-1][2]}" if len(skeleton) == limit else None
    body = CommentsOutput(comments=comments, cursor=next_cursor)
    return respond(request, body, viewer=viewer, max_age=ctx.settings.cache_max_age)
