"""Labels on views: which labelers a request applies, the labels they put on what a response shows, and the
record's own self-labels, as `com.atproto.label.defs#label` objects.

- Labelers: the request header `atproto-accept-labelers: did[;redact], did2, ...` chooses them (at most
  `MAX_LABELERS`; entries that are not DIDs are ignored); without it, the configured labelers
  (`PLYR_APPVIEW_LABELERS`) apply, each with `redact`. A DID we do not follow may be named: it simply has no
  labels here. The response says which labelers were applied in `atproto-content-labelers`, in the same
  syntax, and varies on the request header.
- Labels: the current labels (indexer/labels) of the applied labelers on each shown record's at-uri and on its
  author's DID (account-level labels, which also go on the author's actor view). Negated and expired labels
  are never shown. A labeler label keeps its `ver`, `cid`, `exp` and `sig` (as `{"$bytes": base64}`, the data
  model's JSON form), so a client can check the signature itself.
- Self-labels: a record's `labels` field of type `com.atproto.label.defs#selfLabels` becomes one label per
  value, with the author as `src`, the record's URI and CID, and its creation time as `cts` (unsigned).

What a label hides is decided in appview/rules.py; audio routes never look at labels.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import msgspec
from litestar import Request, Response

from appview.http import respond
from appview.views import CommentView, LabelView, ListView, TrackView
from indexer.atproto.syntax import is_did

ACCEPT_HEADER: Final = "atproto-accept-labelers"
CONTENT_HEADER: Final = "atproto-content-labelers"
# As many labelers as one request may apply (the Bluesky AppView's limit too).
MAX_LABELERS: Final = 20
SELF_LABELS: Final = "com.atproto.label.defs#selfLabels"


class Labelers(msgspec.Struct, frozen=True):
    dids: tuple[str, ...]
    redact: frozenset[str]

    def header(self) -> str:
        return ", ".join(d + (";redact" if d in self.redact else "") for d in self.dids)


def requested(header: str | None, configured: Sequence[str]) -> Labelers:
    """The labelers a request applies (see the module docstring)."""
    if header is None or not header.strip():
        return Labelers(tuple(configured), frozenset(configured))
    dids: list[str] = []
    redact: set[str] = set()
    for entry in header.split(","):
        did, *params = (p.strip() for p in entry.split(";"))
        if not did or len(did) > 2048 or not is_did(did):
            continue
        if did not in dids:
            if len(dids) >= MAX_LABELERS:
                break
            dids.append(did)
        if "redact" in params:
            redact.add(did)
    return Labelers(tuple(dids), frozenset(redact))


def of_request(request: Request[Any, Any, Any], configured: Sequence[str]) -> Labelers:
    return requested(request.headers.get(ACCEPT_HEADER), configured)


_LABELS = """
SELECT src, uri, cid, val, cts, exp, sig FROM labels
WHERE uri = ANY(%(subjects)s) AND src = ANY(%(labelers)s) AND NOT neg AND (exp_at IS NULL OR exp_at > now())
ORDER BY uri, src, val
"""


def _bytes(sig: bytes) -> dict[str, str]:
    return {"$bytes": base64.b64encode(sig).decode().rstrip("=")}


async def fetch(conn: Any, subjects: Iterable[str], labelers: Labelers) -> dict[str, list[LabelView]]:
    """Subject (at-uri or DID) -> the applied labelers' current labels on it."""
    wanted = list(dict.fromkeys(subjects))
    if not wanted or not labelers.dids:
        return {}
    cur = await conn.execute(_LABELS, {"subjects": wanted, "labelers": list(labelers.dids)})
    found: dict[str, list[LabelView]] = {}
    for src, uri, cid, val, cts, exp, sig in await cur.fetchall():
        found.setdefault(uri, []).append(
            LabelView(ver=1, src=src, uri=uri, cid=cid, val=val, cts=cts, exp=exp, sig=_bytes(bytes(sig)))
        )
    return found


async def for_tracks(conn: Any, rows: Iterable[Any], labelers: Labelers) -> dict[str, list[LabelView]]:
    """Labels on tracks (rows with `uri` and `did`) and on their authors."""
    rows = list(rows)
    return await fetch(conn, [r.uri for r in rows] + [r.did for r in rows], labelers)


def self_labels(labels: str | None, *, did: str, uri: str, cid: str, cts: str) -> list[LabelView]:
    """A record's `#selfLabels` (its `labels` field, as stored JSON text) as labels; [] for anything else."""
    if not labels or not labels.startswith("{"):
        return []
    try:
        decoded = json.loads(labels)
    except ValueError:
        return []
    values = decoded.get("values") if decoded.get("$type") == SELF_LABELS else None
    if not isinstance(values, list):
        return []
    vals = dict.fromkeys(v["val"] for v in values if isinstance(v, dict) and isinstance(v.get("val"), str))
    return [LabelView(src=did, uri=uri, cid=cid, val=v, cts=cts) for v in vals]


def attach(views: Iterable[TrackView | ListView | CommentView], applied: Mapping[str, Sequence[LabelView]]) -> None:
    """Adds the labelers' labels to track, list or comment views (after a track's self-labels) and account
    labels to their authors."""
    for view in views:
        on_record = applied.get(view.uri, ())
        if on_record:
            view.labels = [*(view.labels or ()), *on_record]
        on_author = applied.get(view.author.did, ())
        if on_author:
            view.author.labels = list(on_author)


def labeled_response(response: Response[bytes], labelers: Labelers) -> Response[bytes]:
    """The response, saying which labelers were applied; caches keep one copy per choice of labelers."""
    response.headers[CONTENT_HEADER] = labelers.header()
    vary = response.headers.get("Vary")
    response.headers["Vary"] = f"{vary}, {ACCEPT_HEADER}" if vary else ACCEPT_HEADER
    return response


def respond_labeled(
    request: Request[Any, Any, Any], body: msgspec.Struct, *, viewer: str | None, max_age: int, labelers: Labelers
) -> Response[bytes]:
    return labeled_response(respond(request, body, viewer=viewer, max_age=max_age), labelers)
