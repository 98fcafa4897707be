"""`GET /oembed?url=...&format=json&maxwidth=&maxheight=`: oEmbed 1.0 (https://oembed.com) for tracks, albums
and lists, so that a site given one of their URLs can embed our player.

- `url`: any address appview/pages/embed.py `subject_of` understands (at-URIs, our embed pages, our listener
  page's list address, plyr.fm's at-URI addresses). Any other URL, or a subject that does not exist or is
  hidden: 404, as oEmbed says when there is no response for a URL. No `url`: 400.
- `format`: `json` (the default); anything else, `xml` included, is 501 Not Implemented, as oEmbed says.
- The answer is a `rich` type whose `html` is an iframe of `/embed/track|list/<did>/<rkey>`, at most
  `maxwidth` x `maxheight` (a size that cannot hold a player is refused with 404, the spec's answer when no
  response fits), with `title`, `author_name` / `author_url` (the artist on our listener page),
  `provider_name` / `provider_url`, `cache_age` and, for a track with cover art, `thumbnail_url`. Every link
  is absolute on `PLYR_APPVIEW_PUBLIC_URL`."""

from __future__ import annotations

import html
from typing import Annotated
from urllib.parse import quote

import msgspec
from litestar import Response, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from appview.context import AppContext
from appview.http import XrpcError
from appview.pages.embed import MAX_URL, Subject, embed_url, lookup, subject_of

PROVIDER = "plyr"
CACHE_AGE = 3600
# Default and smallest sizes of the players, (width, height).
DEFAULT = {"track": (480, 150), "list": (480, 400)}
MINIMUM = {"track": (200, 100), "list": (200, 160)}
MAX_SIDE = 4096


class OEmbed(msgspec.Struct, omit_defaults=True):
    """An oEmbed 1.0 `rich` response."""

    version: str
    type: str
    provider_name: str
    provider_url: str
    title: str
    html: str
    width: int
    height: int
    cache_age: int
    author_name: str | None = None
    author_url: str | None = None
    thumbnail_url: str | None = None


_encoder = msgspec.json.Encoder()

Size = Annotated[int | None, QueryParameter(ge=1, le=1_000_000, description="Largest size the consumer allows.")]


def _size(kind: str, maxwidth: int | None, maxheight: int | None) -> tuple[int, int]:
    width, height = DEFAULT[kind]
    width = min(width, maxwidth or width, MAX_SIDE)
    height = min(height, maxheight or height, MAX_SIDE)
    least_w, least_h = MINIMUM[kind]
    if width < least_w or height < least_h:
        raise XrpcError("NotFound", f"no player fits in {width}x{height}", status=404)
    return width, height


def response(ctx: AppContext, subject: Subject, width: int, height: int) -> OEmbed:
    origin = ctx.settings.public_origin
    src = embed_url(origin, subject.kind, subject.did, subject.rkey)
    title = subject.title
    iframe = (
        f'<iframe src="{html.escape(src, quote=True)}" width="{width}" height="{height}" frameborder="0"'
        f' loading="lazy" allow="autoplay; encrypted-media" title="{html.escape(title, quote=True)}"></iframe>'
    )
    track = subject.track
    thumbnail = track.image_url if track is not None and track.image_url else None
    handle = subject.author_handle
    return OEmbed(
        version="1.0",
        type="rich",
        provider_name=PROVIDER,
        provider_url=origin,
        title=title,
        html=iframe,
        width=width,
        height=height,
        cache_age=CACHE_AGE,
        author_name=track.artist if track is not None else handle or None,
        author_url=f"{origin}/listen#/artist/{quote(subject.did, safe='')}",
        thumbnail_url=thumbnail if thumbnail and thumbnail.startswith("https://") else None,
    )


# Left out of the OpenAPI document, like the pages: oEmbed's own spec describes it, and its 501 for a format
# other than json is the answer that spec requires, not a server failure. README's API section documents it.
@get("/oembed", include_in_schema=False)
async def oembed(
    ctx: NamedDependency[AppContext],
    url: Annotated[str, QueryParameter(min_length=1, max_length=MAX_URL, description="The page or at-URI.")],
    format: Annotated[str, QueryParameter(max_length=16, description="json (the only format served).")] = "json",
    maxwidth: Size = None,
    maxheight: Size = None,
) -> Response[bytes]:
    if format != "json":
        raise XrpcError("NotImplemented", "only format=json is served", status=501)
    ref = subject_of(url, ctx.settings.public_origin)
    if ref is None:
        raise XrpcError("NotFound", "not a track, album or list URL this service embeds", status=404)
    subject = await lookup(ctx, ref)
    if subject is None:
        raise XrpcError("NotFound", "no such track, album or list here", status=404)
    width, height = _size(subject.kind, maxwidth, maxheight)
    return Response(
        _encoder.encode(response(ctx, subject, width, height)),
        media_type="application/json",
        headers={"Cache-Control": f"public, max-age={CACHE_AGE}"},
    )
