"""fm.plyr.getAlbum: one album (as getActorAlbums merges them) with its tracks in album order.

The album is named either by `uri`, the at-uri of its `fm.plyr.list` record (listType album), or by `actor`
and `name`: the artist's album of that name, which is their newest album list of that name if they have one,
else the tracks naming it. Exactly one of the two forms; anything else is an InvalidRequest.

Album order: a list-backed album's items in list order, then the artist's tracks naming the album that the
list does not hold, oldest first; a name-only album's tracks oldest first (their sort time: createdAt, never
later than arrival). Items that are not shown tracks are left out. Pages are a keyset over (part, position or
time, cid): `<part>__<position or epoch microseconds>__<cid>`, ascending. A redacting label on the album list
or its author removes the album; the tracks are a listing, so `!hide` removes a track too (appview/rules.py)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from appview import hydrate, labels, presenters, rules
from appview.context import AppContext
from appview.http import (
    DEFAULT_LIMIT,
    Cursor,
    Limit,
    Position,
    XrpcError,
    actor_ref,
    not_found,
    ok,
    pack_ranked,
    split_at_uri,
    unpack_ranked,
    viewer_of,
)
from appview.hydrate import AlbumRow, Row, Skeleton
from appview.views import AlbumOutput
from appview.xrpc import get_actor_albums
from indexer.fold.collections.list import NSID as LIST

NSID = "fm.plyr.getAlbum"

# Part 0: the list's items (list_items' primary key), their position as the time of part 0; part 1: the
# artist's tracks naming the album (tracks_did_album_idx) that the list does not hold.
SKELETON = """
SELECT uri, rank, sort_at, cid AS sort_cid FROM (
  SELECT t.uri, 0 AS rank, 'epoch'::timestamptz + i.position * interval '1 microsecond' AS sort_at, t.cid
  FROM list_items i JOIN tracks t ON t.uri = i.subject_uri AND t.author_active
  WHERE i.did = %(did)s AND i.rkey = %(rkey)s
  UNION ALL
  SELECT t.uri, 1, t.sort_at, t.cid FROM tracks t
  WHERE t.did = %(did)s AND t.album = %(name)s AND t.album IS NOT NULL AND t.author_active
    AND NOT EXISTS (SELECT 1 FROM list_items i WHERE i.did = %(did)s AND i.rkey = %(rkey)s AND i.subject_uri = t.uri)
) s
WHERE true{after}
ORDER BY rank, sort_at, cid
LIMIT %(limit)s
"""
KEYSET = " AND (rank, sort_at, cid) > (%(after_rank)s, %(after)s, %(after_cid)s)"

Uri = Annotated[
    str | None,
    QueryParameter(min_length=1, max_length=8192, description="The album's fm.plyr.list record (an at:// URI)."),
]
OptionalActor = Annotated[
    str | None,
    QueryParameter(min_length=1, max_length=2048, description="The artist's DID or handle (with name)."),
]
Name = Annotated[str | None, QueryParameter(min_length=1, max_length=256, description="The album's name (with actor).")]


class AlbumEntry(Row, frozen=True):
    uri: str
    rank: int
    sort_at: dt.datetime
    sort_cid: str


def skeleton(album: AlbumRow, position: tuple[int, Position] | None, limit: int) -> Skeleton:
    """The album's tracks from `position` on. Name-matched tracks belong to the album only when it is the one
    the name joins (`takes_name`)."""
    rkey = album.list_uri.rsplit("/", 1)[1] if album.list_uri else None
    name = album.title if album.takes_name else None
    params: dict[str, Any] = {"did": album.did, "rkey": rkey, "name": name, "limit": limit}
    if position is not None:
        rank, at = position
        params.update(after_rank=rank, after=at.sort_at, after_cid=at.cid)
    return Skeleton(SKELETON.format(after=KEYSET if position else ""), params)


async def find(conn: hydrate.Conn, uri: str | None, actor: str | None, name: str | None) -> AlbumRow | None:
    if uri is not None:
        if actor is not None or name is not None:
            raise XrpcError("InvalidRequest", "name an album either by uri, or by actor and name")
        did, _ = split_at_uri(uri, LIST)
        return await hydrate.fetch_one(conn, AlbumRow, *get_actor_albums.one(did, list_uri=uri))
    if actor is None or name is None:
        raise XrpcError("InvalidRequest", "name an album by uri, or by actor and name")
    named = actor_ref(actor)
    author = rules.checked_actor(await hydrate.named_actor(conn, named), named)
    return await hydrate.fetch_one(conn, AlbumRow, *get_actor_albums.one(author.did, name=name))


@get(f"/xrpc/{NSID}", responses=ok(AlbumOutput), operation_id=NSID)
async def handler(
    request: Request[Any, Any, Any],
    ctx: NamedDependency[AppContext],
    uri: Uri = None,
    actor: OptionalActor = None,
    name: Name = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response[bytes]:
    viewer = await viewer_of(ctx, request, NSID)
    position = unpack_ranked(cursor)
    if position is not None and position[0] > 1:
        raise XrpcError("InvalidRequest", "malformed cursor")
    labelers = labels.of_request(request, ctx.settings.labelers)
    async with ctx.pool.connection() as conn:
        album = await find(conn, uri, actor, name)
        if album is None:
            raise not_found("album", uri or name or "")
        entries = await hydrate.fetch(conn, AlbumEntry, *skeleton(album, position, limit))
        found = await hydrate.tracks(conn, [e.uri for e in entries], viewer)
        rows = rules.in_order((e.uri for e in entries), found)
        applied = await labels.fetch(
            conn, [r.uri for r in rows] + [r.did for r in rows] + [album.list_uri or album.did, album.did], labelers
        )
    if rules.label_hidden(album.list_uri or album.did, album.did, applied, labelers.redact, listed=False):
        raise not_found("album", uri or name or "")
    tracks = presenters.tracks(rules.not_label_hidden(rows, applied, labelers.redact, listed=True), ctx, viewer)
    labels.attach(tracks, applied)
    view = presenters.album(album)
    view.labels = list(applied.get(album.list_uri or "", ())) or None
    view.author.labels = list(applied.get(album.did, ())) or None
    last = entries[-1] if len(entries) == limit else None
    body = AlbumOutput(
        album=view, tracks=tracks, cursor=pack_ranked(last.rank, last.sort_at, last.sort_cid) if last else None
    )
    return labels.respond_labeled(request, body, viewer=viewer, max_age=ctx.settings.cache_max_age, labelers=labelers)
