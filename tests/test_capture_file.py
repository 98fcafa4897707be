"""Capture files: both layouts, compressed or not, damaged tails, cheap skipping, flushing, capture()."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import zstandard

from indexer.capture.files import (
    MAX_FRAME_BYTES,
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
    with open_capture_writer(path, "jsonl") as w:
        for line in lines:
            w.write(line)
    assert (path.read_bytes()[:4] == b"\x28\xb5\x2f\xfd") == name.endswith(".zst")
    assert capture_kind(path) == "jsonl"
    assert list(iter_capture(path)) == list(enumerate(lines))
    assert list(iter_capture(path, start=100)) == list(enumerate(lines))[100:]


@pytest.mark.parametrize("name", ["cap.bin", "cap.bin.zst"])
def test_frames_round_trip_and_start(tmp_path: Path, name: str) -> None:
    frames = reference_frames()
    path = tmp_path / name
    with open_capture_writer(path, "frames") as w:
        for f in frames:
            w.write(f)
    assert capture_kind(path) == "frames"
    assert list(iter_capture(path)) == list(enumerate(frames))
    assert list(iter_capture(path, start=149)) == [(149, frames[149])]
    if not name.endswith(".zst"):
        # The uncompressed layout is exactly the reference layout.
        ref = zstandard.ZstdDecompressor().stream_reader((CORPUS / "frames.bin.zst").open("rb")).read()
        assert path.read_bytes() == ref


def test_frame_lengths_that_start_with_a_brace_are_still_frames(tmp_path: Path) -> None:
    # 123 = 0x7b = "{": the first byte of this file looks like JSON, the length prefix says otherwise.
    frames = [b"\xa2" + b"x" * 122, b"{" * 635, b""]
    path = tmp_path / "brace.bin"
    with open_capture_writer(path, "frames") as w:
        for f in frames:
            w.write(f)
    assert path.read_bytes()[:1] == b"{"
    assert capture_kind(path) == "frames"
    assert [b for _, b in iter_capture(path)] == frames


@pytest.mark.parametrize("compressed", [False, True])
def test_truncated_tails_are_yielded_as_is(tmp_path: Path, compressed: bool) -> None:
    lines = jsonl_lines()[:5]
    body = b"\n".join(lines) + b"\n" + lines[5 - 1][:40]  # last line cut, no newline
    frames = reference_frames()[:3]
    fbody = b"".join(struct.pack("<I", len(f)) + f for f in frames) + struct.pack("<I", 5000) + b"partial"
    short_header = b"".join(struct.pack("<I", len(f)) + f for f in frames) + b"\x10\x00"
    for name, data, expect in [
        ("cut.jsonl", body, [*lines, lines[4][:40]]),
        ("cut.bin", fbody, [*frames, b"partial"]),
        ("cut2.bin", short_header, [*frames, b"\x10\x00"]),
    ]:
        path = tmp_path / (name + (".zst" if compressed else ""))
        path.write_bytes(zstandard.ZstdCompressor().compress(data) if compressed else data)
        assert [b for _, b in iter_capture(path)] == expect, name


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


def test_corrupt_zstd_midway_stops_cleanly(tmp_path: Path) -> None:
    lines = jsonl_lines()
    good = zstandard.ZstdCompressor().compress(b"\n".join(lines[:10]) + b"\n")
    path = tmp_path / "bad.jsonl.zst"
    path.write_bytes(good + b"\x28\xb5\x2f\xfd" + b"\xff" * 64)
    assert [b for _, b in iter_capture(path)] == lines[:10]


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
