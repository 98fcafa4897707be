"""fm.plyr.getTopTracks: the most liked tracks, optionally only those published since a time."""

from __future__ import annotations

import datetime as dt
import time
from typing import Annotated, Any

from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from appview.context import AppContext
from appview.hydrate import present_tracks
from appview.views import TracksOutput
from appview.xrpc.common import DEFAULT_LIMIT, Limit, ok, respond, viewer_of

NSID = "fm.plyr.getTopTracks"
MAX_LIMIT = 100
TTL = 30.0
MEMO_SIZE = 64

# No index on like_count on purpose: counts are rewritten on every like, and an index on them would make
# those updates non-HOT for the indexer. The ranking is a top-N sort instead, memoised briefly below.
SKELETON = """
SELECT uri FROM tracks
WHERE author_active{since}
ORDER BY like_count DESC, sort_at DESC, cid DESC
LIMIT %(limit)s
"""


async def ranking(ctx: AppContext, since: dt.datetime | None) -> list[str]:
    key = f"{NSID}:{since.isoformat() if since else ''}"
    hit = ctx.memo.get(key)
    if hit is not None and time.monotonic() - hit[0] < TTL:
        return hit[1]  # type: ignore[no-any-return]
    async with ctx.pool.connection() as conn:
        cur = await conn.execute(
            SKELETON.format(since=" AND sort_at >= %(since)s" if since else ""), {"since": since, "limit": MAX_LIMIT}
        )
        uris = [str(r[0]) for r in await cur.fetchall()]
    if len(ctx.memo) >= MEMO_SIZE:
        oldest = next((k for k in ctx.memo if k.startswith(NSID)), None)
        if oldest is not None:
            del ctx.memo[oldest]
    ctx.memo[key] = (time.monotonic(), uris)
    return uris


@get(f"/xrpc/{NSID}", responses=ok(TracksOutput), operation_id=NSID)
async def handler(
    request: Request[Any, Any, Any],
    ctx: NamedDependency[AppContext],
    limit: Limit = DEFAULT_LIMIT,
    since: Annotated[
        dt.datetime | None, QueryParameter(description="Only tracks published at or after this time.")
    ] = None,
) -> Response[bytes]:
    viewer = await viewer_of(ctx, request, NSID)
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=dt.UTC)
    uris = (await ranking(ctx, since))[:limit]
    async with ctx.pool.connection() as conn:
        views = await present_tracks(conn, uris, viewer=viewer, audio_base=ctx.audio_base, trusted=ctx.audio.trusted)
    return respond(request, TracksOutput(tracks=views), viewer=viewer, max_age=ctx.settings.cache_max_age)
