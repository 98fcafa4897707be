"""Ingest under faults (`bench/chaos_replay.py`): SIGKILLed replays, redelivered and reshuffled captures with
cursor rewinds, all judged against an uninterrupted run by the state hash. The default suite runs a small
capture; `pytest -m long` runs the full 200k-event, 20-kill figure."""

from __future__ import annotations

import random
from pathlib import Path

import msgspec
import pytest

from bench.chaos_replay import capture_lines, run, variant_lines
from bench.synth import BASE_US, commit, make_tid, track_record
from indexer.atproto.lexicon import Validator
from tests.helpers import TRACK, ingest, rows


def test_variant_keeps_each_did_in_order_and_redelivers_a_share() -> None:
    lines = capture_lines(3000, seed=5)
    variant = variant_lines(lines, random.Random(9), 0.3)
    did = msgspec.json.Decoder(dict[str, object])

    def per_did(seq: list[bytes]) -> dict[str, list[bytes]]:
        out: dict[str, list[bytes]] = {}
        for line in seq:
            out.setdefault(str(did.decode(line)["did"]), []).append(line)
        return out

    # Without the redeliveries, each DID sees exactly its own lines in its own order.
    seen: set[bytes] = set()
    first_deliveries = []
    for line in variant:
        if line not in seen:
            seen.add(line)
            first_deliveries.append(line)
    assert per_did(first_deliveries) == per_did(lines)
    assert first_deliveries != lines  # the order across DIDs did change
    extra = len(variant) - len(lines)
    assert 0.25 * len(lines) < extra < 0.35 * len(lines)
    # Every redelivery comes after the first delivery of the same line.
    position = {line: i for i, line in reversed(list(enumerate(variant)))}
    assert all(position[line] <= i for i, line in enumerate(variant))


async def test_a_redelivered_bad_event_is_one_rejection(db_url: str, validator: Validator) -> None:
    rkey = make_tid(BASE_US)
    bad = track_record("")  # below minLength: rejected
    first = commit("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", TRACK, rkey, rkey, bad, source="a", cursor=1)
    again = commit("did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", TRACK, rkey, rkey, bad, source="b", cursor=77)
    again.time_us = 123
    await ingest(db_url, validator, [first], [again])
    assert await rows(db_url, "SELECT reason, source, source_cursor FROM rejections") == [("invalid_record", "a", 1)]


def _check(result: dict[str, object], kills: int) -> None:
    killed = result["killed"]
    variant = result["variant"]
    assert isinstance(killed, dict) and isinstance(variant, dict)
    assert killed["kills"] >= kills, killed
    # Kills landed inside the replay, not only before or after it.
    inside = [p for p in killed["kill_points"] if p["killed"] and p["cursor_after"] is not None]
    assert len(inside) >= kills // 2
    assert killed["checks"] == dict.fromkeys(killed["checks"], True), killed["checks"]
    assert len(variant["rewinds"]) == 2 and all(r["lines_again"] > 0 for r in variant["rewinds"])
    assert variant["duplicated_lines"] > 0
    assert variant["checks"] == dict.fromkeys(variant["checks"], True), variant["checks"]
    assert result["ok"] is True


def test_killed_and_rewound_replays_equal_an_uninterrupted_one(pg_admin_url: str, tmp_path: Path) -> None:
    result = run(
        pg_admin_url, tmp_path, events=20_000, kills=5, rewinds=2, dup_share=0.3, seed=20261122, batch_size=500
    )
    _check(result, 5)


@pytest.mark.long
@pytest.mark.timeout(3600)
def test_full_size_chaos_replay(pg_admin_url: str, tmp_path: Path) -> None:
    seed = random.SystemRandom().randrange(1 << 31)
    print(f"chaos seed {seed}")
    result = run(
        pg_admin_url, tmp_path, events=200_000, kills=20, rewinds=2, dup_share=0.3, seed=seed, batch_size=5000
    )
    _check(result, 20)
