"""Capture files: both layouts, compressed or not, damaged tails read leniently and strictly, cheap skipping,
flushing, capture()."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import struct
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import zstandard

from indexer.capture.files import (
    MAX_FRAME_BYTES,
    CaptureError,
    CaptureKind,
    capture,
    capture_kind,
    iter_capture,
    open_capture_writer,
)

REFERENCE = Path(os.environ.get("PLYR_REFERENCE_DIR") or Path(__file__).resolve().parents[2] / "shared" / "reference")
CORPUS = REFERENCE / "corpus"


def reference_frames() -> list[bytes]:
    raw = zstandard.ZstdDecompressor().stream_reader((CORPUS / "frames.bin.zst").open("rb")).read()
    frames, off = [], 0
    while off < len(raw):
        (n,) = struct.unpack_from("<I", raw, off)
        frames.append(raw[off + 4 : off + 4 + n])
        off += 4 + n
    return frames


def jsonl_lines() -> list[bytes]:
    return [line for line in (CORPUS / "expected_v1.jsonl").read_bytes().splitlines() if line.strip()]


def framed(frames: Sequence[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(f)) + f for f in frames)


def write(path: Path, kind: CaptureKind, items: Sequence[bytes]) -> None:
    with open_capture_writer(path, kind) as w:
        for item in items:
            w.write(item)


def test_reference_frames_capture_is_read_frame_by_frame() -> None:
    path = CORPUS / "frames.bin.zst"
    assert capture_kind(path) == "frames"
    items = list(iter_capture(path))
    assert [p for p, _ in items] == list(range(150))
    assert [b for _, b in items] == reference_frames()
    # Every relay frame starts with its DAG-CBOR header map {"op": 1, "t": ...}.
    assert all(b[:1] == b"\xa2" for _, b in items)
    assert list(iter_capture(path, start=147)) == items[147:]
    assert list(iter_capture(path, start=1000)) == []


def test_reference_jsonl_is_detected_and_read() -> None:
    path = CORPUS / "expected_v1.jsonl"
    assert capture_kind(path) == "jsonl"
    assert [b for _, b in iter_capture(path)] == jsonl_lines()


@pytest.mark.parametrize("name", ["cap.jsonl", "cap.jsonl.zst"])
def test_jsonl_round_trip_and_start(tmp_path: Path, name: str) -> None:
    lines = jsonl_lines()
    path = tmp_path / name
    write(path, "jsonl", lines)
    assert (path.read_bytes()[:4] == b"\x28\xb5\x2f\xfd") == name.endswith(".zst")
    assert capture_kind(path) == "jsonl"
    assert list(iter_capture(path)) == list(enumerate(lines))
    assert list(iter_capture(path, start=100)) == list(enumerate(lines))[100:]
    assert list(iter_capture(path, strict=True)) == list(enumerate(lines))
    assert list(iter_capture(path, start=100, strict=True)) == list(enumerate(lines))[100:]


@pytest.mark.parametrize("name", ["cap.bin", "cap.bin.zst"])
def test_frames_round_trip_and_start(tmp_path: Path, name: str) -> None:
    frames = reference_frames()
    path = tmp_path / name
    write(path, "frames", frames)
    assert capture_kind(path) == "frames"
    assert list(iter_capture(path)) == list(enumerate(frames))
    assert list(iter_capture(path, start=149)) == [(149, frames[149])]
    assert list(iter_capture(path, strict=True)) == list(enumerate(frames))
    assert list(iter_capture(path, start=149, strict=True)) == [(149, frames[149])]
    if not name.endswith(".zst"):
        # The uncompressed layout is exactly the reference layout.
        ref = zstandard.ZstdDecompressor().stream_reader((CORPUS / "frames.bin.zst").open("rb")).read()
        assert path.read_bytes() == ref


def test_frame_lengths_that_start_with_a_brace_are_still_frames(tmp_path: Path) -> None:
    # 123 = 0x7b = "{": the first byte of this file looks like JSON, the length prefix says otherwise.
    frames = [b"\xa2" + b"x" * 122, b"{" * 635, b""]
    path = tmp_path / "brace.bin"
    write(path, "frames", frames)
    assert path.read_bytes()[:1] == b"{"
    assert capture_kind(path) == "frames"
    assert [b for _, b in iter_capture(path)] == frames


def damaged(case: str) -> tuple[bytes, list[bytes], str, int]:
    """(content, what a lenient read yields, the damage a strict one reports, where it starts) for `case`."""
    frames = reference_frames()[:3]
    lines = jsonl_lines()[:5]
    whole = len(framed(frames))
    huge = struct.pack("<I", MAX_FRAME_BYTES + 1)
    return {
        "truncated_length": (framed(frames) + b"\x10\x00", [*frames, b"\x10\x00"], case, whole),
        "truncated_frame": (framed(frames) + struct.pack("<I", 5000) + b"partial", [*frames, b"partial"], case, whole),
        "oversized_frame": (framed(frames) + huge + b"tail", [*frames, huge + b"tail"], case, whole),
        "truncated_line": (
            b"\n".join(lines) + b"\n" + lines[4][:40],
            [*lines, lines[4][:40]],
            case,
            len(b"\n".join(lines)) + 1,
        ),
    }[case]


def strict_read(path: Path, **kw: Any) -> tuple[list[tuple[int, bytes]], CaptureError]:
    """What a strict read yields before it raises, and the error."""
    got: list[tuple[int, bytes]] = []
    with pytest.raises(CaptureError) as raised:
        for item in iter_capture(path, strict=True, **kw):
            got.append(item)
    return got, raised.value


@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize("case", ["truncated_length", "truncated_frame", "oversized_frame", "truncated_line"])
def test_damaged_tails_lenient_and_strict(tmp_path: Path, case: str, compressed: bool) -> None:
    content, lenient, cause, offset = damaged(case)
    path = tmp_path / ("cut" + (".zst" if compressed else ""))
    path.write_bytes(zstandard.ZstdCompressor().compress(content) if compressed else content)
    # Lenient: the damaged tail is yielded as-is for the parser to reject.
    assert [b for _, b in iter_capture(path)] == lenient
    # Strict: every whole item, then the damage, its position and where it starts.
    got, err = strict_read(path)
    assert got == list(enumerate(lenient[:-1]))
    assert (err.cause, err.position, err.offset) == (cause, len(lenient) - 1, offset)
    assert f"byte {offset}" in str(err)


def test_strict_reads_check_the_items_they_skip(tmp_path: Path) -> None:
    content, _, _, offset = damaged("truncated_frame")
    path = tmp_path / "cut.bin"
    path.write_bytes(content)
    assert list(iter_capture(path, start=10)) == []  # lenient seeks past the damage
    got, err = strict_read(path, start=10)
    assert got == [] and (err.cause, err.position, err.offset) == ("truncated_frame", 3, offset)


def test_killed_writer_loses_at_most_the_unflushed_tail(tmp_path: Path) -> None:
    lines = jsonl_lines()
    path = tmp_path / "live.jsonl.zst"
    w = open_capture_writer(path, "jsonl", flush_interval=0.0)  # flush on every write
    for line in lines[:50]:
        w.write(line)
    # The process dies here: no close(), so the zstd frame is never finished. A copy is what a reader sees.
    snapshot = tmp_path / "snapshot.jsonl.zst"
    shutil.copyfile(path, snapshot)
    assert [b for _, b in iter_capture(snapshot)] == lines[:50]
    # Appending half a block of garbage (a write torn by the kill) loses nothing that was flushed.
    with snapshot.open("ab") as f:
        f.write(b"\x01\x02\x03")
    assert [b for _, b in iter_capture(snapshot)] == lines[:50]
    w.close()


def test_writer_flushes_on_its_interval_not_on_every_write(tmp_path: Path) -> None:
    path = tmp_path / "slow.bin"
    w = open_capture_writer(path, "frames", flush_interval=3600)
    w.write(b"a" * 10)
    assert path.stat().st_size == 0  # buffered
    w.flush()
    assert path.stat().st_size == 14
    with pytest.raises(ValueError, match="more than a capture holds"):
        w.write(bytes(MAX_FRAME_BYTES + 1))  # a reader would take it for damage
    w.close()
    with pytest.raises(ValueError):
        w.write(b"x")


def test_jsonl_items_with_line_breaks_stay_one_line(tmp_path: Path) -> None:
    path = tmp_path / "breaks.jsonl"
    with open_capture_writer(path, "jsonl") as w:
        w.write(b'{\n  "a": "x\\ny",\n  "b": [1,\n 2]\n}\n')
        w.write(b"not json\nat all")
        w.write(b'{"c":3}\n')
    items = [b for _, b in iter_capture(path)]
    assert len(items) == 3
    assert json.loads(items[0]) == {"a": "x\ny", "b": [1, 2]}
    assert items[1] == b"not json at all"
    assert items[2] == b'{"c":3}'


def test_blank_lines_keep_positions(tmp_path: Path) -> None:
    path = tmp_path / "gaps.jsonl"
    path.write_bytes(b'{"a":1}\n\n   \n{"a":2}\r\n')
    assert list(iter_capture(path)) == [(0, b'{"a":1}'), (3, b'{"a":2}')]
    assert list(iter_capture(path, start=1)) == [(3, b'{"a":2}')]


def test_impossible_frame_length_ends_iteration_without_raising(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.bin"
    path.write_bytes(struct.pack("<I", 3) + b"abc" + struct.pack("<I", MAX_FRAME_BYTES + 1) + b"tail")
    items = list(iter_capture(path))
    assert items[0] == (0, b"abc") and items[1][0] == 1 and items[1][1].endswith(b"tail") and len(items) == 2


@pytest.mark.parametrize("kind", ["jsonl", "frames"])
def test_corrupt_zstd_midway(tmp_path: Path, kind: CaptureKind) -> None:
    items = jsonl_lines()[:10] if kind == "jsonl" else reference_frames()[:10]
    content = b"".join(line + b"\n" for line in items) if kind == "jsonl" else framed(items)
    path = tmp_path / "bad.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(content) + b"\x28\xb5\x2f\xfd" + b"\xff" * 64)
    # Lenient stops cleanly after what decoded; strict raises there, after every item.
    assert [b for _, b in iter_capture(path)] == items
    got, err = strict_read(path)
    assert [b for _, b in got] == items
    assert (err.cause, err.position, err.offset) == ("corrupt_zstd", 10, len(content))


def test_strict_corrupt_zstd_stops_close_before_it(tmp_path: Path) -> None:
    # One zstd block per frame, so decoded content ends at a frame boundary wherever decoding stops.
    frames = reference_frames()[:40]
    raw = io.BytesIO()
    w = zstandard.ZstdCompressor().stream_writer(raw, closefd=False)
    block_starts = []
    for f in frames:
        block_starts.append(len(raw.getvalue()))
        w.write(struct.pack("<I", len(f)) + f)
        w.flush(zstandard.FLUSH_BLOCK)
    w.close()  # type: ignore[no-untyped-call]
    data = bytearray(raw.getvalue())
    data[block_starts[30]] |= 0b110  # block type 3 is reserved: the block of frame 30 cannot be decoded
    path = tmp_path / "bad.bin.zst"
    path.write_bytes(bytes(data))
    got, err = strict_read(path)
    # Strict loses at most the blocks that end in its 4 KiB decoding step with the corruption (these are ~3 KiB).
    assert got == list(enumerate(frames[: len(got)])) and 28 <= len(got) <= 30
    assert (err.cause, err.position, err.offset) == ("corrupt_zstd", len(got), len(framed(frames[: len(got)])))
    # Lenient decodes a whole read chunk per call, so it may stop further before; it never raises.
    lenient = [b for _, b in iter_capture(path)]
    assert lenient == frames[: len(lenient)] and len(lenient) <= len(got)


@pytest.mark.parametrize("kind", ["jsonl", "frames"])
def test_unfinished_zstd(tmp_path: Path, kind: CaptureKind) -> None:
    items = jsonl_lines()[:20] if kind == "jsonl" else reference_frames()[:20]
    path = tmp_path / "live.zst"
    w = open_capture_writer(path, kind, flush_interval=0.0)  # flush on every write
    for item in items:
        w.write(item)
    # Killed before close(): the zstd frame is never finished. Lenient reads it all; strict reads it all too,
    # then reports that the stream ends unfinished.
    snapshot = tmp_path / "snapshot.zst"
    shutil.copyfile(path, snapshot)
    w.close()
    overhead = 1 if kind == "jsonl" else 4  # line break or length prefix
    size = sum(len(i) + overhead for i in items)
    assert [b for _, b in iter_capture(snapshot)] == items
    got, err = strict_read(snapshot)
    assert [b for _, b in got] == items
    assert (err.cause, err.position, err.offset) == ("truncated_zstd", 20, size)
    # Cut inside a block: what the last whole block held, then the same report.
    cut = tmp_path / "cut.zst"
    cut.write_bytes(snapshot.read_bytes()[:-3])
    got, err = strict_read(cut)
    assert got == list(enumerate(items[:19]))  # the last item's block lost its end, so all of it is gone
    assert (err.cause, err.position, err.offset) == ("truncated_zstd", 19, size - len(items[19]) - overhead)
    assert list(iter_capture(cut)) == got
    # A finished capture reads strictly without complaint.
    assert list(iter_capture(path, strict=True)) == list(enumerate(items))


def test_concatenated_zstd_frames_are_read_across(tmp_path: Path) -> None:
    lines = jsonl_lines()
    c = zstandard.ZstdCompressor()
    path = tmp_path / "multi.jsonl.zst"
    path.write_bytes(c.compress(b"\n".join(lines[:3]) + b"\n") + c.compress(b"\n".join(lines[3:6]) + b"\n"))
    assert [b for _, b in iter_capture(path)] == lines[:6]


def test_empty_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    assert capture_kind(empty) == "jsonl" and list(iter_capture(empty)) == []
    with open_capture_writer(tmp_path / "empty.jsonl.zst", "jsonl"):
        pass
    assert list(iter_capture(tmp_path / "empty.jsonl.zst")) == []


async def test_capture_helper_limit_duration_and_periodic_flush(tmp_path: Path) -> None:
    lines = jsonl_lines()
    closed: list[bool] = []

    async def trickle() -> AsyncIterator[bytes]:
        try:
            for line in lines[:5]:
                yield line
            await asyncio.sleep(3600)  # a quiet stream
            yield b"never"
        finally:
            closed.append(True)

    path = tmp_path / "cap.jsonl.zst"
    with open_capture_writer(path, "jsonl", flush_interval=0.1) as w:
        task = asyncio.create_task(capture(trickle(), w, duration=1.0))
        await asyncio.sleep(0.5)
        # Still running and never closed, yet what arrived is readable: the timer flushed it.
        assert not task.done()
        assert [b for _, b in iter_capture(path)] == lines[:5]
        assert await task == 5
    assert closed == [True]

    path2 = tmp_path / "limited.jsonl"
    with open_capture_writer(path2, "jsonl") as w:

        async def forever() -> AsyncIterator[bytes]:
            while True:
                yield lines[0]

        assert await capture(forever(), w, limit=7) == 7
    assert len(list(iter_capture(path2))) == 7


async def test_capture_from_a_live_source_replays_to_the_same_events(tmp_path: Path) -> None:
    from websockets.asyncio.server import ServerConnection, serve

    from indexer.jetstream.parse import parse_v1
    from indexer.jetstream.source import JetstreamSource

    lines = jsonl_lines()[:40]
    d = zstandard.ZstdCompressionDict((REFERENCE / "zstd" / "jetstream_v1.zdict").read_bytes())
    c = zstandard.ZstdCompressor(dict_data=d)

    async def handler(ws: ServerConnection) -> None:
        for line in lines:
            await ws.send(c.compress(line))
        await ws.wait_closed()

    path = tmp_path / "live.jsonl.zst"
    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        src = JetstreamSource([f"ws://127.0.0.1:{port}"], start_cursor=None, compress=True)
        with open_capture_writer(path, "jsonl") as w:
            assert await capture(src.raw(), w, limit=len(lines), duration=10) == len(lines)
    replayed = [b for _, b in iter_capture(path)]
    assert replayed == lines
    assert [parse_v1(b, "jetstream") for b in replayed] == [parse_v1(b, "jetstream") for b in lines]
