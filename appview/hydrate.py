"""Hydration: turn the ids a skeleton query found into everything a view needs, in one batched query per
kind of thing (tracks, actors, the viewer's likes), never one query per item.

Rules (what a reader must not see) are applied here too, as `visible_*`: a projection row exists only for a
live, valid record of a non-deleted account, so what is left to hide is the content of accounts that are not
active (deactivated, taken down, suspended)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import msgspec
from psycopg import AsyncConnection

from appview.audio.locator import is_trusted
from appview.views import INVALID_HANDLE, ActorView, AudioView, TrackView, TrackViewerState

Conn = AsyncConnection[Any]

# Timestamps as the lexicon `datetime` format, in UTC with millisecond precision.
_ISO = '\'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"\''


def iso(column: str) -> str:
    return f"to_char({column} AT TIME ZONE 'UTC', {_ISO})"


TRACK_COLUMNS = f"""
t.uri, t.cid, t.did, t.rkey, t.author_active, t.title, t.artist, t.album, t.duration, t.file_type,
t.audio_url, t.audio_blob_cid, t.audio_blob_mime, t.image_url, t.description, t.like_count,
t.comment_count, {iso("coalesce(t.created_at, t.indexed_at)")}, {iso("t.indexed_at")}, e.record::text,
(e.record->'features')::text, (e.record->'labels')::text, a.handle, p.avatar
"""
_TRACK_WIDTH = 24
TRACK_JOINS = """
JOIN events e ON e.id = t.event_id
LEFT JOIN actors a ON a.did = t.did
LEFT JOIN profiles p ON p.did = t.did
"""

_TRACKS = f"SELECT {TRACK_COLUMNS} FROM tracks t {TRACK_JOINS} WHERE t.uri = ANY(%s)"

# The viewer's newest like of the track (likes_did_subject_idx), as a column of the page itself.
_VIEWER_LIKE = """
(SELECT l.uri FROM likes l WHERE l.did = %(viewer)s AND l.subject_uri = t.uri ORDER BY l.sort_at DESC LIMIT 1)
"""
# Column positions in a `page` row after the track's own columns.
PAGE_LIKE = _TRACK_WIDTH
PAGE_SORT_AT = _TRACK_WIDTH + 1
PAGE_CID = _TRACK_WIDTH + 2
PAGE_RANK = _TRACK_WIDTH + 3


def page(skeleton: str, *, viewer: bool, ranked: bool = False) -> str:
    """One statement for a whole page: the skeleton (a limited, ordered SELECT of `uri, sort_at, cid` and, if
    `ranked`, `rank`) joined to everything a view needs. A feed page costs one round trip instead of one per
    kind of thing; the skeleton keeps its own index plan because it is planned as a subquery with its LIMIT.
    Rows come in page order and carry the viewer's like, sortAt, cid (and rank) after the track columns."""
    like = _VIEWER_LIKE if viewer else "NULL::text"
    rank = ", s.rank" if ranked else ""
    order = "s.rank, s.sort_at DESC, s.cid DESC" if ranked else "s.sort_at DESC, s.cid DESC"
    return f"""
SELECT {TRACK_COLUMNS}, {like}, s.sort_at, s.cid{rank}
FROM ({skeleton}) s
JOIN tracks t ON t.uri = s.uri
{TRACK_JOINS}
ORDER BY {order}
"""


_ACTORS = """
SELECT a.did, a.handle, a.active, p.avatar FROM actors a LEFT JOIN profiles p ON p.did = a.did
WHERE a.did = ANY(%s)
"""

_VIEWER_LIKES = """
SELECT DISTINCT ON (subject_uri) subject_uri, uri FROM likes
WHERE did = %s AND subject_uri = ANY(%s)
ORDER BY subject_uri, sort_at DESC
"""


class TrackRow:
    """One hydrated track, straight from `_TRACKS`."""

    __slots__ = ("row",)

    def __init__(self, row: tuple[Any, ...]) -> None:
        self.row = row

    @property
    def uri(self) -> str:
        return str(self.row[0])

    @property
    def did(self) -> str:
        return str(self.row[2])

    @property
    def author_active(self) -> bool:
        return bool(self.row[4])


