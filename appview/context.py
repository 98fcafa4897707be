"""Everything a request handler needs, built once per app and handed to handlers by dependency injection."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from psycopg_pool import AsyncConnectionPool

from appview.auth import ServiceAuth
from appview.settings import AppviewSettings
from indexer.atproto.identity.resolver import IdentityResolver

if TYPE_CHECKING:
    from appview.audio.locator import AudioLocator
    from appview.audio.stored import StoredAudio


class AppContext:
    def __init__(
        self,
        *,
        settings: AppviewSettings,
        pool: AsyncConnectionPool,
        resolver: IdentityResolver,
        audio: AudioLocator,
        trigram: bool,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.resolver = resolver
        self.auth = ServiceAuth(settings.did, resolver)
        self.audio = audio
        # pg_trgm installed in the database: search adds fuzzy matches and uses trigram indexes.
        self.trigram = trigram
        self.audio_base = f"{settings.service_endpoint}/audio"
        # Small results worth computing once per interval (e.g. network totals), keyed by method.
        self.memo: dict[str, tuple[float, Any]] = {}
        self.memo_lock = asyncio.Lock()
        # Uploaded audio (store + table); set by appview.audio.stored's lifespan once the store is open.
        self.stored_audio: StoredAudio | None = None
