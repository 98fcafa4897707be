"""Hydration: everything a view needs, for the ids a skeleton found, as typed rows, in one batched statement per
kind of thing (tracks, actors, lists, comments), never one per item.

Each row type is a msgspec Struct, and the SELECT list that fills it is generated from its fields (`columns`):
the type is the one place that says which columns a view reads. Rows are built positionally (psycopg's
`args_row`, as cheap as plain tuples) from columns generated in field order, so there is nothing to keep in
step by hand. A field is the column of the same name of the row's table unless the row type's `SQL` maps it to
an expression; every column is named after its field, which tests/test_read_pipeline.py checks against the
database.

What readers may see is not decided here: rows come back as stored, and appview/rules.py filters them.

Skeletons (the per-method statements that walk an index) share two pieces from here: the keyset condition
that starts a page after a cursor (`keyset`), and `page`, which joins a skeleton to its tracks' hydration
in one statement."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple, TypeVar

import msgspec
from psycopg import AsyncConnection, AsyncCursor
from psycopg.rows import args_row

from appview.http import ActorRef, Position

Conn = AsyncConnection[Any]

# Timestamps as the lexicon `datetime` format, in UTC with millisecond precision.
_ISO = '\'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"\''


def iso(column: str) -> str:
    return f"to_char({column} AT TIME ZONE 'UTC', {_ISO})"


class Row(msgspec.Struct, frozen=True, gc=False):
    """A hydrated row: fields in SELECT order. `TABLE` qualifies plain columns; `SQL` gives the others."""

    TABLE: ClassVar[str] = ""
    SQL: ClassVar[Mapping[str, str]] = {}


R = TypeVar("R", bound=Row)


def columns(row: type[Row], **overrides: str) -> str:
    """The SELECT list that fills `row`, one column per field, in field order; `overrides` replace the row
    type's own expressions (e.g. a column that depends on the request)."""
    sql = {**row.SQL, **overrides}
    unknown = set(sql) - set(row.__struct_fields__)
    assert not unknown, f"{row.__name__} has no fields {sorted(unknown)}"
    return ", ".join(
        f"{sql[f]} AS {f}" if f in sql else f"{row.TABLE}.{f}" if row.TABLE else f for f in row.__struct_fields__
    )


async def send(conn: Conn, row: type[R], sql: str, params: Any) -> AsyncCursor[R]:
    """Execute a statement whose rows are `row`s. In a pipeline this only queues it: statements sent one
    after the other, before reading any of their rows, share one round trip."""
    cur: AsyncCursor[R] = conn.cursor(row_factory=args_row(row))
    await cur.execute(sql, params)
    return cur


async def fetch(conn: Conn, row: type[R], sql: str, params: Any) -> list[R]:
    return await (await send(conn, row, sql, params)).fetchall()


async def fetch_one(conn: Conn, row: type[R], sql: str, params: Any) -> R | None:
    return await (await send(conn, row, sql, params)).fetchone()


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(values))


# -- skeletons ----------------------------------------------------------------------------------------------


class Skeleton(NamedTuple):
    """A method's skeleton: the statement that walks its index, and the statement's parameters."""

    sql: str
    params: dict[str, Any]

    @property
    def whole_tracks(self) -> bool:
        return False


class TrackRows(Skeleton):
    """A skeleton that walks `tracks` itself and selects whole rows (`SELECT * FROM tracks ...`): its page is
    hydrated from those rows, without looking each track up again by URI (`page`)."""

    @property
    def whole_tracks(self) -> bool:
        return True


async def uris(conn: Conn, skeleton: Skeleton) -> list[str]:
    """What a skeleton of bare URIs finds, in its order."""
    cur = await conn.execute(skeleton.sql, skeleton.params)
    return [str(r[0]) for r in await cur.fetchall()]


class Entry(Row, frozen=True):
    """One entry of a skeleton: what it points at and its keyset position."""

    uri: str
    sort_at: dt.datetime
    sort_cid: str

    SQL: ClassVar[Mapping[str, str]] = {"sort_cid": "cid"}


