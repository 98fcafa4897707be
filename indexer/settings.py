"""Settings, read once from the environment (command-line flags may override them)."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

DEFAULT_JETSTREAM_URLS = (
    "wss://jetstream1.us-east.bsky.network/subscribe",
    "wss://jetstream2.us-east.bsky.network/subscribe",
)


def _flag(value: str | None, default: bool) -> bool:
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() not in {"0", "false", "no", "off"}


class Settings(msgspec.Struct, kw_only=True):
    database_url: str | None = None
    database_replica_url: str | None = None
    data_dir: Path = Path(".plyr-appview")
    resolve_identities: bool = True
    plc_url: str = "https://plc.directory"
    jetstream_urls: tuple[str, ...] = DEFAULT_JETSTREAM_URLS
    batch_size: int = 5000
    batch_seconds: float = 0.5
    # On a switch between Jetstream hosts the time_us cursor is rewound by this much: cursors are local to one
    # instance, duplicates are harmless, a gap is forever.
    failover_rewind_seconds: float = 600.0
    # Commit signatures of the raw firehose and of backfilled repos, checked against the DID document.
    verify_signatures: bool = True
    # Period of the reconciliation job inside `index` / `up` (0: off).
    reconcile_minutes: float = 5.0
    # Fetch did:web documents (and, in the AppView, proxy writes) from loopback/private/link-local hosts:
    # development and tests only; in production such a host is an SSRF attempt.
    allow_private_hosts: bool = False
    # Public host of the API (PLYR_APPVIEW_PUBLIC_HOST): tracks whose audioUrl is `https://<host>/audio-files/...`
    # are checked at ingest against the audio uploaded here.
    public_host: str = "localhost"
    log_level: str = "INFO"
    host: str = "127.0.0.1"
    port: int = 8080

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        e = dict(os.environ) if env is None else env
        urls = tuple(u.strip() for u in e.get("JETSTREAM_URL", "").replace(",", " ").split() if u.strip())
        return cls(
            database_url=e.get("DATABASE_URL") or None,
            database_replica_url=e.get("DATABASE_REPLICA_URL") or None,
            data_dir=Path(e.get("PLYR_APPVIEW_DATA_DIR") or ".plyr-appview"),
            resolve_identities=_flag(e.get("PLYR_APPVIEW_RESOLVE_IDENTITIES"), True),
            plc_url=e.get("PLC_URL") or "https://plc.directory",
            jetstream_urls=urls or DEFAULT_JETSTREAM_URLS,
            batch_size=int(e.get("PLYR_APPVIEW_BATCH_SIZE") or 5000),
            batch_seconds=float(e.get("PLYR_APPVIEW_BATCH_SECONDS") or 0.5),
            failover_rewind_seconds=float(e.get("PLYR_APPVIEW_FAILOVER_REWIND_SECONDS") or 600),
            verify_signatures=_flag(e.get("PLYR_APPVIEW_VERIFY_SIGNATURES"), True),
            reconcile_minutes=float(e.get("PLYR_APPVIEW_RECONCILE_MINUTES") or 5),
            allow_private_hosts=_flag(e.get("PLYR_APPVIEW_ALLOW_PRIVATE_HOSTS"), False),
            public_host=e.get("PLYR_APPVIEW_PUBLIC_HOST") or "localhost",
            log_level=e.get("PLYR_APPVIEW_LOG_LEVEL") or "INFO",
            host=e.get("PLYR_APPVIEW_HOST") or "127.0.0.1",
            port=int(e.get("PLYR_APPVIEW_PORT") or 8080),
        )
