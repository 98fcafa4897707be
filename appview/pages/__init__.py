"""HTML pages served next to the API: the operator's status page, the listener page and the embeddable
players."""

from __future__ import annotations

from litestar.types import ControllerRouterHandler

from appview.pages import embed, listen, status


def handlers() -> list[ControllerRouterHandler]:
    return [
        status.status_page,
        status.root,
        listen.listen_page,
        listen.static_router(),
        embed.embed_track,
        embed.embed_list,
    ]
