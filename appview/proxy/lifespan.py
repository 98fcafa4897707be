"""The write proxy's part of the application lifespan: built after the read pool exists, closed on shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from litestar import Litestar
from litestar.datastructures import State

from appview.proxy.fold import ProxyFold
from appview.proxy.service import WriteProxy
from appview.settings import AppviewSettings
from indexer.atproto.identity.resolver import IdentityResolver
from indexer.atproto.lexicon import Validator
from indexer.atproto.netguard import NetGuard
from indexer.metrics import Metrics


def write_proxy_lifespan(
    database_url: str, settings: AppviewSettings, resolver: IdentityResolver, metrics: Metrics
) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """Writes are folded into the primary (`database_url`), never a replica; the read pool (`app.state.pool`,
    opened by the lifespan before this one) serves handle lookups."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        validator = Validator.load()
        proxy = WriteProxy(
            resolver=resolver,
            read_pool=app.state.pool,
            fold=ProxyFold(database_url, validator=validator, metrics=metrics, own_audio_host=settings.public_host),
            validator=validator,
            metrics=metrics,
            guard=NetGuard(allow_private=settings.allow_private_hosts),
            timeout=settings.proxy_timeout,
            max_blob_bytes=settings.audio_max_bytes,
        )
        app.state.write_proxy = proxy
        try:
            yield
        finally:
            await proxy.aclose()

    return lifespan


async def provide_write_proxy(state: State) -> WriteProxy:
    proxy: WriteProxy = state.write_proxy
    return proxy
