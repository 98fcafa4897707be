"""Storage configuration, read from the environment. The S3 variable names are the conventional ones, so the
same values work for R2 (`S3_REGION=auto`, endpoint `https://<account>.r2.cloudflarestorage.com`), MinIO
(`S3_ENDPOINT_URL=http://minio:9000`) or AWS (no endpoint)."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

DEFAULT_MAX_BYTES = 100 * 1024 * 1024


class StorageSettings(msgspec.Struct, frozen=True, kw_only=True):
    # Local backend: the directory holding `audio/<sha256>` files.
    audio_dir: Path = Path(".plyr-appview") / "audio"
    s3_endpoint_url: str | None = None
    # Set: the S3 backend is used; unset: the local directory.
    s3_bucket: str | None = None
    s3_region: str = "us-east-1"
    # Unset: the standard AWS credential chain (environment, profile, instance role).
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = msgspec.field(default=None)
    # Public base URL of the bucket (e.g. an R2 custom domain): players get `<public url>/<key>`, no signing.
    s3_public_url: str | None = None
    # Lifetime of presigned GET URLs, in seconds.
    url_ttl: int = 3600
    # Size of each part of a multipart upload: also the most audio the S3 backend holds in memory per upload.
    part_size: int = 8 * 1024 * 1024

    def __repr__(self) -> str:  # keeps the secret key out of logs and tracebacks
        return f"StorageSettings(audio_dir={self.audio_dir!r}, s3_bucket={self.s3_bucket!r})"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> StorageSettings:
        e = dict(os.environ) if env is None else env
        data_dir = Path(e.get("PLYR_APPVIEW_DATA_DIR") or ".plyr-appview")
        public = (e.get("S3_PUBLIC_URL") or "").strip().rstrip("/")
        return cls(
            audio_dir=Path(e.get("PLYR_APPVIEW_AUDIO_DIR") or data_dir / "audio"),
            s3_endpoint_url=e.get("S3_ENDPOINT_URL") or None,
            s3_bucket=e.get("S3_BUCKET") or None,
            s3_region=e.get("S3_REGION") or "us-east-1",
            s3_access_key_id=e.get("S3_ACCESS_KEY_ID") or None,
            s3_secret_access_key=e.get("S3_SECRET_ACCESS_KEY") or None,
            s3_public_url=public or None,
            url_ttl=int(e.get("PLYR_APPVIEW_AUDIO_URL_TTL") or 3600),
        )
