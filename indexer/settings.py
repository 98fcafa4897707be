"""Settings: every environment variable the process reads, parsed once, into one frozen object.

Parsing is strict. A boolean takes only the documented spellings (`1`/`0`, `true`/`false`, `yes`/`no`,
`on`/`off`); a number must be a number in range; a log level must be one Python knows. A wrong value raises
`ConfigError` naming the variable, the value and what it takes, and the command line turns that into one line
and exit status 2. An empty value means "unset" (the default), so `VAR=` in a compose file is harmless.

Command-line flags (`--database-url`, `--data-dir`) are applied by `from_env(overrides=...)`, so values that
depend on them (the local audio directory under the data directory) are computed once, here.

The S3 variable names are the conventional ones, so the same values work for R2 (`S3_REGION=auto`, endpoint
`https://<account>.r2.cloudflarestorage.com`), MinIO (`S3_ENDPOINT_URL=http://minio:9000`) or AWS (no endpoint).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import cast
from urllib.parse import quote, urlsplit

import msgspec

from indexer.logs import LogFormat

DEFAULT_JETSTREAM_URLS = (
    "wss://jetstream1.us-east.bsky.network/subscribe",
    "wss://jetstream2.us-east.bsky.network/subscribe",
)
DEFAULT_DATA_DIR = Path(".plyr-appview")
DEFAULT_AUDIO_MAX_BYTES = 100 * 1024 * 1024

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_LOG_FORMATS = ("AUTO", "JSON", "TEXT")


class ConfigError(ValueError):
    """A configuration value the process cannot run with; the message names the variable and the fix."""


class StorageSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Where uploaded audio is kept: a local directory, or S3-compatible storage when `s3_bucket` is set."""

    # Local backend: the directory holding `audio/<sha256>` files.
    audio_dir: Path = DEFAULT_DATA_DIR / "audio"
    s3_endpoint_url: str | None = None
    s3_bucket: str | None = None
    s3_region: str = "us-east-1"
    # Unset: the standard AWS credential chain (environment, profile, instance role).
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    # Public base URL of the bucket (e.g. an R2 custom domain): players get `<public url>/<key>`, no signing.
    s3_public_url: str | None = None
    # Lifetime of presigned GET URLs, in seconds.
    url_ttl: int = 3600
    # Size of each part of a multipart upload: also the most audio the S3 backend holds in memory per upload.
    part_size: int = 8 * 1024 * 1024

    def __repr__(self) -> str:  # keeps the secret key out of logs and tracebacks
        return f"StorageSettings(audio_dir={self.audio_dir!r}, s3_bucket={self.s3_bucket!r})"


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    # -- database and data ---------------------------------------------------------------------------------
    database_url: str | None = None
    database_replica_url: str | None = None
    data_dir: Path = DEFAULT_DATA_DIR
    # -- ingest --------------------------------------------------------------------------------------------
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
    # -- identity ------------------------------------------------------------------------------------------
    resolve_identities: bool = True
    plc_url: str = "https://plc.directory"
    # Fetch did:web documents and proxy writes to loopback/private/link-local hosts: development and tests
    # only; in production such a host is an SSRF attempt.
    allow_private_hosts: bool = False
    # -- the API -------------------------------------------------------------------------------------------
    # Our service DID is did:web:<public_host>; uploaded audio is linked as https://<public_host>/audio-files/...
    # and tracks naming such URLs are checked at ingest against the audio uploaded here.
    public_host: str = "localhost"
    service_did: str | None = None
    # Origins (scheme://host[:port]) whose audioUrl players are sent to; anything else plays from the PDS blob.
    trusted_audio_origins: tuple[str, ...] = ()
    audio_check_timeout: float = 2.0
    audio_check_ttl: float = 300.0
    # Anonymous reads are identical for everyone, so shared caches may keep them briefly.
    cache_max_age: int = 10
    # Seconds a proxied write may take at the user's PDS before the client gets 504 UpstreamTimeout.
    proxy_timeout: float = 30.0
    # Largest audio file / blob accepted for upload (proxied uploadBlob included), in bytes.
    audio_max_bytes: int = DEFAULT_AUDIO_MAX_BYTES
    storage: StorageSettings = msgspec.field(default_factory=StorageSettings)
    host: str = "127.0.0.1"
    port: int = 8080
    # -- the process ---------------------------------------------------------------------------------------
    log_level: str = "INFO"
    # json, text, or auto: text on a terminal, JSON otherwise (indexer/logs.py).
    log_format: LogFormat = "auto"

    @property
    def did(self) -> str:
        # did:web percent-encodes a port's colon (https://w3c-ccg.github.io/did-method-web/).
        return self.service_did or f"did:web:{quote(self.public_host, safe='')}"

    @property
    def service_endpoint(self) -> str:
        return f"https://{self.public_host}"

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, overrides: Mapping[str, str | Path | None] | None = None
    ) -> Settings:
        """Read every variable once; `overrides` (command-line flags: `database_url`, `data_dir`) win over the
        environment. Raises ConfigError for a value the process cannot run with."""
        e = _Env(os.environ if env is None else env)
        given = {k: str(v) for k, v in (overrides or {}).items() if v is not None}
        data_dir = Path(given.get("data_dir") or e.get("PLYR_APPVIEW_DATA_DIR") or DEFAULT_DATA_DIR)
        urls = tuple(u for u in (e.get("JETSTREAM_URL") or "").replace(",", " ").split() if u)
        settings = cls(
            database_url=e.get("DATABASE_URL"),
            database_replica_url=e.get("DATABASE_REPLICA_URL"),
            data_dir=data_dir,
            jetstream_urls=urls or DEFAULT_JETSTREAM_URLS,
            batch_size=e.integer("PLYR_APPVIEW_BATCH_SIZE", 5000, minimum=1),
            batch_seconds=e.number("PLYR_APPVIEW_BATCH_SECONDS", 0.5, minimum=0.0),
            failover_rewind_seconds=e.number("PLYR_APPVIEW_FAILOVER_REWIND_SECONDS", 600.0, minimum=0.0),
            verify_signatures=e.flag("PLYR_APPVIEW_VERIFY_SIGNATURES", True),
            reconcile_minutes=e.number("PLYR_APPVIEW_RECONCILE_MINUTES", 5.0, minimum=0.0),
            resolve_identities=e.flag("PLYR_APPVIEW_RESOLVE_IDENTITIES", True),
            plc_url=e.url("PLC_URL", "https://plc.directory", schemes=("https", "http")),
            allow_private_hosts=e.flag("PLYR_APPVIEW_ALLOW_PRIVATE_HOSTS", False),
            public_host=e.get("PLYR_APPVIEW_PUBLIC_HOST") or "localhost",
            service_did=e.get("PLYR_APPVIEW_DID"),
            trusted_audio_origins=e.origins("PLYR_APPVIEW_TRUSTED_AUDIO_ORIGINS"),
            proxy_timeout=e.number("PLYR_APPVIEW_PROXY_TIMEOUT", 30.0, minimum=0.001),
            audio_max_bytes=e.integer("PLYR_APPVIEW_AUDIO_MAX_BYTES", DEFAULT_AUDIO_MAX_BYTES, minimum=1),
            storage=StorageSettings(
                audio_dir=Path(e.get("PLYR_APPVIEW_AUDIO_DIR") or data_dir / "audio"),
                s3_endpoint_url=e.get("S3_ENDPOINT_URL"),
                s3_bucket=e.get("S3_BUCKET"),
                s3_region=e.get("S3_REGION") or "us-east-1",
                s3_access_key_id=e.get("S3_ACCESS_KEY_ID"),
                s3_secret_access_key=e.get("S3_SECRET_ACCESS_KEY"),
                s3_public_url=(e.get("S3_PUBLIC_URL") or "").rstrip("/") or None,
                url_ttl=e.integer("PLYR_APPVIEW_AUDIO_URL_TTL", 3600, minimum=1),
            ),
            host=e.get("PLYR_APPVIEW_HOST") or "127.0.0.1",
            port=e.integer("PLYR_APPVIEW_PORT", 8080, minimum=1, maximum=65535),
            log_level=e.choice("PLYR_APPVIEW_LOG_LEVEL", "INFO", _LOG_LEVELS),
            log_format=cast(LogFormat, e.choice("PLYR_APPVIEW_LOG_FORMAT", "AUTO", _LOG_FORMATS).lower()),
        )
        if "database_url" in given:
            settings = msgspec.structs.replace(settings, database_url=given["database_url"])
        return settings


