"""Embeddable players: `GET /embed/track/<did>/<rkey>` and `GET /embed/list/<did>/<rkey>`, and what the oEmbed
route (appview/routes/oembed.py) shares with them: which URLs name an embeddable subject, and the subject as a
reader may see it.

Contract:
- A page is small, self-contained HTML: no script at all, styles inline, one `<audio controls preload="none">`
  per playable track pointing at our `/audio/<did>/<rkey>` (absolute, from `PLYR_APPVIEW_PUBLIC_URL`), which
  redirects to wherever the track plays from. A supporter-gated track gets no audio element (anonymous
  requests cannot prove support), only a line saying so.
- Framing is the point: `Content-Security-Policy` allows any ancestor (`frame-ancestors *`) and nothing else
  (`default-src 'none'`, no scripts, no forms); no X-Frame-Options.
- A subject that does not exist, is hidden (author not active, a redacting label of the configured labelers),
  or is not a track / list is a 404 page; so is a malformed address.
- Subject URLs (`subject_of`): `at://<did or handle>/fm.plyr.track|fm.plyr.list/<rkey>`; our own embed pages
  (`<public origin>/embed/track|list/<did>/<rkey>`); our listener page's list address
  (`<public origin>/listen#/list/<at-uri, URL-encoded>`); and plyr.fm's at-URI addresses
  (`https://plyr.fm/at/<did>/<collection>/<rkey>`, also spelled `/at:/...` or `/at://...`). plyr.fm's
  `/track/<number>` and `/playlist/<uuid>` addresses name rows of plyr.fm's own database, which no record
  carries, so they are not ours to resolve."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

from litestar import MediaType, Response, get
from litestar.di import NamedDependency
from litestar.params import FromPath

from appview import hydrate, labels, rules
from appview.context import AppContext
from appview.http import ActorRef, actor_ref
from appview.hydrate import ListRow, TrackRow
from indexer.atproto.syntax import is_did, is_handle, is_record_key
from indexer.fold.collections.list import NSID as LIST
from indexer.fold.collections.track import NSID as TRACK

Kind = Literal["track", "list"]
COLLECTIONS: dict[str, Kind] = {TRACK: "track", LIST: "list"}
PLYR_HOSTS = frozenset({"plyr.fm", "www.plyr.fm"})
# Longest URL looked at: an at-URI is at most 8 KiB, and nothing longer names a subject.
MAX_URL = 8192

CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; media-src 'self' https: http:;"
    " base-uri 'none'; form-action 'none'; frame-ancestors *"
)
HEADERS = {"Content-Security-Policy": CSP, "Cache-Control": "public, max-age=300", "Referrer-Policy": "no-referrer"}


@dataclass(frozen=True)
class SubjectRef:
    """An embeddable subject as a URL names it: its kind, its repo (a DID, or a handle to look up) and rkey."""

    kind: Kind
    repo: ActorRef
    rkey: str


@dataclass(frozen=True)
class Subject:
    """A subject a reader may see: its track or list row, and for a list its tracks that are shown, in order."""

    kind: Kind
    did: str
    rkey: str
    track: TrackRow | None = None
    list: ListRow | None = None
    tracks: tuple[TrackRow, ...] = ()

    @property
    def title(self) -> str:
        if self.track is not None:
            return self.track.title
        assert self.list is not None
        return self.list.name or "Untitled list"

    @property
    def author_handle(self) -> str | None:
        row = self.track or self.list
        assert row is not None
        return row.handle

    @property
    def album(self) -> bool:
        return self.list is not None and self.list.list_type == "album"


def _from_at_uri(text: str) -> SubjectRef | None:
    parts = text.removeprefix("at://").split("/")
    if len(parts) != 3 or parts[1] not in COLLECTIONS or not is_record_key(parts[2]):
        return None
    if not (is_did(parts[0]) or is_handle(parts[0])):
        return None
    return SubjectRef(COLLECTIONS[parts[1]], actor_ref(parts[0]), parts[2])


def subject_of(url: str, origin: str) -> SubjectRef | None:
    """The subject a URL names (see the module docstring), or None for any other URL."""
    url = url.strip()
    if not url or len(url) > MAX_URL:
        return None
    if url.startswith("at://"):
        return _from_at_uri(url)
    try:
        parts = urlsplit(url)
        ours = urlsplit(origin)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    path = parts.path
    host = parts.hostname.lower()
    if (parts.scheme, parts.netloc.lower()) == (ours.scheme, ours.netloc.lower()):
        segments = path.split("/")
        if len(segments) == 5 and segments[:2] == ["", "embed"] and segments[2] in ("track", "list"):
            kind: Kind = "track" if segments[2] == "track" else "list"
            did, rkey = unquote(segments[3]), segments[4]
            if is_did(did) and is_record_key(rkey):
                return SubjectRef(kind, actor_ref(did), rkey)
            return None
        if path == "/listen" and parts.fragment.startswith("/list/"):
            return _from_at_uri(unquote(parts.fragment.removeprefix("/list/")))
        return None
    if host in PLYR_HOSTS and parts.scheme == "https":
        for prefix in ("/at://", "/at:/", "/at/"):
            if path.startswith(prefix):
                return _from_at_uri("at://" + unquote(path.removeprefix(prefix)))
    return None


async def lookup(ctx: AppContext, ref: SubjectRef) -> Subject | None:
    """The subject as an anonymous reader may see it (a direct read: only a redacting label of the configured
    labelers hides it, as getTrack and getList decide), or None."""
    labelers = labels.Labelers(tuple(ctx.settings.labelers), frozenset(ctx.settings.labelers))
    async with ctx.pool.connection() as conn:
        did = ref.repo.value
        if ref.repo.by == "handle":
            found = await hydrate.named_actor(conn, ref.repo)
            if found is None:
                return None
            did = found.did
        if ref.kind == "track":
            uri = f"at://{did}/{TRACK}/{ref.rkey}"
            tracks = await hydrate.tracks(conn, [uri], None)
            applied = await labels.for_tracks(conn, tracks.values(), labelers)
            shown = rules.not_label_hidden(rules.in_order([uri], tracks), applied, labelers.redact, listed=False)
            return Subject("track", did, ref.rkey, track=shown[0]) if shown else None
        uri = f"at://{did}/{LIST}/{ref.rkey}"
        lists = await hydrate.lists(conn, [uri])
        listed = rules.in_order([uri], lists)
        applied = await labels.fetch(conn, [uri, did], labelers)
        if not listed or rules.label_hidden(uri, did, applied, labelers.redact, listed=False):
            return None
        subjects = await hydrate.uris(conn, hydrate.Skeleton(_ITEMS, {"did": did, "rkey": ref.rkey}))
        wanted = rules.track_subjects(subjects)
        found_tracks = await hydrate.tracks(conn, wanted, None)
        applied = await labels.for_tracks(conn, found_tracks.values(), labelers)
    items = rules.not_label_hidden(rules.in_order(wanted, found_tracks), applied, labelers.redact, listed=False)
    return Subject("list", did, ref.rkey, list=listed[0], tracks=tuple(items))


# A list's items in record order (list_items' primary key), as getList reads them.
_ITEMS = "SELECT subject_uri FROM list_items WHERE did = %(did)s AND rkey = %(rkey)s ORDER BY position"


def embed_url(origin: str, kind: Kind, did: str, rkey: str) -> str:
    return f"{origin}/embed/{kind}/{quote(did, safe=':')}/{quote(rkey, safe='')}"


def listen_url(origin: str, subject: Subject) -> str:
    """Where the listener page shows the subject: a list, or the track's artist."""
    if subject.kind == "list":
        return f"{origin}/listen#/list/{quote(f'at://{subject.did}/{LIST}/{subject.rkey}', safe='')}"
    return f"{origin}/listen#/artist/{quote(subject.did, safe='')}"


