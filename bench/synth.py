"""Synthetic but wire-valid events: real TIDs, real CIDs (CIDv1, dag-cbor, sha256 of the record's DAG-CBOR),
records valid under our lexicons. Used by the tests, the benchmarks and load generation."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from typing import Any

import libipld

from indexer.events import Event

_B32_SORT = "234567abcdefghijklmnopqrstuvwxyz"
BASE_US = 1_750_000_000_000_000  # mid 2025


def make_tid(micros: int, clock_id: int = 0) -> str:
    """A TID: 53 bits of microseconds and 10 bits of clock id, base32-sortable, 13 characters."""
    value = (micros << 10) | (clock_id & 0x3FF)
    out = []
    for _ in range(13):
        out.append(_B32_SORT[value & 31])
        value >>= 5
    return "".join(reversed(out))


def make_cid(record: dict[str, Any]) -> str:
    digest = hashlib.sha256(libipld.encode_dag_cbor(record)).digest()
    raw = bytes([0x01, 0x71, 0x12, 0x20]) + digest
    return "b" + base64.b32encode(raw).decode().lower().rstrip("=")


def make_did(n: int) -> str:
    digest = hashlib.sha256(f"plyr-synth-{n}".encode()).digest()
    return "did:plc:" + base64.b32encode(digest).decode().lower()[:24]


def iso(micros: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(micros / 1e6, tz=dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def track_record(title: str, *, micros: int = BASE_US, artist: str = "Synth Artist", **extra: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "$type": "fm.plyr.track",
        "title": title,
        "artist": artist,
        "audioUrl": "https://audio.example.com/a.mp3",
        "fileType": "mp3",
        "duration": 180,
        "createdAt": iso(micros),
    }
    rec.update(extra)
    return rec


def like_record(subject_uri: str, subject_cid: str, *, micros: int = BASE_US) -> dict[str, Any]:
    return {
        "$type": "fm.plyr.like",
        "subject": {"uri": subject_uri, "cid": subject_cid},
        "createdAt": iso(micros),
    }


def comment_record(
    subject_uri: str, subject_cid: str, text: str, *, ms: int = 0, micros: int = BASE_US
) -> dict[str, Any]:
    return {
        "$type": "fm.plyr.comment",
        "subject": {"uri": subject_uri, "cid": subject_cid},
        "text": text,
        "timestampMs": ms,
        "createdAt": iso(micros),
    }


def list_record(items: list[tuple[str, str]], *, name: str = "list", micros: int = BASE_US) -> dict[str, Any]:
    return {
        "$type": "fm.plyr.list",
        "name": name,
        "listType": "playlist",
        "items": [{"subject": {"uri": u, "cid": c}} for u, c in items],
        "createdAt": iso(micros),
    }


def profile_record(bio: str, *, micros: int = BASE_US) -> dict[str, Any]:
    return {"$type": "fm.plyr.actor.profile", "bio": bio, "createdAt": iso(micros)}


def commit(
    did: str,
    collection: str,
    rkey: str,
    rev: str,
    record: dict[str, Any] | None,
    *,
    operation: str | None = None,
    source: str = "test",
    cursor: int | None = None,
) -> Event:
    op = operation or ("delete" if record is None else "create")
    return Event(
        kind="commit",
        did=did,
        source=source,
        cursor=cursor,
        operation=op,  # type: ignore[arg-type]
        collection=collection,
        rkey=rkey,
        rev=rev,
        cid=None if record is None else make_cid(record),
        record=record,
    )


def identity(did: str, handle: str | None, *, seq: int, micros: int, source: str = "test") -> Event:
    return Event(kind="identity", did=did, source=source, handle=handle, seq=seq, time=iso(micros))


def account(did: str, active: bool, status: str | None = None, *, seq: int, micros: int, source: str = "test") -> Event:
    return Event(kind="account", did=did, source=source, active=active, status=status, seq=seq, time=iso(micros))


def uri(did: str, collection: str, rkey: str) -> str:
    return f"at://{did}/{collection}/{rkey}"


def to_v1(ev: Event, time_us: int) -> dict[str, Any]:
    """The Jetstream v1 JSON object for `ev`, as a capture file or a live Jetstream would carry it."""
    out: dict[str, Any] = {"did": ev.did, "time_us": time_us, "kind": ev.kind}
    if ev.kind == "commit":
        c: dict[str, Any] = {
            "rev": ev.rev,
            "operation": ev.operation,
            "collection": ev.collection,
            "rkey": ev.rkey,
        }
        if ev.record is not None:
            c["record"] = ev.record
            c["cid"] = ev.cid
        out["commit"] = c
    elif ev.kind == "identity":
        out["identity"] = {"did": ev.did, "handle": ev.handle, "seq": ev.seq, "time": ev.time}
    else:
        acc: dict[str, Any] = {"active": ev.active, "did": ev.did, "seq": ev.seq, "time": ev.time}
        if ev.status is not None:
            acc["status"] = ev.status
        out["account"] = acc
    return out


def workload(n_events: int, *, seed: int = 7, invalid_share: float = 0.01) -> Iterator[dict[str, Any]]:
    """A deterministic mixed stream of `n_events` Jetstream v1 events exercising every fold rule: creates,
    updates and deletes of every collection, likes and comments arriving before their track, lists, profiles,
    handle changes, deactivation and reactivation, and a share of invalid records."""
    import random

    rng = random.Random(seed)
    n_dids = max(4, n_events // 40)
    dids = [make_did(i) for i in range(n_dids)]
    clock = BASE_US
    seq = 0
    # per-DID monotonic revs, as a PDS produces them
    last_rev_us: dict[str, int] = {}
    tracks: list[tuple[str, str, str]] = []  # (did, rkey, cid)
    planned: list[tuple[str, str]] = []  # track keys already liked, created later
    likes: list[tuple[str, str]] = []
    lists: list[tuple[str, str]] = []
    inactive: set[str] = set()

    def rev_for(did: str) -> str:
        us = max(clock, last_rev_us.get(did, 0) + 1)
        last_rev_us[did] = us
        return make_tid(us)

    def ev_commit(did: str, collection: str, rkey: str, record: dict[str, Any] | None, op: str) -> Event:
        return commit(did, collection, rkey, rev_for(did), record, operation=op)

    produced = 0
    while produced < n_events:
        clock += rng.randint(50, 400)
        did = rng.choice(dids)
        roll = rng.random()
        ev: Event
        if roll < invalid_share:
            bad = track_record("", micros=clock)  # minLength violation
            ev = ev_commit(did, "fm.plyr.track", make_tid(clock, 1), bad, "create")
        elif roll < 0.25:
            if planned and rng.random() < 0.2:
                pdid, rkey = planned.pop()
                did = pdid
            else:
                rkey = make_tid(clock, 2)
            rec = track_record(f"Track {produced}", micros=clock, artist=f"Artist {dids.index(did)}")
            ev = ev_commit(did, "fm.plyr.track", rkey, rec, "create")
            tracks.append((did, rkey, ev.cid or ""))
        elif roll < 0.58:
            if tracks and rng.random() < 0.9:
                tdid, trkey, tcid = rng.choice(tracks)
            else:
                tdid, trkey = rng.choice(dids), make_tid(clock, 3)
                tcid = make_cid({"planned": trkey})
                planned.append((tdid, trkey))
            rkey = make_tid(clock, 4)
            ev = ev_commit(
                did,
                "fm.plyr.like",
                rkey,
                like_record(uri(tdid, "fm.plyr.track", trkey), tcid, micros=clock),
                "create",
            )
            likes.append((did, rkey))
        elif roll < 0.62 and likes:
            ldid, lrkey = likes.pop(rng.randrange(len(likes)))
            ev = ev_commit(ldid, "fm.plyr.like", lrkey, None, "delete")
        elif roll < 0.68 and tracks:
            tdid, trkey, _ = rng.choice(tracks)
            rec = track_record(f"Track {produced} (edit)", micros=clock)
            ev = ev_commit(tdid, "fm.plyr.track", trkey, rec, "update")
        elif roll < 0.70 and tracks:
            tdid, trkey, _ = tracks.pop(rng.randrange(len(tracks)))
            ev = ev_commit(tdid, "fm.plyr.track", trkey, None, "delete")
        elif roll < 0.80 and tracks:
            tdid, trkey, tcid = rng.choice(tracks)
            rec = comment_record(
                uri(tdid, "fm.plyr.track", trkey),
                tcid,
                f"comment {produced}",
                ms=rng.randint(0, 300_000),
                micros=clock,
            )
            ev = ev_commit(did, "fm.plyr.comment", make_tid(clock, 5), rec, "create")
        elif roll < 0.88 and tracks:
            items = [(uri(d, "fm.plyr.track", k), c) for d, k, c in rng.sample(tracks, min(len(tracks), 5))]
            if lists and rng.random() < 0.4:
                ldid, lrkey = rng.choice(lists)
                ev = ev_commit(ldid, "fm.plyr.list", lrkey, list_record(items, micros=clock), "update")
            else:
                lrkey = make_tid(clock, 6)
                ev = ev_commit(did, "fm.plyr.list", lrkey, list_record(items, micros=clock), "create")
                lists.append((did, lrkey))
        elif roll < 0.93:
            ev = ev_commit(
                did,
                "fm.plyr.actor.profile",
                "self",
                profile_record(f"bio {produced}", micros=clock),
                "update" if rng.random() < 0.5 else "create",
            )
        elif roll < 0.97:
            seq += 1
            ev = identity(did, f"artist{dids.index(did)}-{seq % 3}.test", seq=seq, micros=clock)
        else:
            seq += 1
            if did in inactive:
                inactive.discard(did)
                ev = account(did, True, None, seq=seq, micros=clock)
            else:
                inactive.add(did)
                ev = account(did, False, rng.choice(["deactivated", "takendown", "suspended"]), seq=seq, micros=clock)
        produced += 1
        yield to_v1(ev, clock)
