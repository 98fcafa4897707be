"""Forwarding to a user's PDS and mapping what comes back to XRPC answers.

One shared httpx client (pooled keep-alive connections, no redirects, connections opened only to checked
addresses: indexer.atproto.netguard). The caller's credentials pass through untouched; the headers an OAuth client needs
to retry (`DPoP-Nonce`, `WWW-Authenticate`) come back with every answer, success or error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlencode

import httpx
import msgspec

from appview.http import XrpcError
from indexer.atproto.netguard import ForbiddenHost, NetGuard, guarded_client
from indexer.metrics import Metrics

log = logging.getLogger(__name__)

REQUEST_HEADERS = ("authorization", "dpop", "atproto-accept-labelers")
RESPONSE_HEADERS = ("dpop-nonce", "www-authenticate")
MAX_RESPONSE_BYTES = 1024 * 1024


class _XrpcErrorBody(msgspec.Struct):
    error: str
    message: str | None = None


class UpstreamOk(msgspec.Struct, frozen=True):
    body: bytes
    headers: dict[str, str]


class Forwarder:
    def __init__(self, guard: NetGuard, *, timeout: float, metrics: Metrics) -> None:
        self.timeout = timeout
        self._metrics = metrics
        self._client = guarded_client(
            guard,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64, keepalive_expiry=30.0),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def post(
        self,
        method: str,
        base: str,
        content: bytes | AsyncIterator[bytes],
        incoming: Mapping[str, str],
        *,
        content_type: str = "application/json",
        content_length: int | None = None,
        total_timeout: bool = True,
    ) -> UpstreamOk:
        """POST to `base`/xrpc/`method`. Returns a 2xx JSON answer; raises XrpcError for anything else, the
        PDS's own 4xx XRPC errors passed through as they are. `total_timeout` bounds the whole exchange (record
        writes); a streamed upload is bounded per read/write instead, as a large blob legitimately takes long."""
        label = method.rsplit(".", 1)[-1]
        headers = {name: value for name in REQUEST_HEADERS if (value := incoming.get(name)) is not None}
        headers["content-type"] = content_type
        if content_length is not None:
            headers["content-length"] = str(content_length)
        started = time.perf_counter()
        try:
            timer = asyncio.timeout(self.timeout) if total_timeout else contextlib.nullcontext()
            async with timer:
                request = self._client.stream("POST", f"{base}/xrpc/{method}", content=content, headers=headers)
                async with request as resp:
                    body = await _read_capped(resp)
        except ForbiddenHost as exc:
            self._count(label, "refused")
            raise XrpcError("InvalidRequest", f"refusing to write to the repo's PDS: {exc}") from None
        except (TimeoutError, httpx.TimeoutException):
            self._count(label, "timeout")
            raise XrpcError(
                "UpstreamTimeout",
                f"the PDS at {base} did not answer within {self.timeout:g}s; the write may or may not have been"
                " applied (the repo itself tells)",
                504,
            ) from None
        except httpx.HTTPError as exc:
            self._count(label, "upstream_failure")
            message = f"could not reach the PDS at {base}: {type(exc).__name__}"
            raise XrpcError("UpstreamFailure", message, 502) from None
        finally:
            self._metrics.proxy_upstream_seconds.labels(label).observe(time.perf_counter() - started)
        return self._answer(label, base, resp, body)

    async def get_json(self, method: str, base: str, params: Mapping[str, str]) -> tuple[int, Any]:
        """A small unauthenticated GET (e.g. getRecord); (status, decoded JSON or None). Raises nothing the
        caller has to map: failures read as status 0."""
        try:
            async with asyncio.timeout(self.timeout):
                async with self._client.stream("GET", f"{base}/xrpc/{method}?{urlencode(params)}") as resp:
                    body = await _read_capped(resp)
        except (ForbiddenHost, TimeoutError, httpx.HTTPError):
            return 0, None
        if body is None:
            return 0, None
        try:
            return resp.status_code, msgspec.json.decode(body)
        except msgspec.DecodeError:
            return resp.status_code, None

    def _answer(self, method: str, base: str, resp: httpx.Response, body: bytes | None) -> UpstreamOk:
        passback = {name: value for name in RESPONSE_HEADERS if (value := resp.headers.get(name)) is not None}
        status = resp.status_code
        if body is None:
            self._count(method, "upstream_failure")
            raise XrpcError("UpstreamFailure", f"the PDS at {base} sent an oversized answer", 502, passback)
        if 200 <= status < 300:
            if not _is_json(resp):
                self._count(method, "upstream_failure")
                raise XrpcError("UpstreamFailure", f"the PDS at {base} answered {status} without JSON", 502, passback)
            return UpstreamOk(body, passback)
        if 400 <= status < 500:
            try:
                err = msgspec.json.decode(body, type=_XrpcErrorBody)
            except msgspec.DecodeError:
                self._count(method, "upstream_failure")
                raise XrpcError(
                    "UpstreamFailure", f"the PDS at {base} answered {status} without an XRPC error", 502, passback
                ) from None
            self._count(method, "pds_error")
            raise XrpcError(err.error[:100], (err.message or "")[:2000], status, passback)
        self._count(method, "upstream_failure")
        detail = ""
        with contextlib.suppress(msgspec.DecodeError):
            err = msgspec.json.decode(body, type=_XrpcErrorBody)
            detail = f": {err.error[:100]}" + (f": {err.message[:300]}" if err.message else "")
        raise XrpcError("UpstreamFailure", f"the PDS at {base} answered HTTP {status}{detail}", 502, passback)

    def _count(self, method: str, outcome: str) -> None:
        self._metrics.proxy_writes.labels(method, outcome).inc()


async def _read_capped(resp: httpx.Response) -> bytes | None:
    """The body, or None if it is larger than any XRPC write answer should be."""
    declared = resp.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_RESPONSE_BYTES:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.aiter_bytes():
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _is_json(resp: httpx.Response) -> bool:
    content_type: str = resp.headers.get("content-type", "")
    return content_type.split(";", 1)[0].strip().lower() == "application/json"
