"""Capture files: what a source received, stored for operators to replay.

Two layouts, each optionally zstd-compressed (a file name ending in `.zst` when writing; the zstd magic
`28 b5 2f fd` when reading):

- `jsonl`: one JSON event per line, as Jetstream sends them (after its own zstd layer is removed).
- `frames`: `[u32 little-endian length][frame bytes]...`, the raw `com.atproto.sync.subscribeRepos` websocket
  messages, as in the reference corpus `frames.bin.zst`.

This module is the one reader and writer of both layouts. The reader streams (memory is bounded by the largest
item, never the file) in one of two modes over the same parsing: lenient, for replay, where a truncated last
line or frame, e.g. from a capture that was killed, is yielded as-is for the parser to reject; and strict, for
conversion, where damage raises a CaptureError naming its cause and offset once every whole item before it was
yielded. The writer flushes at least every `flush_interval` seconds while data arrives (and `capture()` also on
a timer), so a killed capture loses at most about that much; zstd output is flushed at block boundaries, which a
reader can decode even without the end of the frame.
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
# Both read modes and the writer use it. It is far above the firehose decoder's own limit
# (`frames.DEFAULT_MAX_FRAME_BYTES`), so a frame too big to decode is still read and reaches the decoder, which
# rejects and counts it like a live one, rather than ending the read.
MAX_FRAME_BYTES: Final = 64 * 1024 * 1024
_LEN: Final = struct.Struct("<I")
_READ_CHUNK: Final = 1 << 16
_STRICT_STEP: Final = 1 << 12
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
            if len(item) > MAX_FRAME_BYTES:
                raise ValueError(f"frame of {len(item)} bytes is more than a capture holds ({MAX_FRAME_BYTES})")
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

Damage = Literal[
    "truncated_length",  # a frame's length prefix is cut short
    "truncated_frame",  # a frame has fewer bytes than its length prefix says
    "oversized_frame",  # a length prefix above MAX_FRAME_BYTES: the content is not (or no longer) length-prefixed
    "truncated_line",  # the last line has no line break
    "corrupt_zstd",
    "truncated_zstd",  # the last zstd frame was never finished
]


class CaptureError(ValueError):
    """Damage met by a strict read, raised once every whole item before it was yielded.

    `cause` names the damage; `position` is the index the damaged item would have; `offset` is where that item
    starts in the decoded content, or for zstd damage (`corrupt_zstd`, `truncated_zstd`) how many decoded bytes
    came before it."""

    def __init__(self, cause: Damage, position: int, offset: int, message: str) -> None:
        super().__init__(message)
        self.cause: Damage = cause
        self.position = position
        self.offset = offset


class _ZstdDamage(Exception):
    """Where a strict `_ZstdRawReader`'s content stops being readable; the item readers add the position."""

    def __init__(self, cause: Damage, offset: int, detail: str) -> None:
        super().__init__(detail)
        self.cause: Damage = cause
        self.offset = offset
        self.detail = detail

    def reading(self, unit: str, position: int) -> CaptureError:
        message = f"{self.detail} after {self.offset} decoded bytes, reading {unit} {position}"
        return CaptureError(self.cause, position, self.offset, message)


