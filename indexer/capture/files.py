"""Capture files: what a source received, stored for operators to replay.

Two layouts, each optionally zstd-compressed (a file name ending in `.zst` when writing; the zstd magic
`28 b5 2f fd` when reading):

- `jsonl`: one JSON event per line, as Jetstream sends them (after its own zstd layer is removed).
- `frames`: `[u32 little-endian length][frame bytes]...`, the raw `com.atproto.sync.subscribeRepos` websocket
  messages, as in the reference corpus `frames.bin.zst`.

Readers stream (memory is bounded by the largest item, never the file) and are forgiving: a truncated last
line or frame, e.g. from a capture that was killed, is yielded as-is for the parser to reject. Writers flush
at least every `flush_interval` seconds while data arrives (and `capture()` also on a timer), so a killed
capture loses at most about that much; zstd output is flushed at block boundaries, which a reader can decode
even without the end of the frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import struct
import time
from collections.abc import AsyncIterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Final, Literal

import msgspec
import zstandard

logger = logging.getLogger(__name__)

CaptureKind = Literal["jsonl", "frames"]

ZSTD_MAGIC: Final = b"\x28\xb5\x2f\xfd"
# No real frame comes near this; a larger length prefix means the file is not (or no longer) length-prefixed.
MAX_FRAME_BYTES: Final = 64 * 1024 * 1024
_LEN: Final = struct.Struct("<I")
_READ_CHUNK: Final = 1 << 16
_BUFFER: Final = 1 << 20


# -------------------------------------------------------------------------------------------------------
# writing


class CaptureWriter:
    """Appends items to a new capture file (an existing file is replaced). Not thread-safe."""

    def __init__(self, path: str | Path, kind: CaptureKind, *, flush_interval: float = 1.0, level: int = 3) -> None:
        if kind not in ("jsonl", "frames"):
            raise ValueError(f"unknown capture kind {kind!r}")
        self.path = Path(path)
        self.kind: CaptureKind = kind
        self.flush_interval = flush_interval
        self.count = 0
        self._fh: IO[bytes] = open(self.path, "wb")
        self._zw: zstandard.ZstdCompressionWriter | None = None
        self._out: IO[bytes] | zstandard.ZstdCompressionWriter = self._fh
        if self.path.name.endswith(".zst"):
            self._zw = zstandard.ZstdCompressor(level=level).stream_writer(self._fh, closefd=False)
            self._out = self._zw
        self._last_flush = time.monotonic()
        self._dirty = False
        self._closed = False

    def write(self, item: bytes) -> None:
        if self._closed:
            raise ValueError("write to a closed capture file")
        if self.kind == "jsonl":
            self._out.write(_one_line(item))
            self._out.write(b"\n")
        else:
            if len(item) > 0xFFFFFFFF:
                raise ValueError(f"frame of {len(item)} bytes does not fit a u32 length prefix")
            self._out.write(_LEN.pack(len(item)))
            self._out.write(item)
        self.count += 1
        self._dirty = True
        self.flush_if_due()

    def flush_if_due(self) -> None:
        if self._dirty and time.monotonic() - self._last_flush >= self.flush_interval:
            self.flush()

    def flush(self) -> None:
        if self._closed:
            return
        if self._zw is not None:
            self._zw.flush(zstandard.FLUSH_BLOCK)
        self._fh.flush()
        self._last_flush = time.monotonic()
        self._dirty = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._zw is not None:
                self._zw.close()  # type: ignore[no-untyped-call]  # ends the frame; self._fh stays open
        finally:
            self._fh.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def open_capture_writer(path: str | Path, kind: CaptureKind, *, flush_interval: float = 1.0) -> CaptureWriter:
    return CaptureWriter(path, kind, flush_interval=flush_interval)


def _one_line(item: bytes) -> bytes:
    """A JSON line must not contain a line break. Jetstream's compact JSON never does (breaks inside strings
    are escaped), so this only rewrites odd input: valid JSON is re-encoded compactly, anything else has its
    breaks replaced by spaces so it still occupies exactly one line for the parser to reject later."""
    item = bytes(item).rstrip(b"\r\n")
    if b"\n" not in item and b"\r" not in item:
        return item
    try:
        return msgspec.json.encode(msgspec.json.decode(item))
    except msgspec.MsgspecError:
        return item.replace(b"\r", b" ").replace(b"\n", b" ")


async def capture(
    messages: AsyncIterable[bytes],
    writer: CaptureWriter,
    *,
    limit: int | None = None,
    duration: float | None = None,
) -> int:
    """Write messages (e.g. `JetstreamSource(...).raw()`) to `writer` until `limit` items were written,
    `duration` seconds passed, or the iterable ends. Flushes on a timer too, so a quiet stream still reaches
    the disk. Closes an async generator it was given; leaves `writer` open. Returns the number written."""
    count = 0
    if limit is not None and limit <= 0:
        return 0
    flusher = asyncio.create_task(_flush_periodically(writer))
    try:
        async with asyncio.timeout(duration) as deadline:
            try:
                async for message in messages:
                    writer.write(message)
                    count += 1
                    if limit is not None and count >= limit:
                        break
            finally:
                aclose = getattr(messages, "aclose", None)
                if aclose is not None:
                    await aclose()
    except TimeoutError:
        if not deadline.expired():
            raise
    finally:
        flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flusher
        writer.flush()
    return count


async def _flush_periodically(writer: CaptureWriter) -> None:
    while not writer.closed:
        await asyncio.sleep(max(writer.flush_interval / 2, 0.01))
        writer.flush_if_due()


# -------------------------------------------------------------------------------------------------------
# reading


class _ZstdRawReader(io.RawIOBase):
    """Streaming zstd decoder over a file, across concatenated frames.

    Built on `decompressobj` rather than zstandard's `stream_reader`, which stops early on a stream whose last
    frame was never finished; a killed capture is exactly that."""

    def __init__(self, fh: IO[bytes]) -> None:
        super().__init__()
        self._fh = fh
        self._dctx = zstandard.ZstdDecompressor()
        self._d = self._dctx.decompressobj()
        self._pending = memoryview(b"")
        self._eof = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        while not self._pending:
            if self._eof:
                return 0
            chunk = self._fh.read(_READ_CHUNK)
            if not chunk:
                self._eof = True
                return 0
            self._pending = memoryview(self._decompress(chunk))
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def _decompress(self, chunk: bytes) -> bytes:
        out: list[bytes] = []
        try:
            while chunk:
                out.append(self._d.decompress(chunk))
                if not self._d.eof:
                    break
                chunk = self._d.unused_data
                self._d = self._dctx.decompressobj()
        except zstandard.ZstdError as e:
            # Corruption mid-file: keep what decoded before it, then end the stream there.
            logger.warning("capture file has corrupt zstd data, stopping", extra={"detail": str(e)})
            self._eof = True
        return b"".join(out)

    def close(self) -> None:
        if not self.closed:
            self._fh.close()
        super().close()


def _open_stream(path: str | Path) -> tuple[IO[bytes], bool]:
    """(reader over the decoded content, whether it is seekable)."""
    fh = io.BufferedReader(io.FileIO(path, "rb"), buffer_size=_BUFFER)
    try:
        magic = fh.peek(4)[:4]
        if magic == ZSTD_MAGIC:
            return io.BufferedReader(_ZstdRawReader(fh), buffer_size=_BUFFER), False
        return fh, True
    except BaseException:
        fh.close()
        raise


def _detect(head: bytes) -> CaptureKind:
    # A length prefix below MAX_FRAME_BYTES has a zero (or tiny) fourth byte; the first four bytes of any JSON
    # text read as a little-endian u32 are far larger (the fourth byte is printable), even when the first
    # byte is `{` (0x7b), which is also the low byte of perfectly normal frame lengths such as 123 or 635.
    if not head:
        return "jsonl"
    if len(head) < 4:
        return "jsonl" if head[:1] in (b"{", b" ", b"\t", b"\r", b"\n") else "frames"
    return "jsonl" if _LEN.unpack(head)[0] >= MAX_FRAME_BYTES else "frames"


def capture_kind(path: str | Path) -> CaptureKind:
    """ "jsonl" or "frames", judged from the first four bytes of the (decompressed) content. An empty file is
    "jsonl"."""
    stream, _ = _open_stream(path)
    with stream:
        return _detect(stream.read(4))


def iter_capture(path: str | Path, start: int = 0) -> Iterator[tuple[int, bytes]]:
    """Yield (position, item) for every line or frame, position being its 0-based index in the file, from
    position `start` on. Blank lines are skipped but keep their position, so positions are stable line
    numbers. Never raises on a damaged file: a truncated tail is yielded as-is, and a frame length that cannot
    be real ends the iteration after yielding the bytes at that point."""
    kind = capture_kind(path)
    stream, seekable = _open_stream(path)
    with stream:
        if kind == "jsonl":
            yield from _iter_lines(stream, start)
        else:
            yield from _iter_frames(stream, start, seekable)


def _iter_lines(stream: IO[bytes], start: int) -> Iterator[tuple[int, bytes]]:
    pos = -1
    for line in stream:
        pos += 1
        if pos < start:
            continue
        item = line.rstrip(b"\r\n")
        if item.strip():
            yield pos, item


def _iter_frames(stream: IO[bytes], start: int, seekable: bool) -> Iterator[tuple[int, bytes]]:
    pos = 0
    while True:
        head = stream.read(4)
        if not head:
            return
        if len(head) < 4:
            yield pos, head
            return
        (n,) = _LEN.unpack(head)
        if n > MAX_FRAME_BYTES:
            logger.warning(
                "capture file has an impossible frame length, stopping", extra={"position": pos, "length": n}
            )
            yield pos, head + stream.read(4096)
            return
        if pos < start:
            if seekable:
                stream.seek(n, io.SEEK_CUR)
            else:
                _discard(stream, n)
            pos += 1
            continue
        yield pos, stream.read(n)
        pos += 1


def _discard(stream: IO[bytes], n: int) -> None:
    while n > 0:
        got = len(stream.read(min(n, _BUFFER)))
        if got == 0:
            return
        n -= got
