"""The HTTP edge of every XRPC read: parameters in, JSON out, errors XRPC-shaped.

- Parameters: the shared query parameter types (limit, cursor, actor, at:// URI) and their checks beyond
  what litestar validates (`split_at_uri`, `actor_ref`), and the viewer a service-auth token names.
- Cursors: keyset positions. A page ends at a (sortAt, cid) position and the next page starts strictly after
  it, so rows inserted while a client pages never cause a duplicate or a skipped row among those already
  there. Wire format: `<sortAt as epoch microseconds>__<cid>` (microseconds: timestamptz precision, so the
  position is exact). A ranked listing (search) prefixes its rank, `<rank>__<sortAt>__<cid>`; a listing on
  an integer (a comment's playback time) is `<integer>__<cid>`. A malformed cursor is an InvalidRequest.
- Responses: JSON with an ETag, revalidated with If-None-Match, cached publicly unless a viewer's.
- Errors: every failure is `{"error": "...", "message": "..."}` with a 4xx/5xx status (`xrpc_error_handler`,
  registered for every exception by appview/app.py). A message says what is wrong first and stays short: a
  value the client sent is quoted at most `ECHO_CHARS` characters long (`echo`), never a whole query string.
  An XRPC method this service does not serve is 501 `MethodNotImplemented`, as ATProto clients expect; any
  other unknown path is 404 `NotFound`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal, Protocol

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, MethodNotAllowedException, NotFoundException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import QueryParameter

from appview.views import ErrorOutput
from indexer.atproto.syntax import is_at_uri, is_did, is_handle

log = logging.getLogger(__name__)

# -- errors -------------------------------------------------------------------------------------------------


class XrpcError(Exception):
    def __init__(self, error: str, message: str, status: int = 400, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.error = error
        self.message = message
        self.status = status
        # Response headers that belong with the error, e.g. an upstream PDS's WWW-Authenticate / DPoP-Nonce.
        self.headers = headers


# How much of a client's value a message quotes: enough to recognise it, never a whole hostile input.
ECHO_CHARS = 100
# Longest message the edge writes for an error it did not raise itself (a framework's detail, validation).
MESSAGE_CHARS = 300
XRPC_PREFIX = "/xrpc/"


def clip(text: str, limit: int = ECHO_CHARS) -> str:
    """`text` cut to `limit` characters, with an ellipsis when something was cut."""
    return text if len(text) <= limit else text[:limit] + "…"


def echo(value: str) -> str:
    """A client's value quoted for a message, clipped."""
    return repr(clip(value))


def xrpc_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, str]]:
    if isinstance(exc, XrpcError):
        return Response({"error": exc.error, "message": exc.message}, status_code=exc.status, headers=exc.headers)
    if isinstance(exc, ValidationException):
        return Response({"error": "InvalidRequest", "message": _validation_message(exc)}, status_code=400)
    if isinstance(exc, NotFoundException):
        path = request.scope.get("path", "")
        # No route matched (routing sets `route_handler` only on a match): under /xrpc/ that is a method we do not
        # serve, which ATProto spells 501 MethodNotImplemented.
        if "route_handler" not in request.scope and path.startswith(XRPC_PREFIX):
            method = path.removeprefix(XRPC_PREFIX)
            return Response(
                {"error": "MethodNotImplemented", "message": f"method not implemented: {echo(method)}"},
                status_code=501,
            )
        return Response({"error": "NotFound", "message": clip(str(exc.detail), MESSAGE_CHARS)}, status_code=404)
    if isinstance(exc, MethodNotAllowedException):
        allowed = _allowed_methods(exc)
        message = f"method {request.method} not allowed here; use {', '.join(allowed) or 'another'}"
        return Response(
            {"error": "InvalidRequest", "message": clip(message, MESSAGE_CHARS)},
            status_code=405,
            headers={"Allow": ", ".join(allowed)} if allowed else None,
        )
    if isinstance(exc, HTTPException):
        name = "InvalidRequest" if exc.status_code < 500 else "InternalServerError"
        message = clip(str(exc.detail), MESSAGE_CHARS)
        return Response({"error": name, "message": message}, status_code=exc.status_code, headers=exc.headers)
    log.exception("unhandled error", extra={"path": request.url.path})
    return Response({"error": "InternalServerError", "message": "internal error"}, status_code=500)


