"""An S3-compatible bucket as the audio store (Cloudflare R2, MinIO, AWS), through aioboto3.

- Uploads: a file up to one part is one PUT; a larger one is a multipart upload read from the spooled file one
  part at a time (at most `_PARTS_IN_FLIGHT` parts in memory), and any failure or cancellation aborts the
  multipart upload, so an interrupted transfer leaves no object and no billed parts behind.
- Playback: players are sent to `S3_PUBLIC_URL/<key>` when the bucket has a public domain, else to a presigned
  GET valid for `PLYR_APPVIEW_AUDIO_URL_TTL` seconds. The API never proxies audio bytes.
- Checksums are computed only when an operation requires them: several S3-compatible services refuse the
  newer default integrity headers of botocore.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aioboto3
from botocore.config import Config
from botocore.exceptions import ClientError

from indexer.audio.store import PREFIX, StoredObject
from indexer.settings import StorageSettings

# Objects never change once written (the key is their hash): any cache may keep them for good.
IMMUTABLE = "public, max-age=31536000, immutable"
_PARTS_IN_FLIGHT = 2
_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})


def client_config(settings: StorageSettings) -> Config:
    # A custom endpoint (R2, MinIO, a test server on 127.0.0.1) is addressed path-style: virtual hosts need a
    # DNS name per bucket, which MinIO and loopback servers do not have. AWS itself gets its default.
    style = "path" if settings.s3_endpoint_url else "auto"
    return Config(
        region_name=settings.s3_region,
        signature_version="s3v4",
        s3={"addressing_style": style},
        retries={"max_attempts": 4, "mode": "standard"},
        connect_timeout=10,
        read_timeout=60,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )


class S3AudioStore:
    def __init__(self, client: Any, settings: StorageSettings) -> None:
        self._client = client
        self._bucket = settings.s3_bucket
        self._public = settings.s3_public_url
        self._ttl = settings.url_ttl
        self._part_size = max(settings.part_size, 5 * 1024 * 1024)  # S3's minimum for all but the last part

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, settings: StorageSettings) -> AsyncIterator[S3AudioStore]:
        if not settings.s3_bucket:
            raise ValueError("S3_BUCKET is not set")
        session = aioboto3.Session(
            aws_access_key_id=settings.s3_access_key_id,
            aws_secret_access_key=settings.s3_secret_access_key,
            region_name=settings.s3_region,
        )
        async with session.client("s3", endpoint_url=settings.s3_endpoint_url, config=client_config(settings)) as c:
            yield cls(c, settings)

    @property
    def spool_dir(self) -> Path | None:
        return None

    async def put_file(self, key: str, path: Path, *, content_type: str) -> bool:
        if await self.exists(key):
            return False
        size = (await asyncio.to_thread(path.stat)).st_size
        head = {"Bucket": self._bucket, "Key": key, "ContentType": content_type, "CacheControl": IMMUTABLE}
        if size <= self._part_size:
            body = await asyncio.to_thread(path.read_bytes)
            await self._client.put_object(Body=body, **head)
            return True
        upload_id = await self._create_multipart(head)
        try:
            parts = await self._upload_parts(key, upload_id, path)
            await self._client.complete_multipart_upload(
                Bucket=self._bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            # Shielded: a cancelled upload must still abort, or its parts linger (and are billed) in the bucket.
            with contextlib.suppress(Exception):
                await asyncio.shield(
                    self._client.abort_multipart_upload(Bucket=self._bucket, Key=key, UploadId=upload_id)
                )
            raise
        return True

    async def _create_multipart(self, head: dict[str, str | None]) -> str:
        # Cancelled while S3 is creating the upload: wait for its id all the same, so it can be aborted.
        creating = asyncio.ensure_future(self._client.create_multipart_upload(**head))
        try:
            created = await asyncio.shield(creating)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                late = (await creating)["UploadId"]
                await self._client.abort_multipart_upload(Bucket=self._bucket, Key=head["Key"], UploadId=late)
            raise
        return str(created["UploadId"])

    async def _upload_parts(self, key: str, upload_id: str, path: Path) -> list[dict[str, Any]]:
        slots = asyncio.Semaphore(_PARTS_IN_FLIGHT)
        etags: dict[int, str] = {}

        async def send(number: int, chunk: bytes) -> None:
            try:
                resp = await self._client.upload_part(
                    Bucket=self._bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk
                )
                etags[number] = resp["ETag"]
            finally:
                slots.release()

        with path.open("rb") as f:
            async with asyncio.TaskGroup() as tg:
                number = 0
                while True:
                    await slots.acquire()
                    chunk = await asyncio.to_thread(f.read, self._part_size)
                    if not chunk:
                        slots.release()
                        break
                    number += 1
                    tg.create_task(send(number, chunk))
                    del chunk
        return [{"ETag": etags[n], "PartNumber": n} for n in sorted(etags)]

    async def exists(self, key: str) -> bool:
        try:
            await self._client.head_object(Bucket=self._bucket, Key=key)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in _MISSING:
                return False
            raise
        return True

    async def delete(self, key: str) -> None:
        await self._client.delete_object(Bucket=self._bucket, Key=key)

    async def list(self) -> AsyncIterator[StoredObject]:
        paginator = self._client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self._bucket, Prefix=PREFIX):
            for obj in page.get("Contents", ()):
                yield StoredObject(key=obj["Key"], size=int(obj["Size"]), modified=obj["LastModified"].timestamp())

    async def local_path(self, key: str) -> Path | None:
        return None

    @property
    def url_is_public(self) -> bool:
        return self._public is not None

    async def url(self, key: str) -> str | None:
        if self._public:
            return f"{self._public}/{key}"
        url: str = await self._client.generate_presigned_url(
            "get_object", Params={"Bucket": self._bucket, "Key": key}, ExpiresIn=self._ttl
        )
        return url
