"""fm.plyr.getTopTracks: the most liked tracks, optionally only those published since a time."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from appview import hydrate, labels, presenters, rules
from appview.context import AppContext
from appview.http import DEFAULT_LIMIT, Limit, as_utc, ok, viewer_of
from appview.hydrate import Skeleton
from appview.memo import Slot
from appview.views import TracksOutput

NSID = "fm.plyr.getTopTracks"
MAX_LIMIT = 100

# No index on like_count on purpose: counts are rewritten on every like, and an index on them would make
# those updates non-HOT for the indexer. The ranking is a top-N sort instead, memoised briefly (per `since`).
SKELETON = """
SELECT uri FROM tracks
WHERE author_active{since}
ORDER BY like_count DESC, sort_at DESC, cid DESC
LIMIT %(limit)s
"""
RANKINGS = Slot[dt.datetime | None, list[str]](NSID, ttl=30.0, size=64)

Since = Annotated[dt.datetime | None, QueryParameter(description="Only tracks published at or after this time.")]


def skeleton(since: dt.datetime | None) -> Skeleton:
    """The whole ranking (MAX_LIMIT tracks): requests of any `limit` share it."""
    sql = SKELETON.format(since=" AND sort_at >= %(since)s" if since else "")
    return Skeleton(sql, {"since": since, "limit": MAX_LIMIT})


async def ranking(ctx: AppContext, since: dt.datetime | None) -> list[str]:
    async def walk() -> list[str]:
        async with ctx.pool.connection() as conn:
            return await hydrate.uris(conn, skeleton(since))

    return await ctx.memo.get(RANKINGS, since, walk)


@get(f"/xrpc/{NSID}", responses=ok(TracksOutput), operation_id=NSID)
async def handler(
    request: Request[Any, Any, Any],
    ctx: NamedDependency[AppContext],
    limit: Limit = DEFAULT_LIMIT,
    since: Since = None,
) -> Response[bytes]:
    viewer = await viewer_of(ctx, request, NSID)
    uris = (await ranking(ctx, as_utc(since)))[:limit]
    labelers = labels.of_request(request, ctx.settings.labelers)
    async with ctx.pool.connection() as conn:
        found = await hydrate.tracks(conn, uris, viewer)
        applied = await labels.for_tracks(conn, found.values(), labelers)
    rows = rules.not_label_hidden(rules.in_order(uris, found), applied, labelers.redact, listed=True)
    tracks = presenters.tracks(rows, ctx, viewer)
    labels.attach(tracks, applied)
    return labels.respond_labeled(
        request, TracksOutput(tracks=tracks), viewer=viewer, max_age=ctx.settings.cache_max_age, labelers=labelers
    )
