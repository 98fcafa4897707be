"""Support for the write-proxy tests: the AppView served over real HTTP on loopback (uvicorn, in this process),
and a scriptable stand-in PDS that records what reaches it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import uvicorn
from litestar import Litestar


@contextlib.asynccontextmanager
async def serve_app(app: Litestar) -> AsyncIterator[str]:
    """The app on a free loopback port; yields its base URL."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started:
                break
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Reply = tuple[int, dict[str, str], bytes]


def json_reply(status: int, value: Any, headers: dict[str, str] | None = None) -> Reply:
    return status, {"content-type": "application/json", **(headers or {})}, json.dumps(value).encode()


@dataclass
class StubPds:
    """A threaded HTTP server answering with `respond(seen)`; `hang` makes it never answer (until closed).
    `first_chunk` is set once the first bytes of a request body have arrived, before the body is complete."""

    respond: Callable[[Seen], Reply]
    hang: bool = False
    seen: list[Seen] = field(default_factory=list)
    first_chunk: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    url: str = ""

    def __post_init__(self) -> None:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _body(self) -> bytes:
                length = int(self.headers.get("content-length") or 0)
                chunks: list[bytes] = []
                got = 0
                while got < length:
                    chunk = self.rfile.read1(min(65536, length - got))
                    if not chunk:
                        break
                    stub.first_chunk.set()
                    chunks.append(chunk)
                    got += len(chunk)
                return b"".join(chunks)

            def _handle(self) -> None:
                body = self._body() if self.command == "POST" else b""
                seen = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                stub.seen.append(seen)
                if stub.hang:
                    stub.release.wait(60)
                    return
                status, headers, payload = stub.respond(seen)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = _handle
            do_POST = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def posts(self) -> list[Seen]:
        return [s for s in self.seen if s.method == "POST"]
