"""`plyr-appview audit-audio`: compare what records reference with what storage holds.

- dangling: live tracks whose audioUrl is ours (`https://<public host>/audio-files/<sha256>`) but whose object is
  not in storage; checked against the store itself, not only the `audio_objects` table;
- orphans: objects in storage that no track references (by path, whatever the host: see indexer/audio/refs.py);
- unstored: `audio_objects` rows whose object is gone (playback would redirect to nothing).

`--delete-orphans --older-than D` deletes orphans whose object and last upload are both older than D (an upload
precedes the record that points at it). Each deletion re-checks, under the object's advisory lock and with
folding paused, that no track references the object and that nobody uploaded it again meanwhile, then deletes the
object and its row.
A referenced object is never deleted.

The whole listing is held in memory (some 200 bytes per object): an operator command, not a hot path.
"""

from __future__ import annotations

import re
import time
from typing import Any

import msgspec
import psycopg

from indexer.audio import refs as audio_refs
from indexer.audio.store import AudioStore, audio_key, sha256_of_key
from indexer.db import locks

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """`90`, `90s`, `15m`, `12h`, `7d`, `2w` → seconds."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(f"not a duration: {text!r} (examples: 3600, 90m, 12h, 7d)")
    return float(match[1]) * _UNITS[match[2]]


class Dangling(msgspec.Struct, kw_only=True, rename="camel"):
    uri: str
    sha256: str
    audio_url: str


class Orphan(msgspec.Struct, kw_only=True, rename="camel"):
    sha256: str
    size: int
    age_seconds: int


class Audit(msgspec.Struct, kw_only=True, rename="camel"):
    objects: int
    referenced_objects: int
    dangling: list[Dangling]
    orphans: list[Orphan]
    unstored: list[str]
    deleted: list[str] = msgspec.field(default_factory=list)
    # Orphans left alone by --delete-orphans, and why (too recent, referenced on re-check, uploaded again).
    spared: dict[str, str] = msgspec.field(default_factory=dict)


_TRACK_REFS = f"""
SELECT uri, audio_url, {audio_refs.REF_SHA}
FROM tracks WHERE {audio_refs.REF_PREDICATE}
"""

_UPLOADED_AT = "SELECT sha256, extract(epoch FROM uploaded_at)::float8 FROM audio_objects"

_RECHECK = f"""
SELECT {audio_refs.REFERENCED.removeprefix("SELECT ")},
       (SELECT extract(epoch FROM uploaded_at)::float8 FROM audio_objects WHERE sha256 = %s)
"""


async def audit(
    conninfo: str,
    store: AudioStore,
    public_host: str,
    *,
    delete_older_than: float | None = None,
    now: float | None = None,
) -> Audit:
    objects: dict[str, float] = {}
    sizes: dict[str, int] = {}
    async for obj in store.list():
        sha = sha256_of_key(obj.key)
        if sha is not None:
            objects[sha] = obj.modified
            sizes[sha] = obj.size
    dangling: list[Dangling] = []
    referenced: set[str] = set()
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        async with conn.transaction(), conn.cursor(name="audit_audio_refs") as cur:
            await cur.execute(_TRACK_REFS)
            async for uri, url, ref in cur:
                if ref is not None:
                    referenced.add(str(ref))
                own = audio_refs.own_sha256(str(url), public_host)
                if own is not None and own not in objects:
                    dangling.append(Dangling(uri=str(uri), sha256=own, audio_url=str(url)))
        cur2 = await conn.execute(_UPLOADED_AT)
        uploaded = {str(sha): float(str(at)) for sha, at in await cur2.fetchall()}
        clock = time.time() if now is None else now
        orphans = [
            Orphan(sha256=sha, size=sizes[sha], age_seconds=int(clock - max(modified, uploaded.get(sha, 0.0))))
            for sha, modified in sorted(objects.items())
            if sha not in referenced
        ]
        result = Audit(
            objects=len(objects),
            referenced_objects=len(referenced & objects.keys()),
            dangling=sorted(dangling, key=lambda d: d.uri),
            orphans=orphans,
            unstored=sorted(uploaded.keys() - objects.keys()),
        )
        if delete_older_than is not None:
            for orphan in orphans:
                if orphan.age_seconds < delete_older_than:
                    result.spared[orphan.sha256] = "recent"
                    continue
                why = await _delete_orphan(conn, store, orphan.sha256, objects[orphan.sha256], delete_older_than)
                if why is None:
                    result.deleted.append(orphan.sha256)
                else:
                    result.spared[orphan.sha256] = why
    return result


async def _delete_orphan(
    conn: psycopg.AsyncConnection[Any], store: AudioStore, sha256: str, modified: float, grace: float
) -> str | None:
    """Delete one orphan unless the re-check under its lock says otherwise; the reason it was spared, if so."""
    async with conn.transaction():
        await conn.execute(locks.LOCK_AUDIO_OBJECT, (sha256,))
        # Exclusive against every batch writer until commit: a record folded between this re-check and the
        # delete would otherwise point at an object that is gone. Costs the fold one delete's wait.
        await conn.execute(locks.LOCK_FOLD_EXCLUSIVE)
        cur = await conn.execute(_RECHECK, (sha256, sha256))
        row = await cur.fetchone()
        assert row is not None
        is_referenced, uploaded_at = bool(row[0]), row[1]
        if is_referenced:
            return "referenced"
        if time.time() - max(modified, float(uploaded_at or 0.0)) < grace:
            return "uploaded again"
        await store.delete(audio_key(sha256))
        await conn.execute("DELETE FROM audio_objects WHERE sha256 = %s", (sha256,))
    return None


def to_json(result: Audit) -> dict[str, Any]:
    out: dict[str, Any] = msgspec.to_builtins(result)
    return out
