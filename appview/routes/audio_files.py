"""`GET|HEAD /audio-files/<sha256>`: the stable address of uploaded audio (the `audioUrl` uploads return).

With the local backend the file is served here, with HTTP Range (one range per request; a multi-range request
gets the whole file, as RFC 9110 allows), `ETag` = the digest and immutable caching: the bytes behind a digest
never change. With S3 the client is redirected (307) to the bucket's public URL or a presigned GET, so the
address in records survives a change of storage.

An object whose uploader published it only in supporter-gated tracks is gated like those tracks (`/audio`): it is
served only to a request signed by the uploader or a proven supporter of theirs, privately (no shared caching).
Only the uploader's own tracks count, so nobody can open or close someone else's upload by naming it in a record
of theirs; an object no track of its uploader names yet (just uploaded) is not gated. With `S3_PUBLIC_URL` the
bucket itself is public: gating then holds only for this address, not for the bucket's.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from litestar import Request, Response, route
from litestar.di import NamedDependency
from litestar.enums import HttpMethod
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath
from litestar.response import Stream

from appview.audio.gate import gate_type
from appview.context import AppContext
from appview.http import XrpcError
from appview.moderation import refuse_taken_down_audio
from appview.routes.audio import GATE_RESPONSES, admit_gated
from appview.rules import PRIVATE
from appview.views import ErrorOutput
from indexer.audio.refs import REF_PREDICATE, REF_SHA
from indexer.audio.store import audio_key

IMMUTABLE = "public, max-age=31536000, immutable"
_SHA = re.compile(r"[0-9a-fA-F]{64}")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_CHUNK = 256 * 1024

# The gates of the uploader's own tracks naming the object (the index on the reference, migration 0005).
_UPLOADER_GATES = f"""
SELECT t.did, (e.record->'supportGate')::text
FROM tracks t JOIN events e ON e.id = t.event_id
WHERE {REF_PREDICATE.replace("%", "%%")} AND {REF_SHA} = %(sha)s
  AND t.did = (SELECT uploaded_by FROM audio_objects WHERE sha256 = %(sha)s)
"""


async def object_gate(ctx: AppContext, sha256: str) -> tuple[str, str] | None:
    """(uploader, gate) when the object is gated: every track of its uploader naming it carries a
    `supportGate`, and there is at least one. Tracks of deactivated accounts count: hiding an account must not
    open its gated audio."""
    async with ctx.pool.connection() as conn:
        cur = await conn.execute(_UPLOADER_GATES, {"sha": sha256})
        found = [(str(did), gate) for did, gate in await cur.fetchall()]
    if not found or any(gate_type(gate) is None for _, gate in found):
        return None
    did, gate = found[0]
    return did, str(gate)


class Unsatisfiable(Exception):
    pass


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive (first, last) byte to send, None for the whole file; Unsatisfiable for a range past the
    end. A header we do not understand is ignored, as RFC 9110 allows."""
    if not header:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None or (not match[1] and not match[2]):
        return None
    if not match[1]:  # suffix: the last N bytes
        n = int(match[2])
        if n == 0:
            raise Unsatisfiable
        return max(0, size - n), size - 1
    first = int(match[1])
    if first >= size:
        raise Unsatisfiable
    last = int(match[2]) if match[2] else size - 1
    if last < first:
        return None  # syntactically invalid: ignored
    return first, min(last, size - 1)


async def _read(path: Path, first: int, last: int) -> AsyncIterator[bytes]:
    f = await asyncio.to_thread(path.open, "rb")
    try:
        await asyncio.to_thread(f.seek, first)
        left = last - first + 1
        while left > 0:
            chunk = await asyncio.to_thread(f.read, min(_CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk
    finally:
        await asyncio.to_thread(f.close)


@route(
    "/audio-files/{sha256:str}",
    http_method=[HttpMethod.GET, HttpMethod.HEAD],
    include_in_schema=True,
    responses={
        206: ResponseSpec(data_container=bytes, description="The requested range"),
        307: ResponseSpec(data_container=None, description="Where the object plays from (S3 storage)"),
        404: ResponseSpec(data_container=ErrorOutput, description="No such object"),
        410: ResponseSpec(data_container=ErrorOutput, description="Taken down by the operator"),
        416: ResponseSpec(data_container=ErrorOutput, description="Range past the end"),
        **GATE_RESPONSES,
    },
)
async def audio_file(
    request: Request[Any, Any, Any], ctx: NamedDependency[AppContext], sha256: FromPath[str]
) -> Response[Any]:
    if not _SHA.fullmatch(sha256):
        raise XrpcError("NotFound", "no such audio file", status=404)
    sha = sha256.lower()
    await refuse_taken_down_audio(ctx.pool, sha)
    stored = ctx.stored_audio
    mime = await stored.mime_type(sha)
    if mime is None:
        raise XrpcError("NotFound", "no such audio file", status=404)
    gate = await object_gate(ctx, sha)
    if gate is not None:
        await admit_gated(ctx, request, *gate)
    key = audio_key(sha)
    url = await stored.store.url(key)
    if url is not None:
        # A presigned URL expires: caches may keep the redirect for a fraction of its lifetime only.
        max_age = 3600 if stored.store.url_is_public else max(0, ctx.settings.storage.url_ttl // 4)
        cache = PRIVATE if gate is not None else {"Cache-Control": f"public, max-age={max_age}"}
        return Response(b"", status_code=307, headers={"Location": url, **cache})
    path = await stored.store.local_path(key)
    try:
        size = (await asyncio.to_thread(path.stat)).st_size if path is not None else -1
    except FileNotFoundError:
        size = -1
    if path is None or size < 0:
        raise XrpcError("NotFound", "no such audio file", status=404)
    etag = f'"{sha}"'
    headers = {"ETag": etag, "Cache-Control": IMMUTABLE, "Accept-Ranges": "bytes"}
    if gate is not None:
        headers.update(PRIVATE)
    if etag in (request.headers.get("if-none-match") or ""):
        return Response(b"", status_code=304, headers=headers)
    wanted = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if if_range is not None and if_range.strip() != etag:
        wanted = None  # the client's partial copy is of something else: send it all
    try:
        span = byte_range(wanted, size)
    except Unsatisfiable:
        headers["Content-Range"] = f"bytes */{size}"
        raise XrpcError("RangeNotSatisfiable", f"the file has {size} bytes", status=416, headers=headers) from None
    first, last = span if span is not None else (0, size - 1)
    status = 200 if span is None else 206
    if span is not None:
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    headers["Content-Length"] = str(last - first + 1)
    headers["Content-Type"] = mime
    if request.method == HttpMethod.HEAD:
        return Response(b"", status_code=status, headers=headers)
    return Stream(_read(path, first, last), status_code=status, headers=headers, media_type=mime)
