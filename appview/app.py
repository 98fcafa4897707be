"""The AppView HTTP application (litestar): the one lifespan that builds the whole AppContext, and the routes
it serves (XRPC methods under appview/xrpc/, other routes under appview/routes/, pages under appview/pages/)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from psycopg_pool import AsyncConnectionPool

from appview.audio.gate import SupporterCheck
from appview.audio.locator import AudioLocator
from appview.audio.stored import open_stored_audio
from appview.auth import ServiceAuth, SharedReplayCache
from appview.context import AppContext
from appview.http import xrpc_error_handler
from appview.page_cache import REPLICA_PAGE_TTL, PageCache, PageCacheMiddleware, listening
from appview.pages import handlers as page_handlers
from appview.proxy import WriteProxy, open_write_proxy
from appview.ratelimit import RATE_LIMIT_HEADERS, RateLimiter, RateLimitMiddleware, pruning
from appview.routes.api_docs import openapi_config
from appview.routes.audio import audio
from appview.routes.audio_files import audio_file
from appview.routes.head import answer_head
from appview.routes.health import health, metrics_endpoint
from appview.routes.oembed import oembed
from appview.well_known import did_document
from appview.xrpc import CACHED_READS, HANDLERS
from indexer.atproto.identity.did_docs import DidDocuments
from indexer.atproto.identity.resolver import DidDocumentResolver, IdentityResolver
from indexer.metrics import Metrics
from indexer.settings import Settings

log = logging.getLogger(__name__)


async def _provide_ctx(state: State) -> AppContext:
    ctx: AppContext = state.ctx
    return ctx


async def _provide_pool(state: State) -> AsyncConnectionPool:
    return (await _provide_ctx(state)).pool


async def _provide_metrics(state: State) -> Metrics:
    return (await _provide_ctx(state)).metrics


async def _provide_write_proxy(state: State) -> WriteProxy:
    return (await _provide_ctx(state)).write_proxy


async def _has_trigram(pool: AsyncConnectionPool) -> bool:
    """Whether pg_trgm is installed; without it search falls back to plain matching. A database that is not
    reachable yet counts as "no" rather than failing startup."""
    try:
        async with pool.connection(timeout=5.0) as conn:
            cur = await conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'")
            if await cur.fetchone() is not None:
                return True
    except Exception as exc:
        log.warning("could not check for pg_trgm; search runs without it", extra={"error": repr(exc)})
        return False
    log.warning("pg_trgm is not installed: search runs without fuzzy matches (the status page says so too)")
    return False


def create_app(
    database_url: str,
    *,
    metrics: Metrics | None = None,
    replica_url: str | None = None,
    pool_size: int = 10,
    settings: Settings | None = None,
    resolver: IdentityResolver | None = None,
    clock: Callable[[], float] = time.time,
) -> Litestar:
    """The API is stateless: any number of replicas can serve from one primary, reads from `replica_url`.
    Writes (proxied records, upload rows) always go to `database_url`. `resolver` (DID documents: signing keys,
    PDS endpoints) defaults to the PLC directory and did:web. `clock` cuts the rate limits' windows."""
    metrics = metrics or Metrics()
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        """Builds the whole AppContext, and closes what it opened in reverse order."""
        async with AsyncExitStack() as stack:
            identities = resolver
            if identities is None:
                owned = DidDocumentResolver(
                    DidDocuments(settings.plc_url, timeout=3.0, allow_private_hosts=settings.allow_private_hosts)
                )
                stack.push_async_callback(owned.aclose)
                identities = owned
            pool = AsyncConnectionPool(
                replica_url or database_url, min_size=1, max_size=pool_size, open=False, kwargs={"autocommit": True}
            )
            await pool.open(wait=False)
            stack.push_async_callback(pool.close)
            # Rate-limit counters and token ids are writes: on the primary, on the read pool when it is the primary.
            writes = pool
            if replica_url:
                writes = AsyncConnectionPool(
                    database_url, min_size=1, max_size=pool_size, open=False, kwargs={"autocommit": True}
                )
                await writes.open(wait=False)
                stack.push_async_callback(writes.close)
            limits = RateLimiter(writes, settings, metrics, clock=clock)
            # Changes are notified on the primary; a replica may lag behind them, so its answers are kept 1 s at most.
            ttl = min(settings.cache_max_age, REPLICA_PAGE_TTL) if replica_url else settings.cache_max_age
            pages = PageCache(CACHED_READS, settings.page_cache_bytes, ttl=ttl, metrics=metrics)
            await stack.enter_async_context(listening(database_url, pages))
            replays = SharedReplayCache(writes)
            await stack.enter_async_context(pruning([limits.prune, replays.prune]))
            locator = AudioLocator(
                identities,
                settings.trusted_audio_origins,
                timeout=settings.audio_check_timeout,
                ttl=settings.audio_check_ttl,
                own_host=settings.public_origin,
            )
            stack.push_async_callback(locator.close)
            gate = SupporterCheck(settings.supporter_check_url, metrics=metrics, signer=settings.supporter_signer)
            stack.push_async_callback(gate.close)
            stored = await stack.enter_async_context(open_stored_audio(database_url, settings.storage, pool))
            proxy = open_write_proxy(
                database_url, settings, identities, metrics, read_pool=pool, on_folded=pages.changed
            )
            stack.push_async_callback(proxy.aclose)
            app.state.ctx = AppContext(
                settings=settings,
                pool=pool,
                resolver=identities,
                auth=ServiceAuth(settings.did, identities, replay_cache=replays),
                metrics=metrics,
                audio=locator,
                stored_audio=stored,
                gate=gate,
                write_proxy=proxy,
                trigram=await _has_trigram(pool),
                limits=limits,
                pages=pages,
            )
            yield

    app = Litestar(
        route_handlers=[
            metrics_endpoint,
            health,
            did_document,
            audio,
            audio_file,
            oembed,
            *HANDLERS,
            *page_handlers(),
        ],
        lifespan=[lifespan],
        dependencies={
            "pool": Provide(_provide_pool),
            "metrics": Provide(_provide_metrics),
            "ctx": Provide(_provide_ctx),
            "write_proxy": Provide(_provide_write_proxy),
        },
        exception_handlers={Exception: xrpc_error_handler},
        # After routing, so a HEAD answered as a GET (answer_head) is charged once; appview/ratelimit.py. The page
        # cache inside it, so that a response sent from memory is charged like any other.
        middleware=[RateLimitMiddleware, PageCacheMiddleware],
        # Logging belongs to the process (indexer.logs: JSON lines on stderr); litestar must not replace it.
        logging_config=None,
        # Reads are public data: any web origin may call them. Proxied writes carry the caller's own credentials
        # in headers (no cookies), so any origin may send them too; OAuth clients must read the PDS's DPoP nonce
        # and auth challenge. Allowed request headers are the ones ATProto clients send (content-type is litestar's
        # default), in lower case: litestar compares them as browsers send them.
        cors_config=CORSConfig(
            allow_origins=["*"],
            allow_methods=["GET", "HEAD", "POST", "OPTIONS"],
            allow_headers=["authorization", "dpop", "atproto-proxy", "atproto-accept-labelers"],
            expose_headers=[
                "DPoP-Nonce",
                "WWW-Authenticate",
                "atproto-content-labelers",
                *RATE_LIMIT_HEADERS,
            ],
            max_age=86400,
        ),
        openapi_config=openapi_config(title="plyr AppView", version="0.1.0"),
    )
    # HEAD is answered wherever GET is, in front of litestar's routing.
    return answer_head(app)
