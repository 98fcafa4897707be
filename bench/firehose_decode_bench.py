"""Raw firehose decode throughput: `indexer.firehose.decode_frame` against the `atproto` SDK's own parsing.

The production relay frames of the reference corpus are repeated to the requested count and decoded by both,
in the same process, in two modes:

* filter: only `fm.plyr.*` ops are wanted. The SDK path is its documented one (frame -> message model), with
  the CAR decoded only when an op is wanted, as ours does.
* everything: every op of every commit. The SDK decodes the frame, builds the message model, decodes the CAR
  (`CAR.from_bytes`) and looks each op's record block up; ours also checks each record against its CID and
  renders it as Jetstream JSON, which the SDK does not do.

The corpus window holds no `fm.plyr.*` op (as most of the real firehose), so the filter rows measure the cost
of skipping. Informational rows follow: a filter that does match (`app.bsky.feed.post`, about one op in
eight), the SDK also building record models (`models.get_or_create`, its documented firehose example), and
ours with full verification (signature + MST proof per commit, keys parsed once per DID as a cache would).

    uv run python bench/firehose_decode_bench.py [--frames 100000] [--rounds 5] [--capture PATH]
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import zstandard

from indexer.atproto.repo.signatures import parse_signing_key, verify_commit_with_key
from indexer.capture.files import iter_capture
from indexer.events import Event
from indexer.firehose.frames import decode_frame
from indexer.fold.collections import WANTED

DEFAULT_CAPTURE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "corpus" / "frames.bin.zst"


def _everything(_: str) -> bool:
    return True


def load_sdk() -> tuple[Callable[[bytes, str], int], Callable[[bytes], int]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from atproto_client import models
        from atproto_core.car import CAR
        from atproto_firehose import parse_subscribe_repos_message
        from atproto_subscription.frames import Frame

    commit_model = models.ComAtprotoSyncSubscribeRepos.Commit

    def sdk_decode(data: bytes, prefix: str) -> int:
        message = parse_subscribe_repos_message(Frame.from_bytes(data))
        if not isinstance(message, commit_model):
            return 0
        ops = [op for op in message.ops if op.path.startswith(prefix)]
        if not ops:
            return 0
        car = CAR.from_bytes(message.blocks)
        found = 0
        for op in ops:
            if op.cid is not None and car.blocks.get(op.cid) is not None:
                found += 1
            elif op.action == "delete":
                found += 1
        return found

    def sdk_with_records(data: bytes) -> int:
        message = parse_subscribe_repos_message(Frame.from_bytes(data))
        if not isinstance(message, commit_model):
            return 0
        car = CAR.from_bytes(message.blocks)
        found = 0
        for op in message.ops:
            if op.cid is not None:
                raw = car.blocks.get(op.cid)
                if raw is not None:
                    models.get_or_create(raw, strict=False)
                    found += 1
            else:
                found += 1
        return found

    return sdk_decode, sdk_with_records


def ours(want: Callable[[str], bool], verify: Any = None) -> Callable[[bytes], int]:
    def run(data: bytes) -> int:
        n = 0
        for item in decode_frame(data, source="bench", want=want, verify=verify):
            if type(item) is Event and item.kind == "commit":
                n += 1
        return n

    return run


def time_it(fn: Callable[[bytes], int], frames: Sequence[bytes], rounds: int) -> tuple[list[float], int]:
    samples: list[float] = []
    produced = 0
    for _ in range(rounds):
        gc.collect()
        produced = 0
        start = time.perf_counter()
        for data in frames:
            produced += fn(data)
        samples.append(time.perf_counter() - start)
    return samples, produced


def did_doc_verifier(capture: Path) -> Callable[[str, dict[str, Any]], str | None] | None:
    docs_path = capture.parent / "did_docs.json.zst"
    if not docs_path.exists():
        return None
    docs = json.loads(zstandard.ZstdDecompressor().decompressobj().decompress(docs_path.read_bytes()))
    keys: dict[str, str] = {}

    def verify(did: str, commit: dict[str, Any]) -> str | None:
        key = keys.get(did)
        if key is None:
            key = keys[did] = parse_signing_key(docs[did])
        return verify_commit_with_key(commit, key)

    return verify


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=100_000, help="minimum number of frames to decode")
    parser.add_argument("--rounds", type=int, default=5, help="timed passes per row (median reported)")
    parser.add_argument("--capture", type=Path, default=DEFAULT_CAPTURE)
    args = parser.parse_args(argv)

    corpus = [frame for _, frame in iter_capture(args.capture, strict=True)]
    repeat = -(-args.frames // len(corpus))
    frames = corpus * repeat
    sdk_decode, sdk_with_records = load_sdk()
    verify = did_doc_verifier(args.capture)

    print(f"python {platform.python_version()} on {platform.machine()} ({platform.system()})")
    print(f"libipld {version('libipld')}, atproto {version('atproto')}")
    print(f"{len(frames)} frames ({len(corpus)} production frames x {repeat}), median of {args.rounds}\n")

    rows: list[tuple[str, Callable[[bytes], int]]] = [
        ("filter fm.plyr.*   ours", ours(WANTED)),
        ("filter fm.plyr.*   SDK", lambda d: sdk_decode(d, "fm.plyr.")),
        ("everything         ours", ours(_everything)),
        ("everything         SDK", lambda d: sdk_decode(d, "")),
        ("filter posts       ours", ours(lambda c: c == "app.bsky.feed.post")),
        ("filter posts       SDK", lambda d: sdk_decode(d, "app.bsky.feed.post/")),
        ("everything         SDK + record models", sdk_with_records),
    ]
    if verify is not None:
        rows.append(("everything         ours + signature + MST proof", ours(_everything, verify)))

    results: dict[str, float] = {}
    print(f"{'':50} {'us/frame':>9} {'frames/s':>11} {'ops out':>8}")
    for name, fn in rows:
        samples, produced = time_it(fn, frames, args.rounds)
        median = statistics.median(samples)
        results[name] = median
        per = median / len(frames)
        print(f"{name:50} {per * 1e6:9.2f} {len(frames) / median:11,.0f} {produced:8}")

    def ratio(a: str, b: str) -> float:
        return results[b] / results[a]

    f = ratio("filter fm.plyr.*   ours", "filter fm.plyr.*   SDK")
    e = ratio("everything         ours", "everything         SDK")
    print()
    print(f"speed-up with the fm.plyr filter: {f:5.2f}x  (target >= 5x)")
    print(f"speed-up decoding everything:     {e:5.2f}x  (target >= 1.5x)")
    return 0 if f >= 5 and e >= 1.5 else 1


if __name__ == "__main__":
    sys.exit(main())
