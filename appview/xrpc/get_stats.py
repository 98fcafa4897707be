"""fm.plyr.getStats: network-wide totals of what readers can see."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.di import NamedDependency

from appview import hydrate, presenters
from appview.context import AppContext
from appview.http import ok, respond, viewer_of
from appview.memo import Slot
from appview.views import StatsOutput

NSID = "fm.plyr.getStats"
MAX_AGE = 60

# Totals cost a scan each: a replica recomputes them at most once a minute, whatever the request rate.
TOTALS = Slot[None, StatsOutput](NSID, ttl=MAX_AGE)


async def stats(ctx: AppContext) -> StatsOutput:
    async def compute() -> StatsOutput:
        async with ctx.pool.connection() as conn:
            return presenters.stats(await hydrate.stats(conn))

    return await ctx.memo.get(TOTALS, None, compute)


@get(f"/xrpc/{NSID}", responses=ok(StatsOutput), operation_id=NSID)
async def handler(request: Request[Any, Any, Any], ctx: NamedDependency[AppContext]) -> Response[bytes]:
    viewer = await viewer_of(ctx, request, NSID)
    return respond(request, await stats(ctx), viewer=viewer, max_age=MAX_AGE)
