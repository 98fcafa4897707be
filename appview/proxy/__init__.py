"""The write proxy: `com.atproto.repo.*` writes of `fm.plyr.*` records, validated here, forwarded to the repo's own
PDS, and folded into the index at once (read-your-writes). See service.py for the order of a write."""

from __future__ import annotations

from collections.abc import Callable

from psycopg_pool import AsyncConnectionPool

from appview.proxy.fold import ProxyFold
from appview.proxy.service import WriteProxy
from indexer.atproto.identity.resolver import IdentityResolver
from indexer.atproto.lexicon import Validator
from indexer.atproto.netguard import NetGuard
from indexer.metrics import Metrics
from indexer.settings import Settings

__all__ = ["ProxyFold", "WriteProxy", "open_write_proxy"]


def open_write_proxy(
    database_url: str,
    settings: Settings,
    resolver: IdentityResolver,
    metrics: Metrics,
    *,
    read_pool: AsyncConnectionPool,
    on_folded: Callable[[], None] = lambda: None,
) -> WriteProxy:
    """Writes are folded into the primary (`database_url`), never a replica; `read_pool` serves handle
    lookups; `on_folded` is called after each write folded. The caller closes it (`aclose`)."""
    validator = Validator.load()
    return WriteProxy(
        resolver=resolver,
        read_pool=read_pool,
        fold=ProxyFold(database_url, validator=validator, metrics=metrics, own_audio_host=settings.public_origin),
        validator=validator,
        metrics=metrics,
        guard=NetGuard(allow_private=settings.allow_private_hosts),
        timeout=settings.proxy_timeout,
        max_blob_bytes=settings.audio_max_bytes,
        on_folded=on_folded,
    )
