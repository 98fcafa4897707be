"""AppView settings, read from the environment once at startup."""

from __future__ import annotations

import os
from urllib.parse import quote

import msgspec

from indexer.audio.store.settings import StorageSettings


def _origins(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(o.strip().rstrip("/").lower() for o in value.split(",") if o.strip())


class AppviewSettings(msgspec.Struct, frozen=True, kw_only=True):
    public_host: str = "localhost"
    service_did: str | None = None
    # Origins (scheme://host[:port]) whose audioUrl we redirect players to; anything else plays from the PDS blob.
    trusted_audio_origins: tuple[str, ...] = ()
    audio_check_timeout: float = 2.0
    audio_check_ttl: float = 300.0
    plc_url: str = "https://plc.directory"
    # Anonymous reads are identical for everyone, so shared caches may keep them briefly.
    cache_max_age: int = 10
    # Write proxy: PDS endpoints on loopback/private/link-local addresses are refused unless this is set
    # (development and tests); the same switch governs did:web document fetches.
    allow_private_hosts: bool = False
    # Seconds a proxied write may take at the user's PDS before the client gets 504 UpstreamTimeout.
    proxy_timeout: float = 30.0
    # Largest audio file / blob accepted for upload (proxied uploadBlob included), in bytes.
    audio_max_bytes: int = 100 * 1024 * 1024
    # Where uploaded audio is stored (a local directory, or S3-compatible storage when S3_BUCKET is set).
    storage: StorageSettings = msgspec.field(default_factory=StorageSettings)

    @property
    def did(self) -> str:
        # did:web percent-encodes a port's colon (https://w3c-ccg.github.io/did-method-web/).
        return self.service_did or f"did:web:{quote(self.public_host, safe='')}"

    @property
    def service_endpoint(self) -> str:
        return f"https://{self.public_host}"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> AppviewSettings:
        e = dict(os.environ) if env is None else env
        return cls(
            public_host=e.get("PLYR_APPVIEW_PUBLIC_HOST") or "localhost",
            service_did=e.get("PLYR_APPVIEW_DID") or None,
            trusted_audio_origins=_origins(e.get("PLYR_APPVIEW_TRUSTED_AUDIO_ORIGINS")),
            plc_url=e.get("PLC_URL") or "https://plc.directory",
            allow_private_hosts=(e.get("PLYR_APPVIEW_ALLOW_PRIVATE_HOSTS") or "0").strip().lower()
            not in {"", "0", "false", "no", "off"},
            proxy_timeout=float(e.get("PLYR_APPVIEW_PROXY_TIMEOUT") or 30.0),
            audio_max_bytes=int(e.get("PLYR_APPVIEW_AUDIO_MAX_BYTES") or 100 * 1024 * 1024),
            storage=StorageSettings.from_env(e),
        )
