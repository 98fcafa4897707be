"""`GET /xrpc/_health` and `GET /metrics` (Prometheus text format).

`_health` answers whether this replica can serve: 200 while it can read from its database, 503 when it cannot.
Ingest being down does not make it 503: the API goes on serving what is indexed, and a load balancer must not
take every replica out because Jetstream is unreachable. What ingest is doing is in the body, for operators and
monitors:

- `ingest`: per live source (the committed cursor's source name: `jetstream`, `jetstream-v2:<host>`,
  `firehose:<host>`) its committed `cursor`, `lagSeconds` (now minus the newest committed event's time),
  `lastCommitAgoSeconds`, and the connection state the indexer reports: `connected` (null when no state is
  reported for it), `since`, `lastError`, `attempts` (consecutive failed connection attempts), `host`, and
  `hosts` with the state of each host of a failover list.
- `replays`: capture replays (`replay:<file>` cursors), with their cursor and when they last committed; not
  live sources, so no lag and no connection.
- `ingestOk` and `ingestProblem`: the verdict `plyr-appview status --check` gives with its default threshold.
"""

from __future__ import annotations

from typing import Any

from litestar import MediaType, Response, get
from litestar.di import NamedDependency
from psycopg_pool import AsyncConnectionPool

from indexer.metrics import Metrics
from indexer.source_status import HostState, IngestState, LiveSource, iso_time, read_ingest


@get("/metrics", media_type=MediaType.TEXT, include_in_schema=False)
async def metrics_endpoint(metrics: NamedDependency[Metrics]) -> Response[bytes]:
    # litestar appends "; charset=utf-8" to a text/* media type itself: naming it here would send it twice.
    return Response(metrics.render(), media_type="text/plain; version=0.0.4")


def _seconds(s: float | None) -> float | None:
    return None if s is None else round(s, 3)


def _host(h: HostState) -> dict[str, Any]:
    return {_camel(key): value for key, value in h.report().items()}


def _camel(key: str) -> str:
    first, *rest = key.split("_")
    return first + "".join(word.capitalize() for word in rest)


def _source(s: LiveSource) -> dict[str, Any]:
    current = s.current
    return {
        "cursor": s.cursor,
        "lagSeconds": _seconds(s.lag_seconds),
        "lastCommitAgoSeconds": _seconds(s.last_commit_ago_seconds),
        "connected": s.connected,
        "host": None if current is None else current.host,
        "since": None if current is None else iso_time(current.since),
        "lastError": None if current is None else current.last_error,
        "attempts": None if current is None else current.attempts,
        "hosts": [_host(h) for h in s.hosts],
    }


def health_body(state: IngestState) -> dict[str, Any]:
    problem = state.problem()
    return {
        "status": "ok",
        "db": "ok",
        "ingest": {s.source: _source(s) for s in state.sources},
        "replays": {
            r.source: {
                "cursor": r.cursor,
                "eventTime": iso_time(r.event_time),
                "committedAt": iso_time(r.committed_at),
                "lastCommitAgoSeconds": _seconds((state.now - r.committed_at).total_seconds()),
            }
            for r in state.replays
        },
        "ingestOk": problem is None,
        "ingestProblem": problem,
    }


@get("/xrpc/_health", cache=False)
async def health(pool: NamedDependency[AsyncConnectionPool]) -> Response[dict[str, Any]]:
    try:
        async with pool.connection(timeout=2.0) as conn:
            state = await read_ingest(conn)
    except Exception as exc:
        return Response({"status": "unhealthy", "db": "unavailable", "message": str(exc)[:200]}, status_code=503)
    return Response(health_body(state))
