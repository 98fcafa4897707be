"""fm.plyr.getTopTracks: the tracks with the most likes (`by=likes`, the default) or teal.fm plays (`by=plays`).

Without `since` the ranking is by each track's whole count. With `since` it is by activity inside the window, as
plyr.fm ranks its own top tracks: the likes (or plays) made at or after `since` (by their sort time: the
creation time they claim, never later than their arrival), whenever the track was published; only tracks with at
least one in the window are ranked. Likes and plays count only from active accounts, of tracks shown.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

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

By = Literal["likes", "plays"]

# No index on the counts on purpose: they are rewritten on every like and play, and an index on them would make
# those updates non-HOT for the indexer. The ranking is a top-N sort instead, memoised briefly (per `by`, `since`).
_ALL_TIME = """
SELECT uri FROM tracks
WHERE author_active
ORDER BY {count} DESC, sort_at DESC, cid DESC
LIMIT %(limit)s
"""
# The activity of the window, read by its time index (likes_sort_idx, plays_sort_idx), grouped per track.
_WINDOW = {
    "likes": "SELECT subject_uri AS uri, count(*) AS n FROM likes WHERE sort_at >= %(since)s AND author_active"
    " GROUP BY subject_uri",
    "plays": "SELECT track_uri AS uri, count(*) AS n FROM plays WHERE sort_at >= %(since)s"
    " AND track_uri IS NOT NULL AND author_active GROUP BY track_uri",
}
_IN_WINDOW = """
SELECT t.uri FROM ({window}) w JOIN tracks t ON t.uri = w.uri
WHERE t.author_active
ORDER BY w.n DESC, t.sort_at DESC, t.cid DESC
LIMIT %(limit)s
"""
_COUNT: dict[str, str] = {"likes": "like_count", "plays": "play_count"}

RANKINGS = Slot[tuple[By, dt.datetime | None], list[str]](NSID, ttl=30.0, size=64)

Since = Annotated[
    dt.datetime | None,
    QueryParameter(description="Rank by the likes (or plays) made at or after this time, not by all of them."),
]
ByParam = Annotated[By, QueryParameter(description="What ranks the tracks: their likes or their teal.fm plays.")]


def skeleton(by: By, since: dt.datetime | None) -> Skeleton:
    """The whole ranking (MAX_LIMIT tracks): requests of any `limit` share it."""
    if since is None:
        return Skeleton(_ALL_TIME.format(count=_COUNT[by]), {"limit": MAX_LIMIT})
    return Skeleton(_IN_WINDOW.format(window=_WINDOW[by]), {"since": since, "limit": MAX_LIMIT})


async def ranking(ctx: AppContext, by: By, since: dt.datetime | None) -> list[str]:
    async def walk() -> list[str]:
        async with ctx.pool.connection() as conn:
            return await hydrate.uris(conn, skeleton(by, since))

    return await ctx.memo.get(RANKINGS, (by, since), walk)


@get(f"/xrpc/{NSID}", responses=ok(TracksOutput), operation_id=NSID)
async def handler(
    request: Request[Any, Any, Any],
    ctx: NamedDependency[AppContext],
    limit: Limit = DEFAULT_LIMIT,
    since: Since = None,
    by: ByParam = "likes",
) -> Response[bytes]:
    viewer = await viewer_of(ctx, request, NSID)
    uris = (await ranking(ctx, by, as_utc(since)))[:limit]
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