def keyset(position: Position | None, sort: str = "sort_at", cid: str = "cid") -> tuple[str, dict[str, Any]]:
    """The keyset condition for a descending (sortAt, cid) walk, and its parameters. Two statement texts
    (first page, later pages) rather than one with `IS NULL OR`, so each keeps an index range scan."""
    if position is None:
        return "", {}
    return f" AND ({sort}, {cid}) < (%(after)s, %(after_cid)s)", {"after": position.sort_at, "after_cid": position.cid}


# -- identity -----------------------------------------------------------------------------------------------

# An actor's display name and avatar, as every actor view shows them: the fm.plyr profile's (`p`, `profiles`)
# when it has them, else their Bluesky profile's (`bp`, `bsky_profiles`: indexer/fold/collections/bsky_profile.py).
# A Bluesky avatar blob is served by Bluesky's CDN, by the URL Bluesky's own AppView gives for it.
BSKY_AVATAR_CDN = "https://cdn.bsky.app/img/avatar/plain/"


def avatar_sql(p: str = "p", bp: str = "bp") -> str:
    """The avatar, from the `profiles` row aliased `p` and the `bsky_profiles` row aliased `bp`."""
    return f"coalesce({p}.avatar, '{BSKY_AVATAR_CDN}' || {bp}.did || '/' || {bp}.avatar_cid || '@jpeg')"


def display_name_sql(p: str = "p", bp: str = "bp") -> str:
    """The display name, from the same two rows as `avatar_sql` (both kept by the fold: migration 0016)."""
    return f"coalesce({p}.display_name, {bp}.display_name)"


AVATAR = avatar_sql()
DISPLAY_NAME = display_name_sql()


def identity_joins(did: str) -> str:
    """The joins `AVATAR` and `DISPLAY_NAME` read, for the actor whose DID is the SQL expression `did`."""
    return f"LEFT JOIN profiles p ON p.did = {did} LEFT JOIN bsky_profiles bp ON bp.did = {did}"


# -- tracks -------------------------------------------------------------------------------------------------

# The viewer's newest like of the track (likes_did_subject_idx), as a column of the track's own row.
_VIEWER_LIKE = """
(SELECT l.uri FROM likes l WHERE l.did = %(viewer)s AND l.subject_uri = t.uri ORDER BY l.sort_at DESC LIMIT 1)
"""
_NO_VIEWER = "NULL::text"

# The record's featured artists by DID (the lexicon's canonical identifier; its handle snapshots are never read),
# each DID once, in record order, with what `actors` knows of it: the handle, avatar and display name (`AVATAR`,
# `DISPLAY_NAME`) of an active account, nothing for a DID unknown here or not active. Resolved inside the track's
# own statement, so every read that hydrates tracks shows them the same way at no extra round trip; a JSON array
# of `FeatureRow`s, or NULL. Most tracks feature nobody: the CASE runs the subquery (and its three joins) only for
# a record whose `features` is a non-empty array, which took a fifth of a 50-track feed page when it ran for all.
_FEATURES = """
CASE WHEN jsonb_typeof(e.record->'features') = 'array' AND jsonb_array_length(e.record->'features') > 0 THEN
(SELECT jsonb_agg(jsonb_build_object(
          'did', x.did,
          'handle', CASE WHEN fa.active AND NOT fa.taken_down THEN fa.handle END,
          'avatar', CASE WHEN fa.active AND NOT fa.taken_down THEN {avatar} END,
          'displayName', CASE WHEN fa.active AND NOT fa.taken_down THEN {display_name} END) ORDER BY x.ord)::text
 FROM (SELECT DISTINCT ON (j.f->>'did') j.f->>'did' AS did, j.ord
       FROM jsonb_array_elements(CASE WHEN jsonb_typeof(e.record->'features') = 'array'
                                      THEN e.record->'features' ELSE '[]'::jsonb END) WITH ORDINALITY AS j(f, ord)
       WHERE jsonb_typeof(j.f) = 'object' AND jsonb_typeof(j.f->'did') = 'string'
       ORDER BY j.f->>'did', j.ord) x
 LEFT JOIN actors fa ON fa.did = x.did
 LEFT JOIN profiles fp ON fp.did = x.did
 LEFT JOIN bsky_profiles fb ON fb.did = x.did) END
""".format(avatar=avatar_sql("fp", "fb"), display_name=display_name_sql("fp", "fb"))