class _ZstdRawReader(io.RawIOBase):
    """Streaming zstd decoder over a file, across concatenated frames.

    Built on `decompressobj` rather than zstandard's `stream_reader`, which stops early on a stream whose last
    frame was never finished; a killed capture is exactly that. Lenient, corrupt data ends the content where it
    starts and an unfinished last frame ends it where its data ends. Strict, both raise `_ZstdDamage` once the
    content before them was read."""

    def __init__(self, fh: IO[bytes], strict: bool) -> None:
        super().__init__()
        self._fh = fh
        self._strict = strict
        self._dctx = zstandard.ZstdDecompressor()
        self._d = self._dctx.decompressobj()
        self._pending = memoryview(b"")
        self._eof = False
        self._decoded = 0  # bytes of content decoded so far
        self._in_frame = False  # the current zstd frame has started and not ended
        self._damage: _ZstdDamage | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        while not self._pending:
            if self._eof:
                if self._damage is not None:
                    raise self._damage
                return 0
            chunk = self._fh.read(_READ_CHUNK)
            if not chunk:
                self._eof = True
                if self._strict and self._in_frame:
                    self._damage = _ZstdDamage("truncated_zstd", self._decoded, "zstd stream ends unfinished")
                continue
            self._pending = memoryview(self._decompress(chunk))
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def _decompress(self, chunk: bytes) -> bytes:
        # zstandard discards all that one call decoded when the call meets corruption. Strict reads feed small
        # slices, so they lose at most what ends in the slice with the corruption; lenient reads feed whole
        # chunks (fewer calls on the replay path) and may stop up to a chunk before it.
        step = _STRICT_STEP if self._strict else len(chunk)
        out: list[bytes] = []
        try:
            for i in range(0, len(chunk), step):
                piece = chunk[i : i + step]
                while piece:
                    self._in_frame = True
                    data = self._d.decompress(piece)
                    out.append(data)
                    self._decoded += len(data)
                    if not self._d.eof:
                        break
                    self._in_frame = False
                    piece = self._d.unused_data
                    self._d = self._dctx.decompressobj()
        except zstandard.ZstdError as e:
            # Corruption mid-file: keep what decoded before it, then end the stream there.
            if self._strict:
                self._damage = _ZstdDamage("corrupt_zstd", self._decoded, f"corrupt zstd data ({e})")
            else:
                logger.warning("capture file has corrupt zstd data, stopping", extra={"detail": str(e)})
            self._eof = True
        return b"".join(out)

    def close(self) -> None:
        if not self.closed:
            self._fh.close()
        super().close()


def _open_stream(path: str | Path, strict: bool = False) -> tuple[IO[bytes], bool]:
    """(reader over the decoded content, whether it is seekable)."""
    fh = io.BufferedReader(io.FileIO(path, "rb"), buffer_size=_BUFFER)
    try:
        magic = fh.peek(4)[:4]
        if magic == ZSTD_MAGIC:
            return io.BufferedReader(_ZstdRawReader(fh, strict), buffer_size=_BUFFER), False
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


class NotACapture(ValueError):
    """The file is not a capture this module can read; the message says what it is instead."""


# How much decoded content `sniff` looks at: enough for the first item of any real capture.
_SNIFF_BYTES: Final = 1 << 20


def sniff(path: str | Path) -> CaptureKind:
    """The layout of a capture, judged from its first item, or NotACapture saying why it is none: a missing
    file, a directory, an empty file, damaged zstd, or content whose first item is neither a Jetstream JSON
    event nor a firehose frame. Commands call it before writing anything."""
    p = Path(path)
    if not p.exists():
        raise NotACapture(f"{p}: no such file")
    if p.is_dir():
        raise NotACapture(f"{p}: is a directory")
    if p.stat().st_size == 0:
        raise NotACapture(f"{p}: the file is empty")
    try:
        stream, _ = _open_stream(p, strict=True)
        with stream:
            head = stream.read(_SNIFF_BYTES)
    except (_ZstdDamage, CaptureError, zstandard.ZstdError) as exc:
        raise NotACapture(f"{p}: not readable zstd ({exc})") from None
    except OSError as exc:
        raise NotACapture(f"{p}: {exc.strerror or exc}") from None
    if not head.strip():
        raise NotACapture(f"{p}: no content")
    kind = _detect(head[: _LEN.size])
    if kind == "jsonl":
        first = head.lstrip(b" \t\r\n").split(b"\n", 1)[0]
        if not _looks_like_event(first, whole=b"\n" in head.lstrip(b" \t\r\n") or len(head) < _SNIFF_BYTES):
            raise NotACapture(f"{p}: not a capture (the first line is not a Jetstream JSON event)")
    elif not _looks_like_frame(head):
        raise NotACapture(f"{p}: not a capture (neither Jetstream JSON lines nor length-prefixed firehose frames)")
    return kind


def _looks_like_event(line: bytes, *, whole: bool) -> bool:
    if not whole:  # a first line longer than the sniffed head: judge its start
        return line.startswith(b"{") and b'"did"' in line
    try:
        value = msgspec.json.decode(line)
    except msgspec.DecodeError:
        return False
    return isinstance(value, dict) and isinstance(value.get("did"), str) and "kind" in value


