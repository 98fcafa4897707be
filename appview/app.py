"""The AppView HTTP application (litestar). Read endpoints are added per XRPC method under appview/."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar, MediaType, Response, get
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.openapi import OpenAPIConfig
from psycopg_pool import AsyncConnectionPool

from appview.audio.files import audio_file
from appview.audio.locator import AudioLocator, audio
from appview.audio.stored import stored_audio_lifespan
from appview.context import AppContext
from appview.errors import xrpc_error_handler
from appview.pages import handlers as page_handlers
from appview.proxy.lifespan import provide_write_proxy, write_proxy_lifespan
from appview.settings import AppviewSettings
from appview.well_known import did_document
from appview.xrpc import HANDLERS
from indexer.atproto.identity.did_docs import DidDocuments
from indexer.atproto.identity.resolver import DidDocumentResolver, IdentityResolver
from indexer.metrics import Metrics

log = logging.getLogger(__name__)


async def _provide_pool(state: State) -> AsyncConnectionPool:
    pool: AsyncConnectionPool = state.pool
    return pool


async def _provide_ctx(state: State) -> AppContext:
    ctx: AppContext = state.ctx
    return ctx


async def _has_trigram(pool: AsyncConnectionPool) -> bool:
    """Whether pg_trgm is installed; without it search falls back to plain matching. A database that is not
    reachable yet counts as "no" rather than failing startup."""
    try:
        async with pool.connection(timeout=5.0) as conn:
            cur = await conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
            return await cur.fetchone() is not None
    except Exception as exc:
        log.warning("could not check for pg_trgm; search runs without it", extra={"error": repr(exc)})
        return False


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
    settings: AppviewSettings | None = None,
    resolver: IdentityResolver | None = None,
) -> Litestar:
    """The API is stateless: any number of replicas can serve from one primary, reads from `replica_url`.
    `resolver` (DID documents: signing keys, PDS endpoints) defaults to the PLC directory and did:web."""
    metrics = metrics or Metrics()
    settings = settings or AppviewSettings.from_env()
    owned: DidDocumentResolver | None = None
    identities: IdentityResolver
    if resolver is None:
        owned = identities = DidDocumentResolver(
            DidDocuments(settings.plc_url, timeout=3.0, allow_private_hosts=settings.allow_private_hosts)
        )
    else:
        identities = resolver

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
        locator = AudioLocator(
            identities,
            settings.trusted_audio_origins,
            timeout=settings.audio_check_timeout,
            ttl=settings.audio_check_ttl,
            own_host=settings.public_host,
        )
        app.state.pool = pool
        app.state.ctx = AppContext(
            settings=settings,
            pool=pool,
            resolver=identities,
            audio=locator,
            trigram=await _has_trigram(pool),
        )
        try:
            yield
        finally:
            await locator.close()
            await pool.close()
            if owned is not None:
                await owned.aclose()

    return Litestar(
        route_handlers=[
            metrics_endpoint,
            health,
            did_document,
            audio,
            audio_file,
            *HANDLERS,
            *page_handlers(),
        ],
        lifespan=[
            lifespan,
            stored_audio_lifespan(database_url, settings),
            write_proxy_lifespan(database_url, settings, identities, metrics),
        ],
        state=State({"metrics": metrics}),
        dependencies={
            "pool": Provide(_provide_pool),
            "metrics": Provide(_provide_metrics),
            "ctx": Provide(_provide_ctx),
            "write_proxy": Provide(provide_write_proxy),
        },
        exception_handlers={Exception: xrpc_error_handler},
        # Logging belongs to the process (indexer.logs: JSON lines on stderr); litestar must not replace it.
        logging_config=None,
        # Reads are public data: any web origin may call them. Proxied writes carry the caller's own credentials
        # in headers (no cookies), so any origin may send them too; OAuth clients must read the PDS's DPoP nonce
        # and auth challenge.
        cors_config=CORSConfig(
            allow_origins=["*"],
            allow_methods=["GET", "HEAD", "POST", "OPTIONS"],
            allow_headers=["Authorization", "DPoP", "Content-Type", "atproto-accept-labelers"],
            expose_headers=["DPoP-Nonce", "WWW-Authenticate"],
            max_age=86400,
        ),
        openapi_config=OpenAPIConfig(title="plyr AppView", version="0.1.0", path="/schema"),
    )