class FeatureRow(msgspec.Struct, frozen=True, gc=False):
    """A featured artist of a track (`TrackRow.features`): the DID, and its handle, avatar and display name when
    its account is known here and active."""

    did: str
    handle: str | None = None
    avatar: str | None = None
    display_name: str | None = msgspec.field(default=None, name="displayName")


class TrackRow(Row, frozen=True):
    uri: str
    cid: str
    did: str
    rkey: str
    author_active: bool
    title: str
    artist: str
    album: str | None
    duration: int | None
    file_type: str
    audio_url: str | None
    audio_blob_cid: str | None
    audio_blob_mime: str | None
    image_url: str | None
    description: str | None
    like_count: int
    comment_count: int
    play_count: int
    created_at: str
    indexed_at: str
    # Parts of the stored record, as JSON text passed through to the response untouched.
    record: str
    # The featured artists, resolved (`_FEATURES`): a JSON array of `FeatureRow`s.
    features: str | None
    labels: str | None
    # The record's `supportGate` (JSON text), None for a track anyone may play.
    support_gate: str | None
    handle: str | None
    avatar: str | None
    display_name: str | None
    # The viewer's like of the track (NULL for an anonymous request).
    viewer_like: str | None

    TABLE: ClassVar[str] = "t"
    SQL: ClassVar[Mapping[str, str]] = {
        "created_at": iso("coalesce(t.created_at, t.indexed_at)"),
        "indexed_at": iso("t.indexed_at"),
        "record": "e.record::text",
        "features": _FEATURES,
        "labels": "(e.record->'labels')::text",
        "support_gate": "(e.record->'supportGate')::text",
        "handle": "a.handle",
        "avatar": AVATAR,
        "display_name": DISPLAY_NAME,
        "viewer_like": _NO_VIEWER,
    }


class PageRow(TrackRow, frozen=True):
    """A track of a page statement, with its position in the skeleton."""

    sort_at: dt.datetime
    sort_cid: str

    SQL: ClassVar[Mapping[str, str]] = {**TrackRow.SQL, "sort_at": "s.sort_at", "sort_cid": "s.cid"}


class RankedRow(PageRow, frozen=True):
    """A track of a ranked page statement (search), with its rank."""

    rank: int

    SQL: ClassVar[Mapping[str, str]] = {**PageRow.SQL, "rank": "s.rank"}


_TRACK_JOINS = f"""
JOIN events e ON e.id = t.event_id
LEFT JOIN actors a ON a.did = t.did
{identity_joins("t.did")}
"""


# Statements by whether the request has a viewer (and, for pages, whether the skeleton is ranked), built once.
_BY_URI = {
    viewer: f"SELECT {columns(TrackRow, viewer_like=like)} FROM tracks t {_TRACK_JOINS} WHERE t.uri = ANY(%(uris)s)"
    for viewer, like in ((False, _NO_VIEWER), (True, _VIEWER_LIKE))
}
_PAGE_COLUMNS = {
    (viewer, ranked): columns(RankedRow if ranked else PageRow, viewer_like=like)
    for viewer, like in ((False, _NO_VIEWER), (True, _VIEWER_LIKE))
    for ranked in (False, True)
}
_WHOLE_PAGE_COLUMNS = {
    viewer: columns(PageRow, viewer_like=like, sort_at="t.sort_at", sort_cid="t.cid")
    for viewer, like in ((False, _NO_VIEWER), (True, _VIEWER_LIKE))
}


def tracks_by_uri(*, viewer: bool) -> str:
    """Tracks by URI (`%(uris)s`), with the viewer's like if `viewer` (`%(viewer)s`)."""
    return _BY_URI[viewer]


