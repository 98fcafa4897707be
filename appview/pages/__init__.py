"""HTML pages served next to the API: the operator's status page and the listener page."""

from __future__ import annotations

from litestar.types import ControllerRouterHandler

from appview.pages import listen, status


def handlers() -> list[ControllerRouterHandler]:
    return [status.status_page, status.root, listen.listen_page, listen.static_router()]