def _looks_like_frame(head: bytes) -> bool:
    """A whole first frame whose header is a DAG-CBOR map with `op` (every subscribeRepos message has one)."""
    import libipld

    if len(head) < _LEN.size:
        return False
    (size,) = _LEN.unpack_from(head)
    frame = head[_LEN.size : _LEN.size + size]
    if size == 0 or (len(frame) < size and len(head) < _SNIFF_BYTES):
        return False
    try:
        parts = libipld.decode_dag_cbor_multi(frame)
    except Exception:  # libipld raises plain ValueError/TypeError subclasses for every malformed input
        return False
    return bool(parts) and isinstance(parts[0], dict) and "op" in parts[0]


def iter_capture(
    path: str | Path, start: int = 0, *, strict: bool = False, kind: CaptureKind | None = None
) -> Iterator[tuple[int, bytes]]:
    """Yield (position, item) for every line or frame, position being its 0-based index in the file, from
    position `start` on. Blank lines are skipped but keep their position, so positions are stable line
    numbers. `kind` reads the file as that layout instead of detecting it (`capture_kind`).

    Lenient (the default) never raises on a damaged file: a truncated tail is yielded as-is, a frame length
    that cannot be real ends the iteration after yielding the bytes at that point, and corrupt or unfinished
    zstd ends the content where it stops decoding. Strict raises CaptureError instead, after yielding every
    whole item before the damage, and also on a last line without its line break (every writer ends lines);
    it reads through the items before `start` rather than seeking past them, to check them too."""
    if kind is None:
        kind = capture_kind(path)
    stream, seekable = _open_stream(path, strict)
    with stream:
        if kind == "jsonl":
            yield from _iter_lines(stream, start, strict)
        else:
            yield from _iter_frames(stream, start, seekable and not strict, strict)


def _iter_lines(stream: IO[bytes], start: int, strict: bool) -> Iterator[tuple[int, bytes]]:
    pos = -1
    offset = 0  # where line `pos` starts; kept for strict reads only
    try:
        for line in stream:
            pos += 1
            if strict:
                if line[-1:] != b"\n" and line.strip():
                    raise CaptureError(
                        "truncated_line", pos, offset, f"capture truncated inside line {pos} at byte {offset}"
                    )
                offset += len(line)
            if pos < start:
                continue
            item = line.rstrip(b"\r\n")
            if item.strip():
                yield pos, item
    except _ZstdDamage as e:
        raise e.reading("line", pos + 1) from None


def _iter_frames(stream: IO[bytes], start: int, may_seek: bool, strict: bool) -> Iterator[tuple[int, bytes]]:
    pos = 0
    offset = 0  # where frame `pos` (its length prefix) starts
    try:
        while True:
            head = stream.read(4)
            if not head:
                return
            if len(head) < 4:
                if strict:
                    message = f"capture truncated in the length of frame {pos} at byte {offset}"
                    raise CaptureError("truncated_length", pos, offset, message)
                yield pos, head
                return
            (n,) = _LEN.unpack(head)
            if n > MAX_FRAME_BYTES:
                if strict:
                    message = f"frame {pos} at byte {offset} claims {n} bytes, more than {MAX_FRAME_BYTES}"
                    raise CaptureError("oversized_frame", pos, offset, message)
                logger.warning(
                    "capture file has an impossible frame length, stopping", extra={"position": pos, "length": n}
                )
                yield pos, head + stream.read(4096)
                return
            frame: bytes | None = None
            if pos >= start:
                frame = stream.read(n)
                got = len(frame)
            elif may_seek:
                stream.seek(n, io.SEEK_CUR)
                got = n
            else:
                got = _discard(stream, n)
            if strict and got < n:
                message = f"capture truncated inside frame {pos} at byte {offset} ({got} of {n} bytes)"
                raise CaptureError("truncated_frame", pos, offset, message)
            if frame is not None:
                yield pos, frame
            pos += 1
            offset += 4 + n
    except _ZstdDamage as e:
        raise e.reading("frame", pos) from None


def _discard(stream: IO[bytes], n: int) -> int:
    """Read past `n` bytes; returns how many there were."""
    left = n
    while left > 0:
        got = len(stream.read(min(left, _BUFFER)))
        if got == 0:
            break
        left -= got
    return n - left
