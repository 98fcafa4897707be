"""`GET /xrpc/_health` (is the database reachable, how far behind is each ingest source) and `GET /metrics`
(Prometheus text format)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from litestar import MediaType, Response, get
from litestar.di import NamedDependency
from psycopg_pool import AsyncConnectionPool

from indexer.metrics import Metrics


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