def _allowed_methods(exc: MethodNotAllowedException) -> list[str]:
    """The route's methods, from the `allow` header routing puts on the exception; HEAD is answered wherever GET
    is (appview/routes/head.py), so it is allowed there too."""
    headers = {k.lower(): v for k, v in (exc.headers or {}).items()}
    allowed = [m.strip().upper() for m in headers.get("allow", "").split(",") if m.strip()]
    if "GET" in allowed and "HEAD" not in allowed:
        allowed.append("HEAD")
    return sorted(allowed)


def _validation_message(exc: ValidationException) -> str:
    """What was wrong, per parameter or body field (e.g. "query parameter limit: Expected `int`, got `str`"), so
    a client knows what to fix. litestar's own detail names the request with its whole query string, which a
    message must not echo; it is used only when it says something else (e.g. a missing parameter)."""
    extra = exc.extra if isinstance(exc.extra, list) else []
    problems = []
    for item in extra[:3]:
        if not isinstance(item, dict) or not item.get("message"):
            continue
        source = getattr(item.get("source"), "value", item.get("source"))
        where = {"query": "query parameter", "body": "body field", "header": "header"}.get(str(source), "")
        key = str(item.get("key") or "")
        subject = f"{where} {key[:ECHO_CHARS]}".strip()
        problem = clip(str(item["message"]))
        problems.append(f"{subject}: {problem}" if subject else problem)
    if problems:
        return clip("; ".join(problems), MESSAGE_CHARS)
    detail = str(exc.detail)
    if not detail or detail.startswith("Validation failed for"):
        return "invalid request"
    return clip(detail, MESSAGE_CHARS)


def not_found(what: str, name: str) -> XrpcError:
    return XrpcError("NotFound", f"{what} not found: {clip(name)}", status=404)


# -- parameters ---------------------------------------------------------------------------------------------

Limit = Annotated[int, QueryParameter(ge=1, le=100, description="Page size (1-100).")]
Cursor = Annotated[str | None, QueryParameter(max_length=512, description="Opaque cursor from the previous page.")]
Actor = Annotated[str, QueryParameter(min_length=1, max_length=2048, description="The actor's DID or handle.")]
AtUri = Annotated[str, QueryParameter(min_length=1, max_length=8192, description="An at:// URI.")]
DEFAULT_LIMIT = 50


class _Auth(Protocol):
    async def viewer(self, authorization: str | None, nsid: str) -> str | None: ...


class _WithAuth(Protocol):
    # The app's context (appview/context.py), which imports this module through its parts.
    @property
    def auth(self) -> _Auth: ...


async def viewer_of(ctx: _WithAuth, request: Request[Any, Any, Any], nsid: str) -> str | None:
    """The DID of the viewer a valid service-auth token names (appview/auth.py); None for an anonymous
    request."""
    return await ctx.auth.viewer(request.headers.get("authorization"), nsid)


def split_at_uri(uri: str, collection: str) -> tuple[str, str]:
    """(did, rkey) of an at:// URI naming a `collection` record by DID; InvalidRequest otherwise."""
    if not is_at_uri(uri):
        raise XrpcError("InvalidRequest", f"not an at:// URI: {echo(uri)}")
    parts = uri.removeprefix("at://").split("/")
    if len(parts) != 3 or parts[1] != collection or not is_did(parts[0]) or not parts[2]:
        raise XrpcError("InvalidRequest", f"not an at://<did>/{collection}/<rkey> URI: {echo(uri)}")
    return parts[0], parts[2]


class ActorRef(msgspec.Struct, frozen=True):
    """An `actor` parameter: a DID, or a handle lower-cased as handles are stored; `given` as the client
    wrote it, for messages."""

    by: Literal["did", "handle"]
    value: str
    given: str


