"""`GET /listen`: the listener page, a static client of the public XRPC API (see static/listen.js)."""

from __future__ import annotations

from pathlib import Path

from litestar import MediaType, Response, get
from litestar.router import Router
from litestar.static_files import create_static_files_router

STATIC_DIR = Path(__file__).with_name("static")
# Only our own script, styles and API; audio from wherever /audio/<did>/<rkey> redirects (a CDN or a PDS).
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:;"
    " media-src 'self' https: http:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


@get("/listen", media_type=MediaType.HTML, include_in_schema=False)
async def listen_page() -> Response[bytes]:
    # Read per request: a few kB, and edits to the page show without a restart.
    return Response(
        (STATIC_DIR / "listen.html").read_bytes(),
        media_type=MediaType.HTML,
        headers={"Cache-Control": "public, max-age=60", "Content-Security-Policy": CSP},
    )


def static_router() -> Router:
    return create_static_files_router(
        path="/static",
        directories=[STATIC_DIR],
        include_in_schema=False,
        cache_control=None,
    )
