"""fm.plyr.getStats: network-wide totals of what readers can see."""

from __future__ import annotations

import time
from typing import Any

from litestar import Request, Response, get
from litestar.di import NamedDependency

from appview.context import AppContext
from appview.views import StatsOutput
from appview.xrpc.common import ok, respond, viewer_of

NSID = "fm.plyr.getStats"
MAX_AGE = 60

# `likes` sums the per-track counts: exactly the likes by active accounts of tracks that exist and are shown.
STATS = """
SELECT count(*), count(DISTINCT did), coalesce(sum(like_count), 0),
       (SELECT count(*) FROM lists WHERE author_active)
FROM tracks WHERE author_active
"""


async def stats(ctx: AppContext) -> StatsOutput:
    # Totals cost a scan each: a replica recomputes them at most once a minute, whatever the request rate.
    hit = ctx.memo.get(NSID)
    if hit is not None and time.monotonic() - hit[0] < MAX_AGE:
        return hit[1]  # type: ignore[no-any-return]
    async with ctx.memo_lock:
        hit = ctx.memo.get(NSID)
        if hit is not None and time.monotonic() - hit[0] < MAX_AGE:
            return hit[1]  # type: ignore[no-any-return]
        async with ctx.pool.connection() as conn:
            cur = await conn.execute(STATS)
            row = await cur.fetchone()
        assert row is not None
        result = StatsOutput(tracks=int(row[0]), artists=int(row[1]), likes=int(row[2]), lists=int(row[3]))
        ctx.memo[NSID] = (time.monotonic(), result)
        return result


@get(f"/xrpc/{NSID}", responses=ok(StatsOutput), operation_id=NSID)
async def handler(request: Request[Any, Any, Any], ctx: NamedDependency[AppContext]) -> Response[bytes]:
    viewer = await viewer_of(ctx, request, NSID)
    return respond(request, await stats(ctx), viewer=viewer, max_age=MAX_AGE)
