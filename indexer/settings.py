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

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import cast
from urllib.parse import quote, urlsplit

import msgspec

from indexer.atproto.hosts import is_loopback_host
from indexer.atproto.syntax import is_did
from indexer.logs import LogFormat

DEFAULT_JETSTREAM_URLS = (
    "wss://jetstream1.us-east.bsky.network/subscribe",
    "wss://jetstream2.us-east.bsky.network/subscribe",
)
DEFAULT_DATA_DIR = Path(".plyr-appview")
DEFAULT_AUDIO_MAX_BYTES = 100 * 1024 * 1024
DEFAULT_PAGE_CACHE_MB = 64
# Rate limits of a public service (appview/ratelimit.py): ten reads a second per client
# is far beyond what a person browsing does; one write a second per account and per address; an album or two of
# uploads an hour, and 1 GiB of new audio a day, per account.
DEFAULT_READS_PER_MINUTE = 600
DEFAULT_WRITES_PER_MINUTE = 60
DEFAULT_UPLOADS_PER_HOUR = 30
DEFAULT_UPLOAD_BYTES_PER_DAY = 1024 * 1024 * 1024

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
    # How long a batch waits for more events once the writer could take it; 0: committed as soon as the
    # source has nothing more queued (batches still grow under load, while the previous one commits).
    batch_seconds: float = 0.0
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
    # -- moderation ----------------------------------------------------------------------------------------
    # Labeler DIDs whose `com.atproto.label.subscribeLabels` streams the indexer follows (indexer/labels); the
    # API applies their labels by default.
    labelers: tuple[str, ...] = ()
    # Password of the operator's admin XRPC routes (HTTP Basic, user `admin`; appview/moderation.py). None: the
    # routes refuse everyone.
    admin_password: Secret | None = None
    # -- the API -------------------------------------------------------------------------------------------
    # Where clients reach us: `public_url` (scheme://host[:port]) or, unset, `public_origin(public_host)`. It gives
    # our service DID (did:web:<host[:port]>), the service endpoint of our DID document, and every absolute URL
    # we emit: uploaded audio is linked as <origin>/audio-files/... and tracks naming such URLs are checked at
    # ingest against the audio uploaded here.
    public_host: str = "localhost"
    public_url: str | None = None
    service_did: str | None = None
    # Origins (scheme://host[:port]) whose audioUrl players are sent to; anything else plays from the PDS blob.
    trusted_audio_origins: tuple[str, ...] = ()
    audio_check_timeout: float = 2.0
    # Base URL of an atprotofans-compatible service (`com.atprotofans.validateSupporter`) proving that a viewer
    # supports an artist, for supporter-gated tracks (appview/audio/gate.py); None: nobody but the author plays
    # them. `supporter_signer` is the DID that signed the support terms (None: the artist, as for direct support).
    supporter_check_url: str | None = None
    supporter_signer: str | None = None
    audio_check_ttl: float = 300.0
    # Anonymous reads are identical for everyone, so shared caches may keep them briefly.
    cache_max_age: int = 10
    # Memory each API process may give to anonymous read responses it sends again until the index changes
    # (appview/page_cache.py), in bytes; 0 turns the page cache off.
    page_cache_bytes: int = DEFAULT_PAGE_CACHE_MB * 2**20
    # Seconds a proxied write may take at the user's PDS before the client gets 504 UpstreamTimeout.
    proxy_timeout: float = 30.0
    # Largest audio file / blob accepted for upload (proxied uploadBlob included), in bytes.
    audio_max_bytes: int = DEFAULT_AUDIO_MAX_BYTES
    # Rate limits (appview/ratelimit.py); 0 disables one. The defaults are a public service's, wherever the
    # settings come from; `without_rate_limits()` turns them all off (benchmarks, tests that send a load).
    rate_limit_reads_per_minute: int = DEFAULT_READS_PER_MINUTE
    rate_limit_writes_per_minute: int = DEFAULT_WRITES_PER_MINUTE
    rate_limit_uploads_per_hour: int = DEFAULT_UPLOADS_PER_HOUR
    upload_bytes_per_day: int = DEFAULT_UPLOAD_BYTES_PER_DAY
    # Networks (CIDR) of the reverse proxies in front of the API: only a peer in one of them has its
    # X-Forwarded-For read for the client address.
    trusted_proxies: tuple[str, ...] = ()
    storage: StorageSettings = msgspec.field(default_factory=StorageSettings)
    host: str = "127.0.0.1"
    port: int = 8080
    # -- the process ---------------------------------------------------------------------------------------
    log_level: str = "INFO"
    # json, text, or auto: text on a terminal, JSON otherwise (indexer/logs.py).
    log_format: LogFormat = "auto"

    @property
    def public_origin(self) -> str:
        """Our origin, `scheme://host[:port]`, lower case, no trailing slash."""
        return self.public_url or public_origin(self.public_host)

    def without_rate_limits(self) -> Settings:
        return msgspec.structs.replace(
            self,
            rate_limit_reads_per_minute=0,
            rate_limit_writes_per_minute=0,
            rate_limit_uploads_per_hour=0,
            upload_bytes_per_day=0,
        )

    @property
    def did(self) -> str:
        # did:web percent-encodes a port's colon (https://w3c-ccg.github.io/did-method-web/).
        netloc = urlsplit(self.public_origin).netloc
        return self.service_did or f"did:web:{quote(netloc, safe='')}"

    @property
    def service_endpoint(self) -> str:
        return self.public_origin

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *, overrides: Mapping[str, str | Path | None] | None = None
    ) -> Settings:
        """Read every variable once; `overrides` (command-line flags: `database_url`, `data_dir`) win over the
        environment. Raises ConfigError for a value the process cannot run with."""
        e = _Env(os.environ if env is None else env)
        given = {k: str(v) for k, v in (overrides or {}).items() if v is not None}
        data_dir = Path(given.get("data_dir") or e.get("PLYR_APPVIEW_DATA_DIR") or DEFAULT_DATA_DIR)
        public = e.public(
            "PLYR_APPVIEW_PUBLIC_URL", e.get("PLYR_APPVIEW_PUBLIC_HOST"), host_name="PLYR_APPVIEW_PUBLIC_HOST"
        )
        urls = tuple(u for u in (e.get("JETSTREAM_URL") or "").replace(",", " ").split() if u)
        settings = cls(
            database_url=e.get("DATABASE_URL"),
            database_replica_url=e.get("DATABASE_REPLICA_URL"),
            data_dir=data_dir,
            jetstream_urls=urls or DEFAULT_JETSTREAM_URLS,
            batch_size=e.integer("PLYR_APPVIEW_BATCH_SIZE", 5000, minimum=1),
            batch_seconds=e.number("PLYR_APPVIEW_BATCH_SECONDS", 0.0, minimum=0.0),
            failover_rewind_seconds=e.number("PLYR_APPVIEW_FAILOVER_REWIND_SECONDS", 600.0, minimum=0.0),
            verify_signatures=e.flag("PLYR_APPVIEW_VERIFY_SIGNATURES", True),
            reconcile_minutes=e.number("PLYR_APPVIEW_RECONCILE_MINUTES", 5.0, minimum=0.0),
            resolve_identities=e.flag("PLYR_APPVIEW_RESOLVE_IDENTITIES", True),
            plc_url=e.url("PLC_URL", "https://plc.directory", schemes=("https", "http")),
            allow_private_hosts=e.flag("PLYR_APPVIEW_ALLOW_PRIVATE_HOSTS", False),
            labelers=e.dids("PLYR_APPVIEW_LABELERS"),
            admin_password=e.secret("PLYR_APPVIEW_ADMIN_PASSWORD", min_length=ADMIN_PASSWORD_MIN),
            public_host=public.netloc,
            public_url=public.origin,
            service_did=e.get("PLYR_APPVIEW_DID"),
            trusted_audio_origins=e.origins("PLYR_APPVIEW_TRUSTED_AUDIO_ORIGINS"),
            supporter_check_url=e.url("PLYR_APPVIEW_SUPPORTER_CHECK_URL", "", schemes=("https", "http")) or None,
            supporter_signer=e.did("PLYR_APPVIEW_SUPPORTER_SIGNER"),
            page_cache_bytes=e.integer("PLYR_APPVIEW_PAGE_CACHE_MB", DEFAULT_PAGE_CACHE_MB, minimum=0) * 2**20,
            proxy_timeout=e.number("PLYR_APPVIEW_PROXY_TIMEOUT", 30.0, minimum=0.001),
            audio_max_bytes=e.integer("PLYR_APPVIEW_AUDIO_MAX_BYTES", DEFAULT_AUDIO_MAX_BYTES, minimum=1),
            rate_limit_reads_per_minute=e.integer(
                "PLYR_APPVIEW_RATE_LIMIT_READS_PER_MINUTE", DEFAULT_READS_PER_MINUTE, minimum=0
            ),
            rate_limit_writes_per_minute=e.integer(
                "PLYR_APPVIEW_RATE_LIMIT_WRITES_PER_MINUTE", DEFAULT_WRITES_PER_MINUTE, minimum=0
            ),
            rate_limit_uploads_per_hour=e.integer(
                "PLYR_APPVIEW_RATE_LIMIT_UPLOADS_PER_HOUR", DEFAULT_UPLOADS_PER_HOUR, minimum=0
            ),
            upload_bytes_per_day=e.integer(
                "PLYR_APPVIEW_UPLOAD_BYTES_PER_DAY", DEFAULT_UPLOAD_BYTES_PER_DAY, minimum=0
            ),
            trusted_proxies=e.networks("PLYR_APPVIEW_TRUSTED_PROXIES"),
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


def public_origin(host: str) -> str:
    """The origin of a public host (`host[:port]`) given without a scheme: https, except on a loopback host
    (`localhost`, `127.0.0.1`, `[::1]`), where there is no certificate to serve it with."""
    host = host.strip().lower().rstrip("/")
    try:
        hostname = urlsplit(f"//{host}").hostname or host
    except ValueError:
        hostname = host
    return f"{'http' if is_loopback_host(hostname) else 'https'}://{host}"


class _Public(msgspec.Struct, frozen=True):
    origin: str
    netloc: str


_DEFAULT_PORTS = {"http": 80, "https": 443}


class Secret:
    """A value that must not appear in logs, reprs or tracebacks."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "Secret('***')"


ADMIN_PASSWORD_MIN = 16


class _Env:
    """Typed reads of one environment mapping; every method names its variable in the error it raises."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def get(self, name: str) -> str | None:
        value = self._env.get(name, "").strip()
        return value or None

    def secret(self, name: str, *, min_length: int) -> Secret | None:
        value = self.get(name)
        if value is None:
            return None
        if len(value) < min_length:
            # The value itself is never quoted.
            raise ConfigError(f"{name} is {len(value)} characters long; use at least {min_length} random characters")
        return Secret(value)

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

    def public(self, url_name: str, host: str | None, *, host_name: str) -> _Public:
        """Our public origin, from the URL variable (scheme http or https, a host, an optional port, nothing
        else) or else `host`, the value of `host_name` (`public_origin`). Both given: they must name the same
        host and port."""
        value = self.get(url_name)
        if value is None:
            host = (host or "localhost").lower()
            try:
                parts = urlsplit(f"//{host}")
                ok = bool(parts.hostname) and (parts.port or 0) >= 0
            except ValueError:  # a port that is not a number in range
                ok = False
            if not ok or any(c in host for c in "/?#@\\ \t"):
                raise ConfigError(f"{host_name}={host[:200]!r} is not a host name with an optional :port")
            return _Public(origin=public_origin(host), netloc=host)
        try:
            parts = urlsplit(value)
            port = parts.port
            hostname = parts.hostname
        except ValueError:
            raise ConfigError(f"{url_name}={value[:200]!r} is not a URL (a bad port?)") from None
        scheme = parts.scheme.lower()
        if scheme not in _DEFAULT_PORTS or not hostname:
            raise ConfigError(f"{url_name}={value[:200]!r} must be http:// or https:// with a host")
        if parts.path not in ("", "/") or parts.query or parts.fragment or "?" in value or "#" in value:
            raise ConfigError(
                f"{url_name}={value[:200]!r} must be scheme://host[:port], with no path, query or fragment"
            )
        if parts.username is not None or parts.password is not None:
            raise ConfigError(f"{url_name}={value[:200]!r} must not carry credentials")
        name = f"[{hostname}]" if ":" in hostname else hostname
        netloc = name if port is None or port == _DEFAULT_PORTS[scheme] else f"{name}:{port}"
        if host is not None and host.lower().removesuffix(f":{_DEFAULT_PORTS[scheme]}") != netloc:
            raise ConfigError(
                f"{host_name}={host[:200]!r} and {url_name}={value[:200]!r} name different hosts; set only {url_name}"
            )
        return _Public(origin=f"{scheme}://{netloc}", netloc=netloc)

    def dids(self, name: str) -> tuple[str, ...]:
        """Comma-separated DIDs (did:plc or did:web), each once, in the order given."""
        value = self.get(name)
        if value is None:
            return ()
        found: list[str] = []
        for part in value.split(","):
            did = part.strip()
            if not did:
                continue
            if not is_did(did) or not did.startswith(("did:plc:", "did:web:")):
                raise ConfigError(
                    f"{name}: {did[:200]!r} is not a did:plc or did:web DID; give DIDs separated by commas"
                )
            if did not in found:
                found.append(did)
        return tuple(found)

    def did(self, name: str) -> str | None:
        value = self.get(name)
        if value is not None and not is_did(value):
            raise ConfigError(f"{name}={value[:200]!r} is not a DID; unset it to use the default")
        return value

    def networks(self, name: str) -> tuple[str, ...]:
        """Comma-separated IP networks in CIDR notation (a bare address is a network of one), normalised. Host bits
        set under the mask (`10.0.0.1/8`) are refused: such a value is a typo more often than not."""
        value = self.get(name)
        if value is None:
            return ()
        found: list[str] = []
        for part in value.split(","):
            text = part.strip()
            if not text:
                continue
            try:
                network = str(ipaddress.ip_network(text, strict=True))
            except ValueError:
                raise ConfigError(
                    f"{name}={value[:200]!r}: {text[:100]!r} is not an IP network; give CIDR networks separated by"
                    " commas (e.g. 10.0.0.0/8, 192.0.2.7)"
                ) from None
            if network not in found:
                found.append(network)
        return tuple(found)

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
