"""Everything a request handler needs, built once per app and handed to handlers by dependency injection."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from psycopg_pool import AsyncConnectionPool

from appview.auth import ServiceAuth
from appview.identity import IdentityResolver
from appview.settings import AppviewSettings

if TYPE_CHECKING:
    from appview.audio import AudioLocator
    from appview.stored_audio import StoredAudio


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
        # Uploaded audio (store + table); set by appview.stored_audio's lifespan once the store is open.
        self.stored_audio: StoredAudio | None = None
