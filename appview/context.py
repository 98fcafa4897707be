"""Everything a request handler needs, built whole by the application's one lifespan (appview/app.py) and
handed to handlers by dependency injection. Nothing here is filled in later: a handler never meets a context
without its pools, its audio store or its write proxy."""

from __future__ import annotations

from dataclasses import dataclass, field

from psycopg_pool import AsyncConnectionPool

from appview.audio.gate import SupporterCheck
from appview.audio.locator import AudioLocator
from appview.audio.stored import StoredAudio
from appview.auth import ServiceAuth
from appview.memo import Memo
from appview.page_cache import PageCache
from appview.proxy.service import WriteProxy
from appview.ratelimit import RateLimiter
from indexer.atproto.identity.resolver import IdentityResolver
from indexer.metrics import Metrics
from indexer.settings import Settings


@dataclass(eq=False, kw_only=True)
class AppContext:
    settings: Settings
    # Reads: the replica when one is configured, else the primary.
    pool: AsyncConnectionPool
    resolver: IdentityResolver
    auth: ServiceAuth
    metrics: Metrics
    # Where tracks play from (trusted origins, PDS blobs).
    audio: AudioLocator
    # Uploaded audio: the object store and the `audio_objects` table.
    stored_audio: StoredAudio
    # Who may play supporter-gated tracks (the configured supporter check, if any).
    gate: SupporterCheck
    write_proxy: WriteProxy
    # pg_trgm installed in the database: search adds fuzzy matches and uses trigram indexes.
    trigram: bool
    # Per-client rate limits, counted in the primary (appview/ratelimit.py).
    limits: RateLimiter
    # Anonymous read responses kept until the index changes (appview/page_cache.py).
    pages: PageCache
    audio_base: str = field(init=False)

    def __post_init__(self) -> None:
        self.audio_base = f"{self.settings.service_endpoint}/audio"
        # Small results worth computing once per interval (network totals, rankings, the status page).
        self.memo = Memo()
