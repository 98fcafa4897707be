"""HEAD is answered wherever GET is: the same status and headers (Content-Length included, as the GET would send
it), no body.

litestar routes HEAD only to handlers that declare it. `answer_head` wraps the app's whole ASGI handler, in
front of routing: a HEAD request goes to the app as is first, so a route with its own HEAD handler (audio,
static files) keeps it and reads nothing it does not need; when that is refused with 405, the request is run
again as a GET and the GET's answer is sent without its body. Whatever the route, no HEAD response carries a
body.
"""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send


class _HeadAsGet:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        first = _Bodiless(send, hold_refusal=True)
        await self.app(scope, receive, first)
        if not first.refused:
            return
        # A HEAD request has no body; the first pass may have read its (empty) request message already.
        as_get: HTTPScope = {**scope, "method": "GET"}
        await self.app(as_get, _EmptyBody(receive), _Bodiless(send, hold_refusal=False))


# ASGI messages that carry response body: plain, and the file-sending extensions a server may offer.
_BODY_MESSAGES = frozenset({"http.response.body", "http.response.zerocopysend", "http.response.pathsend"})


class _Bodiless:
    """Forwards the response start as is and the body as one empty final message. With `hold_refusal`, a 405
    is held back entirely (`refused`), for the GET pass to answer instead."""

    def __init__(self, send: Send, *, hold_refusal: bool) -> None:
        self.send = send
        self.hold_refusal = hold_refusal
        self.refused = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            if self.hold_refusal and message["status"] == 405:
                self.refused = True
                return
            await self.send(message)
            return
        if self.refused:
            return
        kind = str(message["type"])
        if kind in _BODY_MESSAGES:
            # The last part of the body (a file sent by path is all of it) becomes the empty end of the response.
            if kind == "http.response.pathsend" or not message.get("more_body", False):
                await self.send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        await self.send(message)


class _EmptyBody:
    """The request's empty body once, then the real receive (which reports a client disconnect)."""

    def __init__(self, receive: Receive) -> None:
        self.receive = receive
        self.sent = False

    async def __call__(self) -> Any:
        if not self.sent:
            self.sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return await self.receive()


def answer_head(app: Litestar) -> Litestar:
    """`app`, answering HEAD wherever it answers GET."""
    app.asgi_handler = _HeadAsGet(app.asgi_handler)
    return app
