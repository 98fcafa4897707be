"""fm.plyr.getActorTracks: an actor's tracks, newest first."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.di import NamedDependency

from appview import cursor as keyset
from appview.context import AppContext
from appview.hydrate import PAGE_CID, PAGE_SORT_AT, page, page_views
from appview.views import TrackPageOutput
from appview.xrpc.common import (
    DEFAULT_LIMIT,
    Actor,
    Cursor,
    Limit,
    actor_lookup,
    after,
    checked_actor,
    ok,
    resolve_actor,
    respond,
    viewer_of,
)
from indexer.atproto.lexicon.formats import is_did

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
    sql = page(SKELETON.format(after=clause), viewer=viewer is not None)
    lookup, lookup_params = actor_lookup(actor)
    async with ctx.pool.connection() as conn:
        if is_did(actor):
            # The page of a DID does not depend on the lookup's answer (only whether it is shown), so both
            # statements go out in one round trip.
            async with conn.pipeline():
                looked = await conn.execute(lookup, lookup_params)
                cur = await conn.execute(sql, {**params, "did": actor, "limit": limit, "viewer": viewer})
                checked_actor(await looked.fetchone(), actor)
                found = await cur.fetchall()
        else:
            author = await resolve_actor(conn, actor)
            cur = await conn.execute(sql, {**params, "did": author.did, "limit": limit, "viewer": viewer})
            found = await cur.fetchall()
    views = page_views(found, viewer=viewer, audio_base=ctx.audio_base, trusted=ctx.audio.trusted)
    last = found[-1] if len(found) == limit else None
    next_cursor = keyset.pack(last[PAGE_SORT_AT], last[PAGE_CID]) if last else None
    body = TrackPageOutput(tracks=views, cursor=next_cursor)
    return respond(request, body, viewer=viewer, max_age=ctx.settings.cache_max_age)
