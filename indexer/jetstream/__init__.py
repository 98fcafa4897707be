"""Jetstream ingest: wire parsing (`parse`), the websocket source (`source`) and the bundled zstd
dictionaries (`zstd_dict`)."""

from indexer.jetstream.parse import (
    DecompressError,
    Decompressor,
    StreamNotice,
    decompress,
    parse_v1,
    parse_v2,
)
from indexer.jetstream.source import (
    CursorTooOldError,
    Endpoint,
    JetstreamError,
    JetstreamSource,
    RequestRejectedError,
    parse_endpoint,
)

__all__ = [
    "CursorTooOldError",
    "DecompressError",
    "Decompressor",
    "Endpoint",
    "JetstreamError",
    "JetstreamSource",
    "RequestRejectedError",
    "StreamNotice",
    "decompress",
    "parse_endpoint",
    "parse_v1",
    "parse_v2",
]
