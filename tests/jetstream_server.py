"""A small Jetstream v1 server for tests: serves a fixed list of events from the requested cursor, compressed
with the real dictionary when the client asks, then stays open (as a live stream with no new traffic)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec
import zstandard
from websockets.asyncio.server import ServerConnection, serve

from indexer.jetstream.zstd_dict import load_v1_dict


class JetstreamServer:
    """`rate` (events per second) paces delivery like a live stream; None sends everything at once."""

    def __init__(self, events: list[dict[str, Any]], *, rate: float | None = None) -> None:
        self.events = events
        self.rate = rate
        self.connections = 0
        self.requests: list[dict[str, list[str]]] = []
        self.port = 0
        self._compressor = zstandard.ZstdCompressor(dict_data=load_v1_dict())

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/subscribe"

    async def _handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        query = parse_qs(urlsplit(ws.request.path).query)
        self.requests.append(query)
        cursor = int(query["cursor"][0]) if "cursor" in query else None
        compress = query.get("compress", ["false"])[0] == "true"
        self.connections += 1
        loop = asyncio.get_running_loop()
        started = loop.time()
        sent = 0
        for ev in self.events:
            if cursor is not None and ev["time_us"] < cursor:
                continue
            if self.rate is not None:
                ahead = started + sent / self.rate - loop.time()
                if ahead > 0:
                    await asyncio.sleep(ahead)
            sent += 1
            data = msgspec.json.encode(ev)
            if compress:
                await ws.send(self._compressor.compress(data))
            else:
                await ws.send(data.decode())
        with contextlib.suppress(Exception):
            await ws.wait_closed()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[JetstreamServer]:
        async with serve(self._handler, "127.0.0.1", 0) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            yield self
            server.close()
            await asyncio.sleep(0)
