"""fm.plyr.getActorTracks: an actor's tracks, newest first: those they published (`filter=authored`, the
default), those whose features name their DID (`featured`, from the `track_features` projection), or both
(`all`, each track once)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

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
from appview.hydrate import Skeleton, TrackRows
from appview.views import TrackPageOutput

NSID = "fm.plyr.getActorTracks"

# tracks_did_sort_idx, backwards: whole rows when it is the page's only walk (hydrate.page), the skeleton's three
# columns when it is merged with the featured walk.
SKELETON = """
SELECT {columns} FROM tracks
WHERE did = %(did)s AND author_active{after}
ORDER BY sort_at DESC, cid DESC
LIMIT %(limit)s
"""


# track_features_feature_sort_idx, backwards; a featured track is shown when its own author is active.
FEATURED = """
SELECT t.uri, f.sort_at, f.cid FROM track_features f
JOIN tracks t ON t.did = f.did AND t.rkey = f.rkey
WHERE f.feature_did = %(did)s AND t.author_active{after}
ORDER BY f.sort_at DESC, f.cid DESC
LIMIT %(limit)s
"""

# Both walks, each limited to the page, merged; UNION keeps a track the actor published and features once.
ALL = """
SELECT uri, sort_at, cid FROM (({authored}) UNION ({featured})) u
ORDER BY sort_at DESC, cid DESC
LIMIT %(limit)s
"""

Filter = Literal["authored", "featured", "all"]


def skeleton(position: Position | None, limit: int, which: Filter = "authored") -> Skeleton:
    """The walk; the actor's DID (`%(did)s`) comes with the actor's lookup."""
    after, params = hydrate.keyset(position)
    featured_after, _ = hydrate.keyset(position, "f.sort_at", "f.cid")
    params = {**params, "limit": limit}
    if which == "authored":
        return TrackRows(SKELETON.format(columns="*", after=after), params)
    featured = FEATURED.format(after=featured_after)
    if which == "featured":
        return Skeleton(featured, params)
    authored = SKELETON.format(columns="uri, sort_at, cid", after=after)
    return Skeleton(ALL.format(authored=authored, featured=featured), params)


@get(f"/xrpc/{NSID}", responses=ok(TrackPageOutput), operation_id=NSID)
async def handler(
    request: Request[Any, Any, Any],
    ctx: NamedDependency[AppContext],
    actor: Actor,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    filter: Annotated[
        Filter,
        QueryParameter(description="authored (default): their tracks; featured: tracks featuring them; all: both."),
    ] = "authored",
) -> Response[bytes]:
    viewer = await viewer_of(ctx, request, NSID)
    walk = skeleton(unpack(cursor), limit, filter)
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
