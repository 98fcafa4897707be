"""fm.plyr.getActorTracks: an actor's tracks, newest first."""

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
from appview.hydrate import Skeleton
from appview.views import TrackPageOutput

NSID = "fm.plyr.getActorTracks"

# tracks_did_sort_idx, backwards.
SKELETON = """
SELECT uri, sort_at, cid FROM tracks
WHERE did = %(did)s AND author_active{after}
ORDER BY sort_at DESC, cid DESC
LIMIT %(limit)s
"""


def skeleton(position: Position | None, limit: int) -> Skeleton:
    """The walk; the actor's DID (`%(did)s`) comes with the actor's lookup."""
    after, params = hydrate.keyset(position)
    return Skeleton(SKELETON.format(after=after), {**params, "limit": limit})


@get(f"/xrpc/{NSID}", responses=ok(TrackPageOutput), operation_id=NSID)
async def handler(
    request: Request[Any, Any, Any],
    ctx: NamedDependency[AppContext],
    actor: Actor,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response[bytes]:
    viewer = await viewer_of(ctx, request, NSID)
    walk = skeleton(unpack(cursor), limit)
    named = actor_ref(actor)
    labelers = labels.of_request(request, ctx.settings.labelers)
    async with ctx.pool.connection() as conn:
        found, rows = await hydrate.actor_page(conn, named, walk, viewer)
        applied = await labels.for_tracks(conn, rows, labelers)
    rules.checked_actor(found, named)
    tracks = presenters.tracks(
        rules.not_label_hidden(rules.visible(rows), applied, labelers.redact, listed=True), ctx, viewer
    )
    labels.attach(tracks, applied)
    body = TrackPageOutput(tracks=tracks, cursor=next_cursor(rows, limit))
    return labels.respond_labeled(request, body, viewer=viewer, max_age=ctx.settings.cache_max_age, labelers=labelers)
