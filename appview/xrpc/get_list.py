"""fm.plyr.getList: a list with its items in record order; an item's `track` is absent when the subject is
gone, hidden or not a track."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.di import NamedDependency

from appview import hydrate, labels, presenters, rules
from appview.context import AppContext
from appview.http import AtUri, not_found, ok, split_at_uri, viewer_of
from appview.hydrate import Skeleton
from appview.views import ListOutput
from indexer.fold.collections.list import NSID as LIST

NSID = "fm.plyr.getList"

# The list's items, by list_items' primary key (did, rkey, position).
SKELETON = "SELECT subject_uri FROM list_items WHERE did = %(did)s AND rkey = %(rkey)s ORDER BY position"


def skeleton(did: str, rkey: str) -> Skeleton:
    return Skeleton(SKELETON, {"did": did, "rkey": rkey})


@get(f"/xrpc/{NSID}", responses=ok(ListOutput), operation_id=NSID)
async def handler(request: Request[Any, Any, Any], ctx: NamedDependency[AppContext], uri: AtUri) -> Response[bytes]:
    viewer = await viewer_of(ctx, request, NSID)
    did, rkey = split_at_uri(uri, LIST)
    labelers = labels.of_request(request, ctx.settings.labelers)
    async with ctx.pool.connection() as conn:
        shown = rules.in_order([uri], await hydrate.lists(conn, [uri]))
        if not shown:
            raise not_found("list", uri)
        subjects = await hydrate.uris(conn, skeleton(did, rkey))
        wanted = rules.track_subjects(subjects)
        found = await hydrate.tracks(conn, wanted, viewer)
        applied = await labels.fetch(
            conn, [uri, did, *(t.uri for t in found.values()), *(t.did for t in found.values())], labelers
        )
    if rules.label_hidden(uri, did, applied, labelers.redact, listed=False):
        raise not_found("list", uri)
    # A list is a listing: its items follow the listing rules, as a feed's tracks do.
    items = rules.not_label_hidden(rules.in_order(wanted, found), applied, labelers.redact, listed=True)
    track_views = presenters.tracks(items, ctx, viewer)
    labels.attach(track_views, applied)
    view = presenters.list_view(shown[0], presenters.list_items(subjects, {t.uri: t for t in track_views}))
    labels.attach([view], applied)
    return labels.respond_labeled(
        request, ListOutput(list=view), viewer=viewer, max_age=ctx.settings.cache_max_age, labelers=labelers
    )