# -- pages --------------------------------------------------------------------------------------------------

_STYLE = """
body{margin:0;font:14px/1.4 system-ui,sans-serif;color:#111;background:#fafafa}
main{padding:10px 12px}
h1{font-size:15px;margin:0 0 2px}
p{margin:0 0 6px;color:#555}
img{float:left;width:64px;height:64px;object-fit:cover;margin:0 10px 6px 0;border-radius:4px}
ol{margin:6px 0 0;padding-left:20px}
li{margin:0 0 8px}
audio{width:100%;display:block;margin-top:4px}
a{color:inherit}
"""


def _e(text: str | None) -> str:
    return html.escape(text or "", quote=True)


def _track_block(ctx: AppContext, row: TrackRow, heading: bool) -> str:
    title = f"<h1>{_e(row.title)}</h1>" if heading else f"<strong>{_e(row.title)}</strong>"
    cover = f'<img src="{_e(row.image_url)}" alt="">' if heading and row.image_url else ""
    if rules.audio_shown(row, None, frozenset()):
        player = f'<audio controls preload="none" src="{_e(f"{ctx.audio_base}/{row.did}/{row.rkey}")}"></audio>'
    else:
        player = "<p>For the artist's supporters.</p>"
    return f"{cover}{title}<p>{_e(row.artist)}</p>{player}"


