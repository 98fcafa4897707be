"""fm.plyr.getActorLists: an actor's lists (albums, playlists, ...), newest first."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from appview import cursor as keyset
from appview.context import AppContext
from appview.views import ListsOutput
from appview.xrpc.common import DEFAULT_LIMIT, Actor, Cursor, Limit, after, ok, resolve_actor, respond, viewer_of
from appview.xrpc.lists import list_view, lists_by_uri

NSID = "fm.plyr.getActorLists"

SKELETON = """
SELECT uri, sort_at, cid FROM lists
WHERE did = %(did)s AND author_active{type}{after}
ORDER BY sort_at DESC, cid DESC
LIMIT %(limit)s
"""


@get(f"/xrpc/{NSID}", responses=ok(ListsOutput), operation_id=NSID)
async def handler(
    request: Request[Any, Any, Any],
    ctx: NamedDependency[AppContext],
    actor: Actor,
    list_type: Annotated[
        str | None, QueryParameter(name="listType", max_length=64, description="Only lists of this type.")
    ] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response[bytes]:
    viewer = await viewer_of(ctx, request, NSID)
    clause, params = after(keyset.unpack(cursor))
    by_type = " AND list_type = %(list_type)s" if list_type else ""
    async with ctx.pool.connection() as conn:
        author = await resolve_actor(conn, actor)
        cur = await conn.execute(
            SKELETON.format(type=by_type, after=clause),
            {**params, "did": author.did, "list_type": list_type, "limit": limit},
        )
        skeleton = await cur.fetchall()
        found = await lists_by_uri(conn, [r[0] for r in skeleton])
    views = [list_view(found[r[0]]) for r in skeleton if r[0] in found and found[r[0]].author_active]
    next_cursor = keyset.pack(skeleton[-1][1], skeleton[-1][2]) if len(skeleton) == limit else None
    body = ListsOutput(lists=views, cursor=next_cursor)
    return respond(request, body, viewer=viewer, max_age=ctx.settings.cache_max_age)
