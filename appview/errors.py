"""XRPC-shaped errors: every failure is `{"error": "...", "message": "..."}` with a 4xx/5xx status."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException

log = logging.getLogger(__name__)


class XrpcError(Exception):
    def __init__(self, error: str, message: str, status: int = 400, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.error = error
        self.message = message
        self.status = status
        # Response headers that belong with the error, e.g. an upstream PDS's WWW-Authenticate / DPoP-Nonce.
        self.headers = headers


def xrpc_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, str]]:
    if isinstance(exc, XrpcError):
        return Response({"error": exc.error, "message": exc.message}, status_code=exc.status, headers=exc.headers)
    if isinstance(exc, ValidationException):
        return Response({"error": "InvalidRequest", "message": _validation_message(exc)}, status_code=400)
    if isinstance(exc, NotFoundException):
        return Response({"error": "NotFound", "message": str(exc.detail)}, status_code=404)
    if isinstance(exc, HTTPException):
        name = "InvalidRequest" if exc.status_code < 500 else "InternalServerError"
        return Response({"error": name, "message": str(exc.detail)}, status_code=exc.status_code)
    log.exception("unhandled error", extra={"path": request.url.path})
    return Response({"error": "InternalServerError", "message": "internal error"}, status_code=500)


def _validation_message(exc: ValidationException) -> str:
    """The detail plus what was wrong (e.g. "Object missing required field `record`"), so a client knows what
    to fix."""
    extra = exc.extra if isinstance(exc.extra, list) else []
    problems = [str(item["message"]) for item in extra if isinstance(item, dict) and item.get("message")]
    if not problems:
        return str(exc.detail)
    return f"{exc.detail}: {'; '.join(problems[:3])}"[:1000]
