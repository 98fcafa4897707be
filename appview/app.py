"""The AppView HTTP application (litestar). Read endpoints are added per XRPC method under appview/."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, MediaType, Response, get
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from psycopg_pool import AsyncConnectionPool

from appview.errors import xrpc_error_handler
from indexer.metrics import Metrics


async def _provide_pool(state: State) -> AsyncConnectionPool:
    pool: AsyncConnectionPool = state.pool
    return pool


async def _provide_metrics(state: State) -> Metrics:
    metrics: Metrics = state.metrics
    return metrics


@get("/metrics", media_type=MediaType.TEXT, include_in_schema=False)
async def metrics_endpoint(metrics: NamedDependency[Metrics]) -> Response[bytes]:
    return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


@get("/xrpc/_health", cache=False)
async def health(pool: NamedDependency[AsyncConnectionPool]) -> Response[dict[str, Any]]:
    try:
        async with pool.connection(timeout=2.0) as conn:
            cur = await conn.execute("SELECT source, cursor, event_time, updated_at FROM cursors ORDER BY source")
            found = await cur.fetchall()
    except Exception as exc:
        return Response({"status": "unhealthy", "db": "unavailable", "message": str(exc)[:200]}, status_code=503)
    now = dt.datetime.now(dt.UTC)
    sources = {
        str(source): {
            "cursor": int(cursor),
            "lagSeconds": None if event_time is None else round((now - event_time).total_seconds(), 3),
            "lastCommitAgoSeconds": round((now - updated_at).total_seconds(), 3),
        }
        for source, cursor, event_time, updated_at in found
    }
    return Response({"status": "ok", "db": "ok", "ingest": sources})


def create_app(
    database_url: str,
    *,
    metrics: Metrics | None = None,
    replica_url: str | None = None,
    pool_size: int = 10,
) -> Litestar:
    """The API is stateless: any number of replicas can serve from one primary, reads from `replica_url`."""
    metrics = metrics or Metrics()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        pool = AsyncConnectionPool(
            replica_url or database_url,
            min_size=1,
            max_size=pool_size,
            open=False,
            kwargs={"autocommit": True},
        )
        await pool.open(wait=False)
        app.state.pool = pool
        try:
            yield
        finally:
            await pool.close()

    return Litestar(
        route_handlers=[metrics_endpoint, health],
        lifespan=[lifespan],
        state=State({"metrics": metrics}),
        dependencies={"pool": Provide(_provide_pool), "metrics": Provide(_provide_metrics)},
        exception_handlers={Exception: xrpc_error_handler},
    )
