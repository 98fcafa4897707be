"""convert(): a relay frame capture to Jetstream v1 JSON lines, checked against production Jetstream."""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import stat
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import zstandard

from indexer.capture.convert import convert
from tests.test_firehose_support import (
    CORPUS,
    FRAMES,
    T0_US,
    TRACK_RECORD,
    FakeRepo,
    Op,
    corpus_frames,
    expected_v1,
    make_frame,
    manifest,
    write_capture,
)


def without_time(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k != "time_us"}


def read_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    out = tmp_path_factory.mktemp("convert") / "v1.jsonl"
    return out, convert(FRAMES, out)


def test_conformance_with_production_jetstream(converted: tuple[Path, Any]) -> None:
    out, _ = converted
    got = [without_time(e) for e in read_lines(out)]
    expected = [without_time(e) for e in expected_v1()]
    assert len(got) == len(expected) == manifest()["v1_events"]
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        assert g == e, f"event {i} differs"


def test_kind_counts_match_the_manifest(converted: tuple[Path, Any]) -> None:
    out, stats = converted
    m = manifest()
    want = {"create": m["creates"], "update": m["updates"], "delete": m["deletes"]}
    want |= {"identity": m["identity"], "account": m["account"]}
    assert stats.kinds == want
    assert stats.frames == m["frames"] and stats.events == m["v1_events"]
    assert stats.malformed == {} and stats.control == {} and stats.capture_error is None
    ops = Counter(e["commit"]["operation"] if e["kind"] == "commit" else e["kind"] for e in read_lines(out))
    assert dict(ops) == want


def test_lines_are_byte_identical_apart_from_time_us(converted: tuple[Path, Any]) -> None:
    # Stronger than the parsed comparison: key order, escaping (Go's \u0026 for '&') and number formatting.
    out, _ = converted

    def norm(line: str) -> str:
        return re.sub(r'"time_us":\d+', '"time_us":0', line)

    got = out.read_text().splitlines()
    expected = (CORPUS / "expected_v1.jsonl").read_text().splitlines()
    assert [norm(line) for line in got] == [norm(line) for line in expected]
    assert any("\\u0026" in line for line in got)


def test_time_us_comes_from_relay_time_and_strictly_increases(converted: tuple[Path, Any]) -> None:
    out, _ = converted
    times = [e["time_us"] for e in read_lines(out)]
    assert times[0] == T0_US
    assert all(b > a for a, b in itertools.pairwise(times))
    # Three ops of one commit share a relay time; the later two are nudged forward by a microsecond each.
    lines = read_lines(out)
    same = [e["time_us"] for e in lines if e["did"] == "did:plc:u4lmvw4wwzaql3z5kcf3r7h4"]
    assert len(same) == 3 and same[1] == same[0] + 1 and same[2] == same[1] + 1


def test_truncated_capture_keeps_whole_frames(tmp_path: Path) -> None:
    frames = corpus_frames()[:10]
    capture = tmp_path / "cut.bin.zst"
    write_capture(capture, frames, tail=(5000).to_bytes(4, "little") + b"partial")
    out = tmp_path / "cut.jsonl"
    stats = convert(capture, out)
    offset = sum(4 + len(f) for f in frames)
    assert stats.frames == 10
    assert stats.capture_error == f"capture truncated inside frame 10 at byte {offset} (7 of 5000 bytes)"
    assert [without_time(e) for e in read_lines(out)] == [without_time(e) for e in expected_v1()[:10]]


def test_corrupt_zstd_keeps_whole_frames_and_names_the_offset(tmp_path: Path) -> None:
    frames = corpus_frames()[:10]
    capture = tmp_path / "bad.bin.zst"
    write_capture(capture, frames)
    capture.write_bytes(capture.read_bytes() + b"\x28\xb5\x2f\xfd" + b"\xff" * 64)
    out = tmp_path / "bad.jsonl"
    stats = convert(capture, out)
    offset = sum(4 + len(f) for f in frames)
    assert stats.frames == 10 and stats.capture_error is not None
    assert stats.capture_error.startswith("corrupt zstd data")
    assert stats.capture_error.endswith(f"after {offset} decoded bytes, reading frame 10")
    assert [without_time(e) for e in read_lines(out)] == [without_time(e) for e in expected_v1()[:10]]


def test_uncompressed_capture_converts_the_same(tmp_path: Path, converted: tuple[Path, Any]) -> None:
    capture = tmp_path / "frames.bin"
    capture.write_bytes(b"".join(len(f).to_bytes(4, "little") + f for f in corpus_frames()))
    out = tmp_path / "v1.jsonl"
    stats = convert(capture, out)
    assert stats == converted[1]
    assert out.read_bytes() == converted[0].read_bytes()


def test_non_v1_frames_and_bad_ops_are_counted_not_written(tmp_path: Path) -> None:
    repo = FakeRepo()
    good = repo.commit_frame([Op("create", "fm.plyr.track/3mptbyplj5d2a", TRACK_RECORD)], seq=1)
    broken = repo.commit_frame(
        [Op("create", "fm.plyr.track/3mptbyplj5d2b", TRACK_RECORD)],
        seq=2,
        omit=["fm.plyr.track/3mptbyplj5d2b"],
    )
    frames = [
        make_frame({"op": 1, "t": "#info"}, {"name": "OutdatedCursor"}),
        good,
        broken,
        make_frame(
            {"op": 1, "t": "#sync"},
            {
                "did": repo.did,
                "seq": 3,
                "time": "2026-07-04T14:38:07.517Z",
                "rev": "3mptbypluud2a",
                "blocks": b"",
            },
        ),
        b"\xff\xfe garbage",
        make_frame({"op": -1}, {"error": "ConsumerTooSlow"}),
    ]
    capture = tmp_path / "mixed.bin.zst"
    write_capture(capture, frames)
    out = tmp_path / "mixed.jsonl"
    stats = convert(capture, out)
    lines = read_lines(out)
    assert [(e["kind"], e["commit"]["rkey"]) for e in lines] == [("commit", "3mptbyplj5d2a")]
    assert lines[0]["commit"]["record"]["waveform"] == {"$bytes": "AAEC/w"}
    assert stats.events == 1 and stats.frames == 6
    assert stats.malformed == {"missing_block": 1, "invalid_cbor": 1}
    assert stats.control == {"info": 1, "sync": 1, "error": 1}


def test_output_is_replaced_not_appended(tmp_path: Path) -> None:
    out = tmp_path / "v1.jsonl"
    out.write_text("stale line\n")
    capture = tmp_path / "one.bin.zst"
    write_capture(capture, corpus_frames()[:1])
    convert(capture, out)
    assert len(out.read_text().splitlines()) == 1
    assert {p.name for p in tmp_path.iterdir()} == {"v1.jsonl", "one.bin.zst"}  # no temporary file left


def test_a_zst_output_is_compressed_and_made_with_the_umask(tmp_path: Path, converted: tuple[Path, Any]) -> None:
    plain, _ = converted
    packed = tmp_path / "v1.jsonl.zst"
    previous = os.umask(0o022)
    try:
        convert(FRAMES, packed)
    finally:
        os.umask(previous)
    data = packed.read_bytes()
    assert data[:4] == b"\x28\xb5\x2f\xfd"
    assert zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read() == plain.read_bytes()
    # An ordinary file, not a private temporary one.
    assert stat.S_IMODE(packed.stat().st_mode) == 0o644
