"""fm.plyr.getComments: a track's timed comments, in playback order."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.di import NamedDependency

from appview import hydrate, labels, presenters, rules
from appview.context import AppContext
from appview.http import (
    DEFAULT_LIMIT,
    AtUri,
    Cursor,
    Limit,
    not_found,
    ok,
    pack_int,
    split_at_uri,
    unpack_int,
    viewer_of,
)
from appview.hydrate import CommentRow, Skeleton
from appview.views import CommentsOutput
from indexer.fold.collections.track import NSID as TRACK

NSID = "fm.plyr.getComments"

# comments_subject_idx (subject_uri, timestamp_ms). A timestampMs beyond bigint is stored as NULL; such a
# comment has no place on the playback timeline and is not listed. The comments table has all a comment view shows
# but the record (the log event, by primary key) and the author, so the skeleton's rows are the comments
# themselves.
SKELETON = f"""
{hydrate.COMMENT_ROWS}
WHERE c.subject_uri = %(uri)s AND c.author_active AND c.timestamp_ms IS NOT NULL{{after}}
ORDER BY c.timestamp_ms, c.cid
LIMIT %(limit)s
"""
AFTER = " AND (c.timestamp_ms, c.cid) > (%(after)s, %(after_cid)s)"


def skeleton(uri: str, position: tuple[int, str] | None, limit: int) -> Skeleton:
    params: dict[str, Any] = {"uri": uri, "limit": limit}
    if position is None:
        return Skeleton(SKELETON.format(after=""), params)
    return Skeleton(SKELETON.format(after=AFTER), {**params, "after": position[0], "after_cid": position[1]})


@get(f"/xrpc/{NSID}", responses=ok(CommentsOutput), operation_id=NSID)
async def handler(
    request: Request[Any, Any, Any],
    ctx: NamedDependency[AppContext],
    uri: AtUri,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response[bytes]:
    viewer = await viewer_of(ctx, request, NSID)
    track_did, _ = split_at_uri(uri, TRACK)
    walk = skeleton(uri, unpack_int(cursor), limit)
    labelers = labels.of_request(request, ctx.settings.labelers)
    async with ctx.pool.connection() as conn:
        found = await hydrate.track_page(conn, uri, CommentRow, walk)
        if found is None:
            raise not_found("track", uri)
        authors = await hydrate.actors(conn, (c.did for c in found))
        applied = await labels.fetch(conn, [uri, track_did, *(c.uri for c in found), *(c.did for c in found)], labelers)
    if rules.label_hidden(uri, track_did, applied, labelers.redact, listed=False):
        raise not_found("track", uri)
    kept = rules.not_label_hidden(found, applied, labelers.redact, listed=True)
    shown = rules.with_active_authors(kept, authors)
    last = found[-1] if len(found) == limit else None
    comments = [presenters.comment(row, author) for row, author in shown]
    labels.attach(comments, applied)
    # The skeleton lists timed comments only: a listed comment's timestamp is never None.
    cursor = pack_int(last.timestamp_ms, last.cid) if last and last.timestamp_ms is not None else None
    body = CommentsOutput(comments=comments, cursor=cursor)
    return labels.respond_labeled(request, body, viewer=viewer, max_age=ctx.settings.cache_max_age, labelers=labelers)