def page(skeleton: str, *, viewer: bool, ranked: bool = False, whole_tracks: bool = False) -> str:
    """One statement for a whole page: the skeleton (a limited, ordered SELECT of `uri, sort_at, cid` and, if
    `ranked`, `rank`) joined to everything a view needs. A feed page costs one round trip instead of one per
    kind of thing; the skeleton keeps its own index plan because it is planned as a subquery with its LIMIT.
    Rows come in page order, as `PageRow`s (`RankedRow`s if `ranked`).

    With `whole_tracks`, the skeleton selects whole `tracks` rows, and the page is hydrated from them: the
    second lookup of each track by URI was about a quarter of a feed page's time (1M tracks, 50 per page)."""
    if whole_tracks:
        return f"""
SELECT {_WHOLE_PAGE_COLUMNS[viewer]}
FROM ({skeleton}) t
{_TRACK_JOINS}
ORDER BY t.sort_at DESC, t.cid DESC
"""
    order = "s.rank, s.sort_at DESC, s.cid DESC" if ranked else "s.sort_at DESC, s.cid DESC"
    return f"""
SELECT {_PAGE_COLUMNS[viewer, ranked]}
FROM ({skeleton}) s
JOIN tracks t ON t.uri = s.uri
{_TRACK_JOINS}
ORDER BY {order}
"""


async def page_rows(conn: Conn, skeleton: Skeleton, viewer: str | None) -> list[PageRow]:
    """The page a skeleton finds, hydrated in the same statement (`page`)."""
    sql = page(skeleton.sql, viewer=viewer is not None, whole_tracks=skeleton.whole_tracks)
    return await fetch(conn, PageRow, sql, {**skeleton.params, "viewer": viewer})


async def ranked_rows(conn: Conn, skeleton: Skeleton, viewer: str | None) -> list[RankedRow]:
    """The page a ranked skeleton finds, hydrated in the same statement (`page`)."""
    sql = page(skeleton.sql, viewer=viewer is not None, ranked=True)
    return await fetch(conn, RankedRow, sql, {**skeleton.params, "viewer": viewer})


async def actor_page(
    conn: Conn, actor: ActorRef, skeleton: Skeleton, viewer: str | None
) -> tuple[NamedActorRow | None, list[PageRow]]:
    """The actor a request names, and the page of theirs a skeleton finds (the skeleton reads the DID as
    `%(did)s`). Named by DID, the page does not depend on the lookup's answer (only on whether it is shown),
    so both statements go out in one round trip. Named by handle, the page follows the lookup, and is not
    read at all for an actor no page is shown of (rules.checked_actor says why)."""
    sql = page(skeleton.sql, viewer=viewer is not None, whole_tracks=skeleton.whole_tracks)
    if actor.by == "did":
        async with conn.pipeline():
            looked = await send(conn, NamedActorRow, ACTOR_BY["did"], (actor.value,))
            rows = await send(conn, PageRow, sql, {**skeleton.params, "did": actor.value, "viewer": viewer})
            return await looked.fetchone(), await rows.fetchall()
    found = await named_actor(conn, actor)
    if found is None or not found.active:
        return found, []
    return found, await fetch(conn, PageRow, sql, {**skeleton.params, "did": found.did, "viewer": viewer})


async def track_page(conn: Conn, uri: str, row: type[R], skeleton: Skeleton) -> list[R] | None:
    """The page of a track's likes or comments that `skeleton` finds, or None when the track is not shown (it
    does not exist, or its author is not active). The check and the page go out in one round trip: the page does
    not depend on the check's answer, only whether it is shown does."""
    async with conn.pipeline():
        shown = await conn.execute("SELECT 1 FROM tracks WHERE uri = %s AND author_active", (uri,))
        rows = await send(conn, row, skeleton.sql, skeleton.params)
        found, page = await shown.fetchone(), await rows.fetchall()
    return page if found is not None else None


async def tracks(conn: Conn, uris: Sequence[str], viewer: str | None) -> dict[str, TrackRow]:
    """Tracks by URI, each with the viewer's like."""
    if not uris:
        return {}
    sql = tracks_by_uri(viewer=viewer is not None)
    return {r.uri: r for r in await fetch(conn, TrackRow, sql, {"uris": _unique(uris), "viewer": viewer})}


# -- actors -------------------------------------------------------------------------------------------------


