"""The sample capture shipped in `examples/sample.jsonl`: a small music network to try the index on, offline.

    uv run python bench/sample_capture.py [--check]

Eight artists with verified-looking handles and profiles, their tracks (some in albums), playlists, likes and
timed comments, as Jetstream v1 JSON lines: every record valid under our lexicons, a few hundred events. The
file is generated, deterministically, by this script; `--check` fails when the committed file differs from what
it generates (tests/test_sample_capture.py runs it)."""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.synth import (  # noqa: E402
    BASE_US,
    comment_record,
    commit,
    identity,
    iso,
    like_record,
    make_did,
    make_tid,
    profile_record,
    to_v1,
    track_record,
    uri,
)

OUT = ROOT / "examples" / "sample.jsonl"

ARTISTS = [
    ("nightjar.example.com", "Nightjar", "Field recordings and slow synths from the marsh."),
    ("cobalt-choir.example.com", "Cobalt Choir", "A cappella, twelve voices, one room."),
    ("rustbelt.example.com", "Rustbelt Radio", "Guitar music for long drives."),
    ("mira-okafor.example.com", "Mira Okafor", "Piano, tape loops and the occasional cello."),
    ("lowtide.example.com", "Low Tide", "Dub from a seaside town."),
    ("paper-kites.example.com", "Paper Kites Club", "Bedroom pop, recorded in actual bedrooms."),
    ("ferrous.example.com", "Ferrous", "Industrial techno, 138 bpm and up."),
    ("juniper.example.com", "Juniper & Ash", "Folk duo. Harmonies, banjo, arguments."),
]
WORDS = (
    "amber marsh signal harbour lantern static orchard echo ember meridian tide river glass hollow winter "
    "copper paper kite drift velvet north quiet engine garden saltwater"
).split()
COMMENTS = ["this part!", "love the bass here", "goosebumps", "on repeat", "what a drop", "beautiful", "the harmony"]


def _title(rng: random.Random) -> str:
    return " ".join(w.capitalize() for w in rng.sample(WORDS, rng.choice((1, 2, 2, 3))))


def events() -> list[dict[str, Any]]:
    rng = random.Random(2026)
    clock = BASE_US
    lines: list[dict[str, Any]] = []
    tracks: list[tuple[str, str, str]] = []  # (did, rkey, cid)

    def tick() -> int:
        nonlocal clock
        clock += rng.randint(2_000_000, 90_000_000)
        return clock

    def emit_commit(did: str, collection: str, record: dict[str, Any], rkey: str | None = None) -> tuple[str, str]:
        micros = tick()
        rkey = rkey or make_tid(micros, rng.randint(0, 1023))
        ev = commit(did, collection, rkey, make_tid(micros), record)
        lines.append(to_v1(ev, micros))
        return rkey, ev.cid or ""

    for n, (handle, name, bio) in enumerate(ARTISTS):
        did = make_did(9000 + n)
        micros = tick()
        lines.append(to_v1(identity(did, handle, seq=n + 1, micros=micros), micros))
        emit_commit(did, "fm.plyr.actor.profile", profile_record(bio, micros=clock), rkey="self")
        album = f"{_title(rng)} (LP)" if n % 2 == 0 else None
        for i in range(rng.randint(4, 7)):
            extra: dict[str, Any] = {"album": album} if album and i < 4 else {}
            record = track_record(_title(rng), micros=clock, artist=name, duration=rng.randint(95, 420), **extra)
            rkey, cid = emit_commit(did, "fm.plyr.track", record)
            tracks.append((did, rkey, cid))

    listeners = [make_did(9100 + i) for i in range(40)]
    for n, did in enumerate(listeners):
        micros = tick()
        lines.append(to_v1(identity(did, f"listener{n}.example.net", seq=100 + n, micros=micros), micros))
        for t_did, rkey, cid in rng.sample(tracks, rng.randint(3, 9)):
            emit_commit(did, "fm.plyr.like", like_record(uri(t_did, "fm.plyr.track", rkey), cid, micros=clock))
        if n % 4 == 0:
            picked = rng.sample(tracks, rng.randint(3, 6))
            items = [{"subject": {"uri": uri(d, "fm.plyr.track", r), "cid": c}} for d, r, c in picked]
            playlist = {
                "$type": "fm.plyr.list",
                "name": f"{_title(rng)} mix",
                "listType": "playlist",
                "items": items,
                "createdAt": iso(clock),
            }
            emit_commit(did, "fm.plyr.list", playlist)
        for t_did, rkey, cid in rng.sample(tracks, 2):
            text = rng.choice(COMMENTS)
            record = comment_record(uri(t_did, "fm.plyr.track", rkey), cid, text, ms=rng.randint(5, 170) * 1000)
            emit_commit(did, "fm.plyr.comment", record)
    return lines


def render() -> bytes:
    return b"".join(msgspec.json.encode(line) + b"\n" for line in events())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true", help="fail if the committed sample differs from this script's")
    args = ap.parse_args()
    data = render()
    if args.check:
        if not OUT.exists() or OUT.read_bytes() != data:
            sys.exit(f"{OUT} is stale: run `uv run python bench/sample_capture.py`")
        return
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_bytes(data)
    print(f"wrote {OUT} ({len(data.splitlines())} events)")


if __name__ == "__main__":
    main()
