"""A minimal HTTP/1.1 server on loopback for XRPC stand-ins (a relay's listing, a PDS that fails, a PLC that
stalls). One request per connection: every response says `connection: close`, which keeps the parser to the
request line and headers (the stand-ins only answer GETs)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"

    @classmethod
    def json(cls, value: Any, status: int = 200) -> Response:
        return cls(status=status, body=json.dumps(value).encode())


Handler = Callable[[Request], Awaitable[Response]]
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 500: "Internal Server Error", 502: "Bad Gateway"}


@dataclass
class StubServer:
    port: int
    requests: list[Request] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.asynccontextmanager
async def stub_server(handler: Handler) -> AsyncIterator[StubServer]:
    stub = StubServer(port=0)
    tasks: set[asyncio.Task[None]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            url = urlsplit(target)
            request = Request(method, url.path, {k: v[-1] for k, v in parse_qs(url.query).items()})
            stub.requests.append(request)
            resp = await handler(request)
            writer.write(
                f"HTTP/1.1 {resp.status} {REASONS.get(resp.status, 'Status')}\r\n"
                f"content-type: {resp.content_type}\r\ncontent-length: {len(resp.body)}\r\n"
                "connection: close\r\n\r\n".encode("latin-1")
                + resp.body
            )
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def track(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Kept so that teardown can cancel a handler still waiting (a stalled response to a killed client).
        task = asyncio.create_task(serve(reader, writer))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    server = await asyncio.start_server(track, "127.0.0.1", 0)
    stub.port = server.sockets[0].getsockname()[1]
    try:
        yield stub
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()
