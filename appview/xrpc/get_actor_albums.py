"""fm.plyr.getActorAlbums: an artist's albums, the one with the newest track first.

An album is one of:
- list-backed: an `fm.plyr.list` record of listType album by the artist. Its tracks are its items that are
  shown tracks, and the artist's tracks whose `album` is the list's name, if the list is the artist's newest
  album list of that name (the list a name joins);
- name-only: an `album` name on the artist's tracks that no album list of theirs carries.

So each (artist, album name) is one album, unless the artist published several album lists of one name, each
then its own album. An album with no shown track is not listed. `trackCount` counts distinct shown tracks,
`firstTrackAt` / `lastTrackAt` are their oldest and newest sort times, `imageUrl` the artwork of its oldest
track that has some. Labels that hide the album list, or its author, hide the album (appview/rules.py).

Aggregates cannot be indexed, so a page aggregates all the artist's album tracks (tracks_did_album_idx and
lists_did_album_idx, migration 0011), then pages over them with a keyset on (lastTrackAt, a digest of the
album's identity); an artist's albums are few."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.di import NamedDependency

from appview import hydrate, labels, presenters, rules
from appview.context import AppContext
from appview.http import DEFAULT_LIMIT, Actor, Cursor, Limit, Position, actor_ref, next_cursor, ok, unpack, viewer_of
from appview.hydrate import AlbumRow, Skeleton
from appview.views import AlbumsOutput

NSID = "fm.plyr.getActorAlbums"

# `members` is one row per (album, track); UNION drops a track listed in its album list and named by it too.
ALBUMS = f"""
WITH album_lists AS (
  SELECT uri, did, rkey, name, sort_at, cid FROM lists
  WHERE did = %(did)s AND list_type = 'album' AND author_active
),
named AS (
  SELECT DISTINCT ON (name) name, uri FROM album_lists WHERE name IS NOT NULL ORDER BY name, sort_at DESC, cid DESC
),
members AS (
  SELECT l.uri AS list_uri, l.name AS title, t.did, t.uri, t.sort_at, t.cid, t.image_url, t.artist
  FROM album_lists l
  JOIN list_items i ON i.did = l.did AND i.rkey = l.rkey
  JOIN tracks t ON t.uri = i.subject_uri AND t.author_active
  UNION
  SELECT n.uri, t.album, t.did, t.uri, t.sort_at, t.cid, t.image_url, t.artist
  FROM tracks t LEFT JOIN named n ON n.name = t.album
  WHERE t.did = %(did)s AND t.album IS NOT NULL AND t.author_active AND t.album <> ''
),
albums AS (
  SELECT %(did)s::text AS did, list_uri, title,
    count(*)::int AS track_count, min(sort_at) AS first_at, max(sort_at) AS last_at,
    (array_agg(image_url ORDER BY sort_at, cid) FILTER (WHERE image_url IS NOT NULL))[1] AS image_url,
    (array_agg(artist ORDER BY did = %(did)s DESC, sort_at DESC, cid DESC))[1] AS artist,
    md5(coalesce('list:' || list_uri, 'name:' || title)) AS key
  FROM members GROUP BY list_uri, title
)
SELECT {hydrate.columns(AlbumRow)}
FROM albums al
LEFT JOIN actors a ON a.did = al.did
{hydrate.identity_joins("al.did")}
WHERE true{{where}}
ORDER BY al.last_at DESC, al.key DESC
LIMIT %(limit)s
"""
KEYSET = " AND (al.last_at, al.key) < (%(after)s, %(after_cid)s)"
# One album: by its list, or by name (the list the name joins, else the name-only album).
BY_LIST = " AND al.list_uri = %(list_uri)s"
BY_NAME = " AND al.title = %(name)s AND al.list_uri IS NOT DISTINCT FROM (SELECT uri FROM named WHERE name = %(name)s)"


def skeleton(did: str, position: Position | None, limit: int) -> Skeleton:
    params: dict[str, Any] = {"did": did, "limit": limit}
    if position is not None:
        params.update(after=position.sort_at, after_cid=position.cid)
    return Skeleton(ALBUMS.format(where=KEYSET if position else ""), params)


def one(did: str, *, list_uri: str | None = None, name: str | None = None) -> Skeleton:
    """The statement that finds one album of `did`: by its list's URI, or by name."""
    where = BY_LIST if list_uri is not None else BY_NAME
    return Skeleton(ALBUMS.format(where=where), {"did": did, "list_uri": list_uri, "name": name, "limit": 1})


def shown(rows: list[AlbumRow], applied: Any, redact: frozenset[str]) -> list[AlbumRow]:
    """The albums no label on their list or their author keeps out of a listing."""
    return [r for r in rows if not rules.label_hidden(r.list_uri or r.did, r.did, applied, redact, listed=True)]


async def album_labels(conn: hydrate.Conn, rows: list[AlbumRow], labelers: labels.Labelers) -> Any:
    return await labels.fetch(conn, [r.list_uri for r in rows if r.list_uri] + [r.did for r in rows], labelers)


@get(f"/xrpc/{NSID}", responses=ok(AlbumsOutput), operation_id=NSID)
async def handler(
    request: Request[Any, Any, Any],
    ctx: NamedDependency[AppContext],
    actor: Actor,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response[bytes]:
    viewer = await viewer_of(ctx, request, NSID)
    position = unpack(cursor)
    named = actor_ref(actor)
    labelers = labels.of_request(request, ctx.settings.labelers)
    async with ctx.pool.connection() as conn:
        author = rules.checked_actor(await hydrate.named_actor(conn, named), named)
        rows = await hydrate.fetch(conn, AlbumRow, *skeleton(author.did, position, limit))
        applied = await album_labels(conn, rows, labelers)
    albums = [presenters.album(r) for r in shown(rows, applied, labelers.redact)]
    for view in albums:
        view.labels = list(applied.get(view.list_uri or "", ())) or None
        view.author.labels = list(applied.get(view.author.did, ())) or None
    body = AlbumsOutput(albums=albums, cursor=next_cursor(rows, limit))
    return labels.respond_labeled(request, body, viewer=viewer, max_age=ctx.settings.cache_max_age, labelers=labelers)