class ActorRow(Row, frozen=True):
    did: str
    handle: str | None
    active: bool
    avatar: str | None
    display_name: str | None

    TABLE: ClassVar[str] = "a"
    # An account the operator took down is not active, whatever its host says.
    SQL: ClassVar[Mapping[str, str]] = {
        "avatar": AVATAR,
        "display_name": DISPLAY_NAME,
        "active": "a.active AND NOT a.taken_down",
    }


class NamedActorRow(ActorRow, frozen=True):
    """An actor a request names, with why they are not active (if they are not)."""

    status: str

    SQL: ClassVar[Mapping[str, str]] = {
        **ActorRow.SQL,
        "status": "CASE WHEN a.taken_down THEN 'takendown' ELSE a.status END",
    }


_ACTOR_FROM = f"FROM actors a {identity_joins('a.did')}"
_ACTORS = f"SELECT {columns(ActorRow)} {_ACTOR_FROM} WHERE a.did = ANY(%s)"
ACTOR_BY = {
    "did": f"SELECT {columns(NamedActorRow)} {_ACTOR_FROM} WHERE a.did = %s",
    "handle": f"SELECT {columns(NamedActorRow)} {_ACTOR_FROM} WHERE a.handle = %s",
}


async def actors(conn: Conn, dids: Iterable[str]) -> dict[str, ActorRow]:
    wanted = _unique(dids)
    if not wanted:
        return {}
    return {r.did: r for r in await fetch(conn, ActorRow, _ACTORS, (wanted,))}


async def named_actor(conn: Conn, actor: ActorRef) -> NamedActorRow | None:
    return await fetch_one(conn, NamedActorRow, ACTOR_BY[actor.by], (actor.value,))


# -- lists --------------------------------------------------------------------------------------------------


class ListRow(Row, frozen=True):
    uri: str
    cid: str
    did: str
    author_active: bool
    name: str | None
    list_type: str | None
    item_count: int
    created_at: str
    indexed_at: str
    record: str
    handle: str | None
    avatar: str | None
    display_name: str | None

    TABLE: ClassVar[str] = "l"
    SQL: ClassVar[Mapping[str, str]] = {
        "created_at": iso("coalesce(l.created_at, l.indexed_at)"),
        "indexed_at": iso("l.indexed_at"),
        "record": "e.record::text",
        "handle": "a.handle",
        "avatar": AVATAR,
        "display_name": DISPLAY_NAME,
    }


_LISTS = f"""
SELECT {columns(ListRow)}
FROM lists l
JOIN events e ON e.id = l.event_id
LEFT JOIN actors a ON a.did = l.did
{identity_joins("l.did")}
WHERE l.uri = ANY(%s)
"""


async def lists(conn: Conn, uris: Sequence[str]) -> dict[str, ListRow]:
    if not uris:
        return {}
    return {r.uri: r for r in await fetch(conn, ListRow, _LISTS, (_unique(uris),))}


# -- albums -------------------------------------------------------------------------------------------------


class AlbumRow(Row, frozen=True):
    """An album of an artist, aggregated over its shown tracks (appview/xrpc/get_actor_albums.py says how
    tracks and album lists merge). Its keyset position is its newest track and a digest of its identity."""

    did: str
    list_uri: str | None
    title: str | None
    artist: str
    track_count: int
    first_track_at: str
    last_track_at: str
    image_url: str | None
    handle: str | None
    avatar: str | None
    display_name: str | None
    # Whether the artist's tracks naming the album belong to it (a name-only album, or the list a name joins).
    takes_name: bool
    sort_at: dt.datetime
    sort_cid: str

    TABLE: ClassVar[str] = "al"
    SQL: ClassVar[Mapping[str, str]] = {
        "takes_name": "al.list_uri IS NOT DISTINCT FROM (SELECT n.uri FROM named n WHERE n.name = al.title)",
        "first_track_at": iso("al.first_at"),
        "last_track_at": iso("al.last_at"),
        "handle": "a.handle",
        "avatar": AVATAR,
        "display_name": DISPLAY_NAME,
        "sort_at": "al.last_at",
        "sort_cid": "al.key",
    }


# -- comments -----------------------------------------------------------------------------------------------