def actor_ref(actor: str) -> ActorRef:
    if is_did(actor):
        return ActorRef("did", actor, actor)
    if is_handle(actor):
        return ActorRef("handle", actor.lower(), actor)
    raise XrpcError("InvalidRequest", f"not a DID or a handle: actor {echo(actor)}")


def as_utc(at: dt.datetime | None) -> dt.datetime | None:
    """A time parameter without a zone is read as UTC."""
    return at.replace(tzinfo=dt.UTC) if at is not None and at.tzinfo is None else at


# -- cursors ------------------------------------------------------------------------------------------------

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ONE_US = dt.timedelta(microseconds=1)
# CIDs are multibase strings: base32 lower ("b..."), base58btc ("z...") or legacy CIDv0 ("Qm...").
_CID = re.compile(r"[A-Za-z0-9]{8,128}")
_INT = re.compile(r"-?[0-9]{1,19}")


class Position(msgspec.Struct, frozen=True):
    sort_at: dt.datetime
    cid: str


class Positioned(Protocol):
    """A row that ends a page of a (sortAt, cid) listing."""

    @property
    def sort_at(self) -> dt.datetime: ...

    @property
    def sort_cid(self) -> str: ...


def to_micros(at: dt.datetime) -> int:
    return (at - EPOCH) // _ONE_US


def pack(sort_at: dt.datetime, cid: str) -> str:
    return f"{to_micros(sort_at)}__{cid}"


def pack_ranked(rank: int, sort_at: dt.datetime, cid: str) -> str:
    return f"{rank}__{pack(sort_at, cid)}"


def pack_int(value: int, cid: str) -> str:
    return f"{value}__{cid}"


def next_cursor(page: Sequence[Positioned], limit: int) -> str | None:
    """The cursor after a full page; none after a short one, which is the end of the listing."""
    return pack(page[-1].sort_at, page[-1].sort_cid) if len(page) == limit else None


def _bad(cursor: str) -> XrpcError:
    return XrpcError("InvalidRequest", f"malformed cursor: {echo(cursor)}")


def _micros(text: str, cursor: str) -> dt.datetime:
    if not _INT.fullmatch(text):
        raise _bad(cursor)
    try:
        return EPOCH + dt.timedelta(microseconds=int(text))
    except OverflowError as exc:
        raise _bad(cursor) from exc


def unpack(cursor: str | None) -> Position | None:
    if cursor is None or cursor == "":
        return None
    sort_at, sep, cid = cursor.partition("__")
    if not sep or not _CID.fullmatch(cid):
        raise _bad(cursor)
    return Position(_micros(sort_at, cursor), cid)


def unpack_ranked(cursor: str | None) -> tuple[int, Position] | None:
    if cursor is None or cursor == "":
        return None
    rank, sep, rest = cursor.partition("__")
    if not sep or not rank.isdigit() or len(rank) > 2:
        raise _bad(cursor)
    position = unpack(rest)
    assert position is not None
    return int(rank), position


def unpack_int(cursor: str | None) -> tuple[int, str] | None:
    """`<integer>__<cid>` positions that sort on an integer (e.g. a comment's playback time)."""
    if cursor is None or cursor == "":
        return None
    value, sep, cid = cursor.partition("__")
    if not sep or not _INT.fullmatch(value) or not _CID.fullmatch(cid):
        raise _bad(cursor)
    number = int(value)
    if not -(2**63) <= number < 2**63:
        raise _bad(cursor)
    return number, cid


# -- responses ----------------------------------------------------------------------------------------------

_encoder = msgspec.json.Encoder()


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


def ok(output: type[msgspec.Struct]) -> dict[int, ResponseSpec]:
    """The documented responses of a read: `output`, or an XRPC error."""
    return {
        200: ResponseSpec(data_container=output, description="OK"),
        400: ResponseSpec(data_container=ErrorOutput, description="Invalid request"),
    }
