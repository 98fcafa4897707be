"""fm.plyr.uploadAudio: store an audio file, return what a `fm.plyr.track` record needs to point at it.

The body is the raw file (`Content-Type: audio/*`), authorised by a service-auth JWT (`lxm` = this method),
exactly as for reads. The file is never held in memory: it is streamed to a spool file while being hashed and
counted (refused as soon as it passes the size limit, and up front when Content-Length already says so), then
checked by mutagen (indexer/audio/probe.py), then stored under `audio/<sha256>` unless those bytes are already
there. The spool file is removed whatever happens, so an interrupted upload leaves no object, no row and no
file. Uploads are rate limited per uploader (appview/ratelimit.py): requests per hour, and new bytes per day.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import IO, Any

import msgspec
from litestar import Request, Response, post
from litestar.di import NamedDependency
from litestar.exceptions import ClientException, InternalServerException
from litestar.openapi.datastructures import ResponseSpec

from appview.context import AppContext
from appview.http import XrpcError
from appview.moderation import refuse_taken_down_account
from appview.ratelimit import upload_bytes
from appview.views import ErrorOutput
from indexer.audio.probe import InvalidAudio, kind_of, probe
from indexer.audio.refs import audio_url
from indexer.audio.store import audio_key
from indexer.metrics import Metrics

log = logging.getLogger(__name__)

NSID = "fm.plyr.uploadAudio"
# Spool writes are batched to this size and done in a thread: the event loop never waits on the disk.
_FLUSH = 1024 * 1024


class UploadAudioOutput(msgspec.Struct, kw_only=True, rename="camel"):
    audio_url: str
    sha256: str
    size: int
    mime_type: str
    file_type: str
    duration: int


_encoder = msgspec.json.Encoder()


def _too_large(limit: int) -> XrpcError:
    return XrpcError("PayloadTooLarge", f"audio files are limited to {limit} bytes", status=413)


def _append(f: IO[bytes], digest: Any, data: bytearray) -> None:
    digest.update(data)
    f.write(data)


async def _spool(request: Request[Any, Any, Any], f: IO[bytes], limit: int) -> tuple[str, int]:
    """Copy the body into `f`: (sha256 hex, size)."""
    digest = hashlib.sha256()
    size = 0
    buf = bytearray()
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            buf += chunk
            if len(buf) >= _FLUSH:
                await asyncio.to_thread(_append, f, digest, buf)
                buf.clear()
    except InternalServerException as exc:  # litestar's way of saying the client went away mid-body
        raise XrpcError("UploadInterrupted", "the upload ended before the whole body arrived") from exc
    except ClientException as exc:
        raise XrpcError("InvalidRequest", str(exc.detail)) from exc
    if buf:
        await asyncio.to_thread(_append, f, digest, buf)
    await asyncio.to_thread(f.flush)
    return digest.hexdigest(), size


async def upload(request: Request[Any, Any, Any], ctx: AppContext) -> tuple[UploadAudioOutput, bool]:
    """The upload's result, and whether its bytes were new to the store."""
    uploader = await ctx.auth.viewer(request.headers.get("authorization"), NSID)
    if uploader is None:
        raise XrpcError("AuthRequired", f"uploads need a service-auth token (lxm {NSID})", status=401)
    await refuse_taken_down_account(ctx.pool, uploader)
    content_type = request.headers.get("content-type")
    try:
        kind_of(content_type)
    except InvalidAudio as exc:
        raise XrpcError("InvalidAudio", str(exc)) from exc
    limit = ctx.settings.audio_max_bytes
    try:
        announced = request.content_length
    except ClientException as exc:
        raise XrpcError("InvalidRequest", str(exc.detail)) from exc
    if announced is not None and announced > limit:
        raise _too_large(limit)
    store = ctx.stored_audio.store
    fd, name = tempfile.mkstemp(prefix="upload-", dir=store.spool_dir)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            sha256, size = await _spool(request, f, limit)
        if size == 0:
            raise XrpcError("InvalidAudio", "the body is empty")
        try:
            probed = await asyncio.to_thread(probe, path, content_type)
        except InvalidAudio as exc:
            raise XrpcError("InvalidAudio", str(exc)) from exc
        key = audio_key(sha256)

        async def already_stored() -> bool:
            return await ctx.stored_audio.mime_type(sha256) is not None

        # 429 when the uploader's daily byte quota has no room for the file; bytes already stored do not count.
        async with upload_bytes(ctx.limits, uploader, size, already_stored) as counted:
            stored = await store.put_file(key, path, content_type=probed.mime_type)
            await ctx.stored_audio.record(sha256, size, probed, uploader)
            if not stored and not await store.exists(key):
                # A cleanup deleted the (orphaned) object between our check and our row update: store it again.
                stored = await store.put_file(key, path, content_type=probed.mime_type)
            counted[0] = stored
    finally:
        # Synchronous on purpose: it must run even when the request task is being cancelled.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)
    out = UploadAudioOutput(
        audio_url=audio_url(ctx.settings.public_origin, sha256),
        sha256=sha256,
        size=size,
        mime_type=probed.mime_type,
        file_type=probed.file_type,
        duration=probed.duration,
    )
    return out, stored


_OUTCOMES = {
    "PayloadTooLarge": "too_large",
    "InvalidAudio": "invalid_audio",
    "UploadInterrupted": "interrupted",
    "RateLimitExceeded": "rate_limited",
}


@post(
    f"/xrpc/{NSID}",
    operation_id=NSID,
    status_code=200,
    # Our own limit (PLYR_APPVIEW_AUDIO_MAX_BYTES) is enforced while streaming, with an XRPC error.
    request_max_body_size=None,
    responses={
        200: ResponseSpec(data_container=UploadAudioOutput, description="The stored file"),
        400: ResponseSpec(data_container=ErrorOutput, description="Not audio of the declared type"),
        401: ResponseSpec(data_container=ErrorOutput, description="Missing or invalid service-auth token"),
        413: ResponseSpec(data_container=ErrorOutput, description="Larger than the configured limit"),
    },
)
async def handler(
    request: Request[Any, Any, Any], ctx: NamedDependency[AppContext], metrics: NamedDependency[Metrics]
) -> Response[bytes]:
    try:
        out, stored = await upload(request, ctx)
    except XrpcError as exc:
        outcome = "unauthorized" if exc.status == 401 else _OUTCOMES.get(exc.error, "refused")
        metrics.audio_uploads.labels(outcome).inc()
        log.info("audio upload refused", extra={"outcome": outcome, "error": exc.error, "detail": exc.message[:300]})
        raise
    except Exception:
        metrics.audio_uploads.labels("failed").inc()
        raise
    metrics.audio_uploads.labels("stored" if stored else "deduplicated").inc()
    metrics.audio_upload_bytes.inc(out.size)
    log.info(
        "audio uploaded",
        extra={"sha256": out.sha256, "size": out.size, "mime_type": out.mime_type, "new": stored},
    )
    return Response(_encoder.encode(out), media_type="application/json", headers={"Cache-Control": "no-store"})
