"""Operator takedowns: what can be taken down, and the one way a takedown is applied or undone.

Contract:
- A subject is an account (a DID), a record (`at://<did>/<collection>/<rkey>`, any of our collections, indexed
  yet or not) or an uploaded audio object (its sha256, `sha256:<hex>`, or a blob CID whose hash is sha-256).
- A change is an event appended to the log (kind `takedown`, source `operator`; `create` applies, `delete`
  undoes) and folded in the same transaction by the one fold (indexer/fold/sql.py `FOLD_TAKEDOWNS`): it takes
  effect on commit, and `rebuild` refolds it like any other event, so takedowns survive rebuilds and replays
  and the state hash covers them. No network source can produce this kind: the parsers only build commit,
  identity and account events.
- A taken-down record or account leaves every projection (views, feeds, search, counts, list items, comments)
  and returns, counts exactly restored, on undo. A taken-down audio object is refused by the audio routes.
- Changes are serialised (`locks.LOCK_TAKEDOWNS`) and a change that changes nothing appends nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

import libipld
import psycopg

from indexer.atproto.syntax import is_did, is_handle, is_nsid, is_record_key
from indexer.db import locks
from indexer.fold.apply import apply, create_temp_tables
from indexer.fold.collections import BY_NSID
from indexer.fold.prepare import EventRow, Prepared
from indexer.fold.sql import EVENT_COLUMNS

Connection = psycopg.AsyncConnection[tuple[object, ...]]
SubjectKind = Literal["account", "record", "audio"]

SOURCE = "operator"
KIND = "takedown"
# The collection and DID of an audio object's subject row: objects belong to no account.
AUDIO = "blob"
_SHA256 = re.compile(r"(?:sha256:)?([0-9a-fA-F]{64})").fullmatch
_SHA2_256 = 0x12
MAX_REASON = 2000


class SubjectError(ValueError):
    """The text names nothing that can be taken down; the message says what would."""


@dataclass(frozen=True)
class Subject:
    kind: SubjectKind
    did: str  # '' for an audio object
    collection: str = ""  # '' for an account, 'blob' for an audio object
    rkey: str = ""  # the sha256 of an audio object

    def __str__(self) -> str:
        if self.kind == "account":
            return self.did
        if self.kind == "record":
            return f"at://{self.did}/{self.collection}/{self.rkey}"
        return f"sha256:{self.rkey}"

    @classmethod
    def account(cls, did: str) -> Subject:
        return cls("account", did)

    @classmethod
    def audio(cls, sha256: str) -> Subject:
        return cls("audio", "", AUDIO, sha256.lower())


def blob_sha256(cid: str) -> str | None:
    """The sha-256 digest a blob CID addresses (uploaded objects are stored under it), else None."""
    try:
        decoded = libipld.decode_cid(cid)
    except (ValueError, TypeError):
        return None
    digest = decoded.get("hash", {})
    if decoded.get("version") != 1 or digest.get("code") != _SHA2_256 or len(digest.get("digest", b"")) != 32:
        return None
    return bytes(digest["digest"]).hex()


def parse_subject(text: str) -> Subject:
    """A DID, an at:// URI of one of our records, or an audio object (sha256 hex, `sha256:<hex>`, blob CID)."""
    text = text.strip()
    if is_did(text):
        return Subject.account(text)
    if text.startswith("at://"):
        parts = text[len("at://") :].split("/")
        if len(parts) != 3 or not all(parts):
            raise SubjectError(f"{text[:200]!r} is not a record URI; use at://<did>/<collection>/<rkey>")
        did, collection, rkey = parts
        if not is_did(did):
            raise SubjectError(f"{text[:200]!r} names its repository by {did[:100]!r}, not a DID; use the DID")
        if not is_nsid(collection) or collection not in BY_NSID:
            raise SubjectError(f"{collection[:100]!r} is not a collection indexed here ({', '.join(sorted(BY_NSID))})")
        if not is_record_key(rkey):
            raise SubjectError(f"{rkey[:100]!r} is not a record key")
        return Subject("record", did, collection, rkey)
    if (sha := _SHA256(text)) is not None:
        return Subject.audio(sha.group(1))
    if (digest := blob_sha256(text)) is not None:
        return Subject.audio(digest)
    hint = " (a handle: look its DID up first)" if is_handle(text) else ""
    raise SubjectError(f"{text[:200]!r} is not a DID, an at:// record URI or an audio sha256/CID{hint}")


