"""fm.plyr.getActorProfile: an actor's profile with what they published."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.di import NamedDependency

from appview.context import AppContext
from appview.hydrate import iso
from appview.views import INVALID_HANDLE, ProfileView
from appview.xrpc.common import Actor, ok, resolve_actor, respond, viewer_of

NSID = "fm.plyr.getActorProfile"

# Counts match what the listing methods show: likeCount counts the likes getActorLikes would list.
PROFILE = f"""
SELECT p.bio, p.avatar, {iso("p.indexed_at")},
       (SELECT count(*) FROM tracks t WHERE t.did = %(did)s AND t.author_active),
       (SELECT count(*) FROM likes l WHERE l.did = %(did)s AND l.author_active
          AND EXISTS (SELECT 1 FROM tracks t WHERE t.uri = l.subject_uri AND t.author_active)),
       (SELECT count(*) FROM lists s WHERE s.did = %(did)s AND s.author_active)
FROM (SELECT 1) one LEFT JOIN profiles p ON p.did = %(did)s
"""


@get(f"/xrpc/{NSID}", responses=ok(ProfileView), operation_id=NSID)
async def handler(request: Request[Any, Any, Any], ctx: NamedDependency[AppContext], actor: Actor) -> Response[bytes]:
    viewer = await viewer_of(ctx, request, NSID)
    async with ctx.pool.connection() as conn:
        found = await resolve_actor(conn, actor)
        cur = await conn.execute(PROFILE, {"did": found.did})
        row = await cur.fetchone()
    assert row is not None
    bio, avatar, indexed_at, tracks, likes, lists = row
    body = ProfileView(
        did=found.did,
        handle=found.handle or INVALID_HANDLE,
        bio=bio,
        avatar=avatar,
        track_count=tracks,
        like_count=likes,
        list_count=lists,
        indexed_at=indexed_at,
    )
    return respond(request, body, viewer=viewer, max_age=ctx.settings.cache_max_age)
