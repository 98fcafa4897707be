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
from appview.hydrate import Skeleton, TimedEntry
from appview.views import CommentsOutput
from indexer.fold.collections.track import NSID as TRACK

NSID = "fm.plyr.getComments"

# comments_subject_idx (subject_uri, timestamp_ms). A timestampMs beyond bigint is stored as NULL; such a
# comment has no place on the playback timeline and is not listed.
SKELETON = f"""
SELECT {hydrate.columns(TimedEntry)} FROM comments
WHERE subject_uri = %(uri)s AND author_active AND timestamp_ms IS NOT NULL{{after}}
ORDER BY timestamp_ms, cid
LIMIT %(limit)s
"""
AFTER = " AND (timestamp_ms, cid) > (%(after)s, %(after_cid)s)"


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
        if not await hydrate.track_shown(conn, uri):
            raise not_found("track", uri)
        entries = await hydrate.fetch(conn, TimedEntry, *walk)
        found = await hydrate.comments(conn, [e.uri for e in entries])
        authors = await hydrate.actors(conn, (c.did for c in found.values()))
        applied = await labels.fetch(
            conn, [uri, track_did, *(c.uri for c in found.values()), *(c.did for c in found.values())], labelers
        )
    if rules.label_hidden(uri, track_did, applied, labelers.redact, listed=False):
        raise not_found("track", uri)
    kept = {c.uri: c for c in rules.not_label_hidden(found.values(), applied, labelers.redact, listed=True)}
    shown = rules.with_active_authors((kept.get(e.uri) for e in entries), authors)
    last = entries[-1] if len(entries) == limit else None
    comments = [presenters.comment(row, author) for row, author in shown]
    labels.attach(comments, applied)
    body = CommentsOutput(comments=comments, cursor=pack_int(last.timestamp_ms, last.sort_cid) if last else None)
    return labels.respond_labeled(request, body, viewer=viewer, max_age=ctx.settings.cache_max_age, labelers=labelers)