@dataclass(frozen=True)
class Takedown:
    subject: Subject
    applied: bool
    reason: str | None
    updated_at: dt.datetime


@dataclass(frozen=True)
class Change:
    subject: Subject
    applied: bool
    # False when the subject already was in the state asked for: nothing was appended.
    changed: bool


def _row(subject: Subject, applied: bool, reason: str | None, by: str) -> EventRow:
    record = json.dumps({"reason": reason, "by": by}, ensure_ascii=False)
    # Every change is a new event, even the same change made again later: its dedup key is random.
    dedup = hashlib.blake2b(uuid.uuid4().bytes + b"takedown", digest_size=16).digest()
    values: dict[str, Any] = {
        "ord": 0,
        "source": SOURCE,
        "did": subject.did,
        "kind": KIND,
        "operation": "create" if applied else "delete",
        "collection": subject.collection or None,
        "rkey": subject.rkey or None,
        "record": record,
        "event_time": dt.datetime.now(dt.UTC),
        "dedup": dedup,
    }
    return tuple(values.get(column) for column in EVENT_COLUMNS)


_GET = """
SELECT applied, reason, updated_at FROM takedowns WHERE did = %s AND collection = %s AND rkey = %s
"""


async def get(conn: Connection, subject: Subject) -> Takedown | None:
    cur = await conn.execute(_GET, (subject.did, subject.collection, subject.rkey))
    row = await cur.fetchone()
    if row is None:
        return None
    applied, reason, updated_at = row
    assert isinstance(updated_at, dt.datetime)
    return Takedown(subject, bool(applied), None if reason is None else str(reason), updated_at)


async def change(conn: Connection, subject: Subject, *, applied: bool, reason: str | None, by: str) -> Change:
    """Apply (or undo) a takedown of `subject`, in a transaction of its own on `conn` (autocommit)."""
    reason = None if reason is None else reason.replace("\x00", "")[:MAX_REASON]
    await create_temp_tables(conn, "DELETE ROWS")
    async with conn.transaction():
        await conn.execute(locks.LOCK_TAKEDOWNS)
        current = await get(conn, subject)
        if (current is not None and current.applied) == applied:
            return Change(subject, applied, changed=False)
        row = _row(subject, applied, reason, by)
        await apply(conn, Prepared(items=1, events=[row], rejections=[], cursors={}, by_reason=Counter()))
    return Change(subject, applied, changed=True)


_LIST = """
SELECT did, collection, rkey, applied, reason, updated_at FROM takedowns
WHERE applied OR NOT %(applied_only)s ORDER BY updated_at DESC, did, collection, rkey
"""


async def listed(conn: Connection, *, applied_only: bool = True) -> list[Takedown]:
    cur = await conn.execute(_LIST, {"applied_only": applied_only})
    found = []
    for did, collection, rkey, applied, reason, updated_at in await cur.fetchall():
        kind: SubjectKind = "account" if collection == "" else "audio" if collection == AUDIO else "record"
        assert isinstance(updated_at, dt.datetime)
        subject = Subject(kind, str(did), str(collection), str(rkey))
        found.append(Takedown(subject, bool(applied), None if reason is None else str(reason), updated_at))
    return found


# What the read side asks before it hands out something the projections do not already hide: an audio object,
# and the account a write comes from.
AUDIO_TAKEN_DOWN = (
    f"SELECT EXISTS (SELECT 1 FROM takedowns WHERE did = '' AND collection = '{AUDIO}' AND rkey = %s AND applied)"
)
ACCOUNT_TAKEN_DOWN = "SELECT EXISTS (SELECT 1 FROM actors WHERE did = %s AND taken_down)"


async def audio_taken_down(conn: Connection, sha256: str) -> bool:
    cur = await conn.execute(AUDIO_TAKEN_DOWN, (sha256.lower(),))
    row = await cur.fetchone()
    return bool(row and row[0])


async def account_taken_down(conn: Connection, did: str) -> bool:
    cur = await conn.execute(ACCOUNT_TAKEN_DOWN, (did,))
    row = await cur.fetchone()
    return bool(row and row[0])