class _Env:
    """Typed reads of one environment mapping; every method names its variable in the error it raises."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def get(self, name: str) -> str | None:
        value = self._env.get(name, "").strip()
        return value or None

    def flag(self, name: str, default: bool) -> bool:
        value = self.get(name)
        if value is None:
            return default
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise ConfigError(f"{name}={value!r} is not a boolean; use 1 or 0 (also true/false, yes/no, on/off)")

    def integer(self, name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
        value = self.get(name)
        if value is None:
            return default
        try:
            parsed = int(value)
        except ValueError:
            raise ConfigError(f"{name}={value!r} is not a whole number; unset it for {default}") from None
        _in_range(name, value, parsed, minimum, maximum)
        return parsed

    def number(self, name: str, default: float, *, minimum: float | None = None) -> float:
        value = self.get(name)
        if value is None:
            return default
        try:
            parsed = float(value)
        except ValueError:
            raise ConfigError(f"{name}={value!r} is not a number; unset it for {default:g}") from None
        if parsed != parsed or parsed in (float("inf"), float("-inf")):
            raise ConfigError(f"{name}={value!r} is not a finite number; unset it for {default:g}")
        _in_range(name, value, parsed, minimum, None)
        return parsed

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.get(name)
        if value is None:
            return default
        if value.upper() not in allowed:
            raise ConfigError(f"{name}={value!r} is not one of {', '.join(allowed)}")
        return value.upper()

    def url(self, name: str, default: str, *, schemes: tuple[str, ...]) -> str:
        value = self.get(name)
        if value is None:
            return default
        try:
            parts = urlsplit(value)
            ok = parts.scheme in schemes and bool(parts.hostname)
        except ValueError:
            ok = False
        if not ok:
            raise ConfigError(f"{name}={value!r} is not a {'/'.join(schemes)} URL with a host")
        return value.rstrip("/")

    def origins(self, name: str) -> tuple[str, ...]:
        """Comma-separated origins, normalised (lower case, no trailing slash)."""
        value = self.get(name)
        if value is None:
            return ()
        return tuple(o.strip().rstrip("/").lower() for o in value.split(",") if o.strip())


def _in_range(name: str, raw: str, value: float, minimum: float | None, maximum: float | None) -> None:
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name}={raw!r} is below the minimum of {minimum:g}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name}={raw!r} is above the maximum of {maximum:g}")