def page(ctx: AppContext, subject: Subject) -> str:
    origin = ctx.settings.public_origin
    own = embed_url(origin, subject.kind, subject.did, subject.rkey)
    oembed = f"{origin}/oembed?format=json&url={quote(own, safe='')}"
    if subject.track is not None:
        body = _track_block(ctx, subject.track, heading=True)
    else:
        assert subject.list is not None
        items = "".join(f"<li>{_track_block(ctx, t, heading=False)}</li>" for t in subject.tracks)
        kind = "Album" if subject.album else "List"
        by = _e(subject.author_handle or "handle.invalid")
        body = f"<h1>{_e(subject.title)}</h1><p>{kind} by {by}</p>" + (
            f"<ol>{items}</ol>" if items else "<p>Nothing to play here.</p>"
        )
    link = f'<p><a href="{_e(listen_url(origin, subject))}" target="_blank" rel="noopener">Open in plyr</a></p>'
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_e(subject.title)}</title>"
        f'<link rel="alternate" type="application/json+oembed" href="{_e(oembed)}">'
        f"<style>{_STYLE}</style></head><body><main>{body}{link}</main></body></html>"
    )


def _not_found() -> Response[str]:
    return Response(
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Not found</title></head>'
        "<body><p>Nothing to play here.</p></body></html>",
        status_code=404,
        media_type=MediaType.HTML,
        headers={**HEADERS, "Cache-Control": "public, max-age=60"},
    )


async def _embed(ctx: AppContext, kind: Kind, did: str, rkey: str) -> Response[Any]:
    if not is_did(did) or not is_record_key(rkey):
        return _not_found()
    subject = await lookup(ctx, SubjectRef(kind, actor_ref(did), rkey))
    if subject is None:
        return _not_found()
    return Response(page(ctx, subject), media_type=MediaType.HTML, headers=HEADERS)


@get("/embed/track/{did:str}/{rkey:str}", media_type=MediaType.HTML, include_in_schema=False)
async def embed_track(ctx: NamedDependency[AppContext], did: FromPath[str], rkey: FromPath[str]) -> Response[Any]:
    return await _embed(ctx, "track", did, rkey)


@get("/embed/list/{did:str}/{rkey:str}", media_type=MediaType.HTML, include_in_schema=False)
async def embed_list(ctx: NamedDependency[AppContext], did: FromPath[str], rkey: FromPath[str]) -> Response[Any]:
    return await _embed(ctx, "list", did, rkey)
