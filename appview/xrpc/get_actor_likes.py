"""fm.plyr.getActorLikes: the tracks an actor liked, newest like first."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.di import NamedDependency

from appview import hydrate, labels, presenters, rules
from appview.context import AppContext
from appview.http import (
    DEFAULT_LIMIT,
    Actor,
    Cursor,
    Limit,
    Position,
    actor_ref,
    next_cursor,
    ok,
    unpack,
    viewer_of,
)
from appview.hydrate import Entry, Skeleton
from appview.views import TrackPageOutput

NSID = "fm.plyr.getActorLikes"

# likes_did_sort_idx, backwards. A like whose track does not exist (never indexed, deleted, or its author
# hidden) is skipped here, in the skeleton, so pages stay full.
SKELETON = f"""
SELECT {hydrate.columns(Entry, uri="l.subject_uri", sort_at="l.sort_at", sort_cid="l.cid")} FROM likes l
WHERE l.did = %(did)s AND l.author_active{{after}}
  AND EXISTS (SELECT 1 FROM tracks t WHERE t.uri = l.subject_uri AND t.author_active)
ORDER BY l.sort_at DESC, l.cid DESC
LIMIT %(limit)s
"""


def skeleton(did: str, position: Position | None, limit: int) -> Skeleton:
    after, params = hydrate.keyset(position, "l.sort_at", "l.cid")
    return Skeleton(SKELETON.format(after=after), {**params, "did": did, "limit": limit})


@get(f"/xrpc/{NSID}", responses=ok(TrackPageOutput), operation_id=NSID)
async def handler(
    request: Request[Any, Any, Any],
    ctx: NamedDependency[AppContext],
    actor: Actor,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response[bytes]:
    viewer = await viewer_of(ctx, request, NSID)
    position = unpack(cursor)
    named = actor_ref(actor)
    labelers = labels.of_request(request, ctx.settings.labelers)
    async with ctx.pool.connection() as conn:
        liker = rules.checked_actor(await hydrate.named_actor(conn, named), named)
        entries = await hydrate.fetch(conn, Entry, *skeleton(liker.did, position, limit))
        found = await hydrate.tracks(conn, [e.uri for e in entries], viewer)
        applied = await labels.for_tracks(conn, found.values(), labelers)
    rows = rules.not_label_hidden(
        rules.in_order((e.uri for e in entries), found), applied, labelers.redact, listed=True
    )
    tracks = presenters.tracks(rows, ctx, viewer)
    labels.attach(tracks, applied)
    body = TrackPageOutput(tracks=tracks, cursor=next_cursor(entries, limit))
    return labels.respond_labeled(request, body, viewer=viewer, max_age=ctx.settings.cache_max_age, labelers=labelers)