class CommentRow(Row, frozen=True):
    uri: str
    cid: str
    did: str
    text: str
    timestamp_ms: int | None
    created_at: str
    indexed_at: str
    record: str

    TABLE: ClassVar[str] = "c"
    SQL: ClassVar[Mapping[str, str]] = {
        "created_at": iso("coalesce(c.created_at, c.indexed_at)"),
        "indexed_at": iso("c.indexed_at"),
        "record": "e.record::text",
    }


# Comment rows: the aliases CommentRow's columns read (`c`, `e`); a statement adds its WHERE.
COMMENT_ROWS = f"SELECT {columns(CommentRow)} FROM comments c JOIN events e ON e.id = c.event_id"
_COMMENTS = f"{COMMENT_ROWS} WHERE c.uri = ANY(%s)"


async def comments(conn: Conn, uris: Sequence[str]) -> dict[str, CommentRow]:
    if not uris:
        return {}
    return {r.uri: r for r in await fetch(conn, CommentRow, _COMMENTS, (list(uris),))}


# -- likes --------------------------------------------------------------------------------------------------


class LikeRow(Row, frozen=True):
    """A like of a track, from its skeleton (the likes table has all a like view shows but the liker)."""

    did: str
    created_at: str
    indexed_at: str
    sort_at: dt.datetime
    sort_cid: str

    SQL: ClassVar[Mapping[str, str]] = {
        "created_at": iso("coalesce(created_at, indexed_at)"),
        "indexed_at": iso("indexed_at"),
        "sort_cid": "cid",
    }


# -- profiles and totals ------------------------------------------------------------------------------------


class ProfileRow(Row, frozen=True):
    """An actor's profile record (if any) and counts that match what the listing methods show: likeCount
    counts the likes getActorLikes would list."""

    bio: str | None
    avatar: str | None
    display_name: str | None
    indexed_at: str | None
    track_count: int
    like_count: int
    list_count: int

    SQL: ClassVar[Mapping[str, str]] = {
        "bio": "p.bio",
        "avatar": AVATAR,
        "display_name": DISPLAY_NAME,
        "indexed_at": iso("p.indexed_at"),
        "track_count": "(SELECT count(*) FROM tracks t WHERE t.did = %(did)s AND t.author_active)",
        "like_count": """(SELECT count(*) FROM likes l WHERE l.did = %(did)s AND l.author_active
          AND EXISTS (SELECT 1 FROM tracks t WHERE t.uri = l.subject_uri AND t.author_active))""",
        "list_count": "(SELECT count(*) FROM lists s WHERE s.did = %(did)s AND s.author_active)",
    }


_PROFILE = f"SELECT {columns(ProfileRow)} FROM (SELECT 1) one {identity_joins('%(did)s')}"


async def profile(conn: Conn, did: str) -> ProfileRow:
    found = await fetch_one(conn, ProfileRow, _PROFILE, {"did": did})
    assert found is not None  # one row, with or without a profile record
    return found


class StatsRow(Row, frozen=True):
    """Network-wide totals of what readers can see. `likes` and `plays` sum the per-track counts: exactly the
    likes and plays by active accounts of tracks that exist and are shown. `unlinked_plays`: plays by active
    accounts whose origin names none of our tracks (indexer/fold/collections/play.py), counted, never guessed."""

    tracks: int
    artists: int
    likes: int
    lists: int
    plays: int
    unlinked_plays: int

    SQL: ClassVar[Mapping[str, str]] = {
        "tracks": "count(*)",
        "artists": "count(DISTINCT did)",
        "likes": "coalesce(sum(like_count), 0)",
        "lists": "(SELECT count(*) FROM lists WHERE author_active)",
        "plays": "coalesce(sum(play_count), 0)",
        "unlinked_plays": "(SELECT count(*) FROM plays WHERE track_uri IS NULL AND author_active)",
    }


_STATS = f"SELECT {columns(StatsRow)} FROM tracks WHERE author_active"


async def stats(conn: Conn) -> StatsRow:
    found = await fetch_one(conn, StatsRow, _STATS, None)
    assert found is not None  # an aggregate: always one row
    return found
