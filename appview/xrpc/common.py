"""What every XRPC read shares: parameter checks, actor lookup and the cached JSON response."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

import msgspec
from litestar import Request, Response
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import QueryParameter

from appview.context import AppContext
from appview.cursor import Position
from appview.errors import XrpcError
from appview.hydrate import ActorRow, Conn
from appview.views import ErrorOutput
from indexer.atproto.lexicon.formats import is_at_uri, is_did, is_handle

Limit = Annotated[int, QueryParameter(ge=1, le=100, description="Page size (1-100).")]
Cursor = Annotated[str | None, QueryParameter(max_length=512, description="Opaque cursor from the previous page.")]
Actor = Annotated[str, QueryParameter(min_length=1, max_length=2048, description="The actor's DID or handle.")]
AtUri = Annotated[str, QueryParameter(min_length=1, max_length=8192, description="An at:// URI.")]
DEFAULT_LIMIT = 50

_encoder = msgspec.json.Encoder()


async def viewer_of(ctx: AppContext, request: Request[Any, Any, Any], nsid: str) -> str | None:
    return await ctx.auth.viewer(request.headers.get("authorization"), nsid)


def respond(
    request: Request[Any, Any, Any], body: msgspec.Struct, *, viewer: str | None, max_age: int
) -> Response[bytes]:
    """JSON with an ETag and caching headers. A viewer's response mentions the viewer (their likes) and must
    never land in a shared cache."""
    payload = _encoder.encode(body)
    etag = '"' + hashlib.blake2b(payload, digest_size=12).hexdigest() + '"'
    headers = {
        "ETag": etag,
        "Cache-Control": "private, no-cache" if viewer else f"public, max-age={max_age}",
        "Vary": "Authorization",
    }
    if request.headers.get("if-none-match") == etag:
        return Response(b"", status_code=304, headers=headers)
    return Response(payload, media_type="application/json", headers=headers)


def split_at_uri(uri: str, collection: str) -> tuple[str, str]:
    """(did, rkey) of an at:// URI naming a `collection` record by DID; InvalidRequest otherwise."""
    if not is_at_uri(uri):
        raise XrpcError("InvalidRequest", f"not an at:// URI: {uri[:200]!r}")
    parts = uri.removeprefix("at://").split("/")
    if len(parts) != 3 or parts[1] != collection or not is_did(parts[0]) or not parts[2]:
        raise XrpcError("InvalidRequest", f"expected at://<did>/{collection}/<rkey>, got {uri[:200]!r}")
    return parts[0], parts[2]


_ACTOR_BY_DID = """
SELECT a.did, a.handle, a.active, a.status, p.avatar FROM actors a LEFT JOIN profiles p ON p.did = a.did
WHERE a.did = %s
"""
_ACTOR_BY_HANDLE = """
SELECT a.did, a.handle, a.active, a.status, p.avatar FROM actors a LEFT JOIN profiles p ON p.did = a.did
WHERE a.handle = %s
"""


def actor_lookup(actor: str) -> tuple[str, tuple[str]]:
    """The statement and parameters that find the actor named by DID or handle (see `checked_actor`)."""
    if is_did(actor):
        return _ACTOR_BY_DID, (actor,)
    if is_handle(actor):
        return _ACTOR_BY_HANDLE, (actor.lower(),)
    raise XrpcError("InvalidRequest", f"actor must be a DID or a handle, got {actor[:200]!r}")


def checked_actor(found: tuple[Any, ...] | None, actor: str) -> ActorRow:
    """The looked-up actor, if active; errors say why not (unknown, deactivated, taken down)."""
    if found is None:
        raise XrpcError("NotFound", f"actor not found: {actor[:200]}", status=404)
    did, handle, active, status, avatar = found
    if not active:
        error = "AccountTakedown" if status == "takendown" else "AccountDeactivated"
        raise XrpcError(error, f"account is {status}")
    return ActorRow(did, handle, True, avatar)


async def resolve_actor(conn: Conn, actor: str) -> ActorRow:
    """The actor named by DID or handle, if active; errors say why not (unknown, deactivated, taken down)."""
    sql, params = actor_lookup(actor)
    cur = await conn.execute(sql, params)
    return checked_actor(await cur.fetchone(), actor)


def ok(output: type[msgspec.Struct]) -> dict[int, ResponseSpec]:
    return {
        200: ResponseSpec(data_container=output, description="OK"),
        400: ResponseSpec(data_container=ErrorOutput, description="Invalid request"),
    }


def after(position: Position | None, sort: str = "sort_at", cid: str = "cid") -> tuple[str, dict[str, Any]]:
    """The keyset condition for a descending (sortAt, cid) walk, and its parameters. Two statement texts
    (first page, later pages) rather than one with `IS NULL OR`, so each keeps an index range scan."""
    if position is None:
        return "", {}
    return f" AND ({sort}, {cid}) < (%(after)s, %(after_cid)s)", {"after": position.sort_at, "after_cid": position.cid}
