"""Synthetic but wire-valid events: real TIDs, real CIDs (CIDv1, dag-cbor, sha256 of the record's DAG-CBOR),
records valid under our lexicons. Used by the tests, the benchmarks and load generation."""

from __future__ import annotations

import base64
import hashlib
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

    return dt.datetime.fromtimestamp(micros / 1e6, tz=dt.UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )


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


def comment_record(subject_uri: str, subject_cid: str, text: str, *, ms: int = 0, micros: int = BASE_US) -> dict[str, Any]:
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


def account(
    did: str, active: bool, status: str | None = None, *, seq: int, micros: int, source: str = "test"
) -> Event:
    return Event(kind="account", did=did, source=source, active=active, status=status, seq=seq, time=iso(micros))


def uri(did: str, collection: str, rkey: str) -> str:
    return f"at://{did}/{collection}/{rkey}"