class ActorRow:
    __slots__ = ("active", "avatar", "did", "handle")

    def __init__(self, did: str, handle: str | None, active: bool, avatar: str | None) -> None:
        self.did = did
        self.handle = handle
        self.active = active
        self.avatar = avatar

    def view(self) -> ActorView:
        return ActorView(did=self.did, handle=self.handle or INVALID_HANDLE, avatar=self.avatar)


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


async def tracks(conn: Conn, uris: Sequence[str]) -> dict[str, TrackRow]:
    if not uris:
        return {}
    cur = await conn.execute(_TRACKS, (_unique(uris),))
    return {str(r[0]): TrackRow(r) for r in await cur.fetchall()}


async def actors(conn: Conn, dids: Iterable[str]) -> dict[str, ActorRow]:
    wanted = _unique(dids)
    if not wanted:
        return {}
    cur = await conn.execute(_ACTORS, (wanted,))
    return {str(r[0]): ActorRow(str(r[0]), r[1], bool(r[2]), r[3]) for r in await cur.fetchall()}


async def viewer_likes(conn: Conn, viewer: str | None, subjects: Iterable[str]) -> dict[str, str] | None:
    """subject uri -> the viewer's like uri; None for an anonymous request (no `viewer` block at all)."""
    if viewer is None:
        return None
    wanted = _unique(subjects)
    if not wanted:
        return {}
    cur = await conn.execute(_VIEWER_LIKES, (viewer, wanted))
    return {str(s): str(u) for s, u in await cur.fetchall()}


def visible_track(row: TrackRow | None) -> bool:
    return row is not None and row.author_active


def visible_actor(row: ActorRow | None) -> bool:
    return row is not None and row.active


def _raw(text: str | None) -> Any:
    return None if text is None else msgspec.Raw(text.encode())


def track_view(row: TrackRow, *, audio_base: str, trusted: tuple[str, ...], likes: dict[str, str] | None) -> TrackView:
    (
        uri,
        cid,
        did,
        rkey,
        _active,
        title,
        artist,
        album,
        duration,
        file_type,
        audio_url,
        blob_cid,
        blob_mime,
        image_url,
        description,
        like_count,
        comment_count,
        created_at,
        indexed_at,
        record,
        features,
        labels,
        handle,
        avatar,
    ) = row.row[:_TRACK_WIDTH]
    # The URL a player uses is always ours: /audio picks the playable source at play time.
    source: Literal["url", "blob"] = "url"
    if blob_cid and not (audio_url and is_trusted(audio_url, trusted)):
        source = "blob"
    return TrackView(
        uri=uri,
        cid=cid,
        author=ActorView(did=did, handle=handle or INVALID_HANDLE, avatar=avatar),
        title=title,
        artist=artist,
        album=album,
        duration=duration,
        file_type=file_type,
        features=_raw(features) if features and features.startswith("[") else None,
        image_url=image_url,
        description=description,
        audio=AudioView(url=f"{audio_base}/{did}/{rkey}", mime_type=blob_mime, source=source),
        labels=_raw(labels) if labels and labels.startswith("{") else None,
        like_count=like_count,
        comment_count=comment_count,
        created_at=created_at,
        indexed_at=indexed_at,
        record=_raw(record),
        viewer=None if likes is None else TrackViewerState(like=likes.get(uri)),
    )


async def present_tracks(
    conn: Conn,
    uris: Sequence[str],
    *,
    viewer: str | None,
    audio_base: str,
    trusted: tuple[str, ...],
) -> list[TrackView]:
    """Hydrate, apply the rules and present `uris` in the given order, dropping what is missing or hidden."""
    found = await tracks(conn, uris)
    shown = [found[u] for u in uris if visible_track(found.get(u))]
    likes = await viewer_likes(conn, viewer, (r.uri for r in shown))
    return [track_view(r, audio_base=audio_base, trusted=trusted, likes=likes) for r in shown]


def page_views(
    rows: Sequence[tuple[Any, ...]], *, viewer: str | None, audio_base: str, trusted: tuple[str, ...]
) -> list[TrackView]:
    """Present the rows of a `page` statement in their order, applying the rules."""
    shown = [TrackRow(r) for r in rows]
    shown = [r for r in shown if visible_track(r)]
    likes = None if viewer is None else {str(r.row[0]): str(r.row[PAGE_LIKE]) for r in shown if r.row[PAGE_LIKE]}
    return [track_view(r, audio_base=audio_base, trusted=trusted, likes=likes) for r in shown]
