"""Micro-benchmark of the lexicon validator: microseconds per `Validator.validate` call on typical records.

    uv run python bench/validator_bench.py [--seconds 0.5]

Each case is timed in batches for about `--seconds`, best of 5 runs (the minimum is the least noisy
estimate of the cost itself).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from indexer.atproto.lexicon import Validator

DID = "did:plc:z72i7hdynmk6r22z27h6tvur"
TRACK_URI = f"at://{DID}/fm.plyr.track/3lbyvyjw5fk2n"
CID = "bafyreihfsh4wnrq3rwtdg3wjkt2g5hgsxcqyzxybmaq4qu6avtwocrmmgm"
BLOB_CID = "bafkreibme22gw2h7y2h7tg2fhqotaqjucnbc24deqo72b6mkl2egezxhvy"
NOW = "2025-11-20T18:04:11.512Z"

TRACK: dict[str, Any] = {
    "$type": "fm.plyr.track",
    "title": "Nachtfahrt (Extended Mix)",
    "artist": "Lena Vogt",
    "album": "Stadtlichter",
    "fileType": "mp3",
    "duration": 412,
    "audioUrl": "https://cdn.plyr.fm/audio/5f0c1d2e.mp3",
    "imageUrl": "https://cdn.plyr.fm/images/5f0c1d2e.jpg",
    "features": [{"did": "did:plc:ewvi7nxzyoun6zhxrhs64oiz", "handle": "mara.bsky.social"}],
    "description": "Recorded live at the Kesselhaus, mixed at home.",
    "audioBlob": {"$type": "blob", "ref": {"$link": BLOB_CID}, "mimeType": "audio/mpeg", "size": 9876543},
    "createdAt": NOW,
}
LIKE: dict[str, Any] = {"$type": "fm.plyr.like", "subject": {"uri": TRACK_URI, "cid": CID}, "createdAt": NOW}
LIST: dict[str, Any] = {
    "$type": "fm.plyr.list",
    "name": "Late night drive 🌙",
    "listType": "playlist",
    "items": [{"subject": {"uri": f"{TRACK_URI[:-2]}{i:02d}", "cid": CID}} for i in range(20)],
    "createdAt": NOW,
    "updatedAt": NOW,
}

CASES: list[tuple[str, str, str, dict[str, Any], bool]] = [
    ("track (valid)", "fm.plyr.track", "3lbyvyjw5fk2n", TRACK, True),
    ("like (valid)", "fm.plyr.like", "3lbyw2kqhzc2a", LIKE, True),
    ("list, 20 items (valid)", "fm.plyr.list", "3lbyw3abcde2b", LIST, True),
    ("track, bad createdAt", "fm.plyr.track", "3lbyvyjw5fk2n", {**TRACK, "createdAt": "yesterday"}, False),
    ("track, title too long", "fm.plyr.track", "3lbyvyjw5fk2n", {**TRACK, "title": "x" * 300}, False),
    (
        "like, missing subject",
        "fm.plyr.like",
        "3lbyw2kqhzc2a",
        {"$type": "fm.plyr.like", "createdAt": NOW},
        False,
    ),
    (
        "list, bad cid in last item",
        "fm.plyr.list",
        "3lbyw3abcde2b",
        {**LIST, "items": [*LIST["items"][:-1], {"subject": {"uri": TRACK_URI, "cid": "nope"}}]},
        False,
    ),
    ("like, rkey not a TID", "fm.plyr.like", "not-a-tid", LIKE, False),
]


def time_per_call(fn: Callable[[], object], seconds: float) -> float:
    """Best-of-5 seconds per call."""
    batch = 1
    while True:  # size a batch to take about seconds / 5
        start = time.perf_counter()
        for _ in range(batch):
            fn()
        took = time.perf_counter() - start
        if took > seconds / 5:
            break
        batch *= 2
    best = took / batch
    for _ in range(4):
        start = time.perf_counter()
        for _ in range(batch):
            fn()
        best = min(best, (time.perf_counter() - start) / batch)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="time budget per run of each case")
    args = parser.parse_args()

    start = time.perf_counter()
    validator = Validator.load()
    print(f"load + compile: {(time.perf_counter() - start) * 1e3:.1f} ms")

    for name, collection, rkey, record, expect_valid in CASES:
        result = validator.validate(collection, rkey, record)
        if (result is None) != expect_valid:
            raise SystemExit(f"{name}: unexpected result {result}")
        per_call = time_per_call(lambda c=collection, k=rkey, r=record: validator.validate(c, k, r), args.seconds)
        shown = "ok" if result is None else f"{result.path or '-'} ({result.rule})"
        print(f"{name:<28} {per_call * 1e6:7.2f} µs/record  {1 / per_call:>10,.0f} records/s  {shown}")


if __name__ == "__main__":
    main()
