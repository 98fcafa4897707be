"""The API's documentation: `/schema/openapi.json` (OpenAPI 3.1) and `/schema`, a plain HTML page rendered
from the same document on the server, with no script and nothing loaded from elsewhere, so it works offline.

litestar builds the OpenAPI document from the route handlers (parameters, bodies, output schemas). `document`
completes every XRPC operation from its lexicon (lexicons/fm/plyr/*.json, read as appview/api_doc.py reads
them for the README): the summary is the lexicon description's first sentence and the description the whole of
it, and the responses list every error the method can answer, each with its status and its XRPC error names
(`x-xrpc-errors`): the lexicon's own, `InvalidRequest` for a malformed request, the service-auth errors where a
token is optional (queries) or required (procedures), and 304 for a conditional read. Methods without a lexicon
here (`_health`, the com.atproto.repo write proxy, the com.atproto.admin takedown routes) are described by
`_BUILT_IN`.
"""

from __future__ import annotations

import copy
import html
import re
from collections.abc import Iterable, Mapping
from typing import Any

from litestar import Request
from litestar.enums import MediaType
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, OpenAPIRenderPlugin

from appview.api_doc import methods
from appview.auth import TOKEN_ERRORS

PATH = "/schema"
XRPC = "/xrpc/"
ERROR_SCHEMA = {"$ref": "#/components/schemas/ErrorOutput"}
INFO = (
    "The fm.plyr XRPC read API, audio, and the write proxy. Every error is JSON "
    '`{"error": "<name>", "message": "..."}`; the names each operation can answer are listed per response '
    "(`x-xrpc-errors`). An XRPC method this service does not serve answers 501 `MethodNotImplemented`. HEAD is "
    "answered wherever GET is."
)

# The status each lexicon error name is answered with; any other name is a 400.
ERROR_STATUS = {"NotFound": 404, "AuthRequired": 401, "PayloadTooLarge": 413}
# What an error means when its lexicon does not say.
MEANING = {
    "NotFound": "What the request names does not exist, or is hidden.",
    "AccountDeactivated": "The actor's account is deactivated.",
    "AccountTakedown": "The actor's account is taken down.",
    "AuthRequired": "No service-auth token (Authorization: Bearer).",
    "UploadInterrupted": "The body ended before Content-Length bytes arrived.",
}

_WRITE_PROXY = "Forwarded to the repo's PDS with the caller's own credentials (com.atproto lexicon)."
_PROXY_ERRORS: dict[int, tuple[tuple[str, ...], str]] = {
    400: (("InvalidRequest", "InvalidRecord"), "Invalid request or record; a 4xx the PDS answers is passed through."),
    401: (("AuthenticationRequired",), "Missing credentials, or the PDS refused them (its own error is passed on)."),
    413: (("PayloadTooLarge",), "The blob is over PLYR_APPVIEW_AUDIO_MAX_BYTES."),
    502: (("UpstreamFailure",), "The PDS failed or could not be reached."),
    504: (("UpstreamTimeout",), "The PDS did not answer in time; the write may or may not have been applied."),
}
_PROXIED = {
    "createRecord": "Create an fm.plyr record in the caller's repo.",
    "putRecord": "Create or replace an fm.plyr record in the caller's repo.",
    "deleteRecord": "Delete an fm.plyr record from the caller's repo.",
    "applyWrites": "Apply several fm.plyr writes to the caller's repo in one commit.",
    "uploadBlob": "Upload a blob (audio, artwork) to the caller's PDS.",
}
_ADMIN = (
    "Operator only: HTTP Basic `admin:<PLYR_APPVIEW_ADMIN_PASSWORD>` (com.atproto lexicon; see docs/moderation.md)."
)
_ADMIN_ERRORS: dict[int, tuple[tuple[str, ...], str]] = {
    400: (("InvalidRequest",), "The subject is malformed or names nothing that can be taken down."),
    401: (("AuthRequired",), "No admin credentials or wrong ones, or no admin password is configured."),
}
# XRPC methods without a lexicon in lexicons/: (description, errors by status with their meaning).
_BUILT_IN: dict[str, tuple[str, dict[int, tuple[tuple[str, ...], str]]]] = {
    "_health": ("Whether the database is reachable, and how far behind each ingest source is.", {}),
    **{f"com.atproto.repo.{m}": (f"{text} {_WRITE_PROXY}", _PROXY_ERRORS) for m, text in _PROXIED.items()},
    "com.atproto.admin.updateSubjectStatus": (
        "Take an account, a record or an uploaded audio object down, or restore it, at once and everywhere;"
        f" `takedown.ref` is kept as the reason. {_ADMIN}",
        _ADMIN_ERRORS,
    ),
    "com.atproto.admin.getSubjectStatus": (
        "Whether an account (`did`), a record (`uri`) or an uploaded audio object (`did` and `blob`) is taken"
        f" down. {_ADMIN}",
        _ADMIN_ERRORS,
    ),
}
# Responses a built-in method answers beyond what its handler declares.
_EXTRA_RESPONSES: dict[str, dict[str, dict[str, Any]]] = {
    "_health": {"503": {"description": "The database is unreachable (`status` is `unhealthy`, `db` `unavailable`)."}},
}


def first_sentence(text: str) -> str:
    text = " ".join(text.split())
    end = text.find(". ")
    return text if end < 0 else text[: end + 1]


def _response(names: Iterable[str], meaning: str) -> dict[str, Any]:
    named = sorted(set(names))
    listed = ", ".join(f"`{n}`" for n in named)
    return {
        "description": f"{listed}: {meaning}" if listed else meaning,
        "content": {"application/json": {"schema": ERROR_SCHEMA}},
        "x-xrpc-errors": named,
    }


def lexicon_errors(main: Mapping[str, Any]) -> dict[int, tuple[list[str], str]]:
    """Every error a lexicon-described method answers, by status: (names, meaning)."""
    kind = main.get("type")
    malformed = "A parameter is missing or malformed." if kind == "query" else "A parameter or the body is malformed."
    found: dict[int, tuple[list[str], list[str]]] = {400: (["InvalidRequest"], [malformed])}

    def add(status: int, name: str, meaning: str) -> None:
        names, meanings = found.setdefault(status, ([], []))
        if name not in names:
            names.append(name)
        if meaning and meaning not in meanings:
            meanings.append(meaning)

    for error in main.get("errors") or []:
        name = str(error.get("name", ""))
        if name:
            add(ERROR_STATUS.get(name, 400), name, str(error.get("description") or MEANING.get(name, "")))
    token = (
        "The optional service-auth token (Authorization: Bearer) does not verify; without one the request is anonymous."
        if kind == "query"
        else "A service-auth token (Authorization: Bearer) is required and must verify."
    )
    # A query takes an optional token (anonymous without one, refused if it does not verify); a procedure that
    # needs one answers these too.
    for name in TOKEN_ERRORS:
        add(401, name, token)
    return {status: (names, " ".join(meanings)) for status, (names, meanings) in sorted(found.items())}


def document(openapi: Mapping[str, Any], lexicons: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A copy of `openapi` with every XRPC operation's summary, description and error responses completed."""
    doc = copy.deepcopy(dict(openapi))
    for path, item in (doc.get("paths") or {}).items():
        if not path.startswith(XRPC):
            continue
        nsid = path.removeprefix(XRPC)
        for op in item.values():
            if not isinstance(op, dict):
                continue
            responses = op.setdefault("responses", {})
            main = lexicons.get(nsid)
            if main is not None:
                text = " ".join(str(main.get("description", "")).split())
                op["summary"] = first_sentence(text)
                op["description"] = text
                for status, (names, meaning) in lexicon_errors(main).items():
                    responses[str(status)] = _response(names, meaning)
                if main.get("type") == "query":
                    responses["304"] = {"description": "Not modified: If-None-Match matched the response's ETag."}
            elif nsid in _BUILT_IN:
                summary, errors = _BUILT_IN[nsid]
                op["summary"] = first_sentence(summary)
                own = op.get("description")
                op["description"] = summary + (f"\n\n{own}" if own else "")
                for status, (built_in, meaning) in errors.items():
                    # Only statuses the handler documents: uploadBlob alone can be too large.
                    if str(status) in responses:
                        responses[str(status)] = _response(built_in, meaning)
                for status_text, response in _EXTRA_RESPONSES.get(nsid, {}).items():
                    responses.setdefault(status_text, response)
            op["responses"] = dict(sorted(responses.items()))
    return doc


class _Documented:
    """The completed document, built once from litestar's (which it builds once per app)."""

    def __init__(self) -> None:
        self._source: Mapping[str, Any] | None = None
        self._doc: dict[str, Any] = {}

    def __call__(self, openapi: Mapping[str, Any]) -> dict[str, Any]:
        if openapi is not self._source:
            self._doc = document(openapi, dict(methods()))
            self._source = openapi
        return self._doc


class OpenApiJson(JsonRenderPlugin):
    def __init__(self, documented: _Documented) -> None:
        super().__init__(path="/openapi.json")
        self.documented = documented

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return self.render_json(request, self.documented(openapi_schema))


class ApiPage(OpenAPIRenderPlugin):
    def __init__(self, documented: _Documented) -> None:
        super().__init__(path="/", media_type=MediaType.HTML)
        self.documented = documented

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        return page(self.documented(openapi_schema), self.get_openapi_json_route(request)).encode()


def openapi_config(title: str, version: str) -> OpenAPIConfig:
    """`/schema` (the HTML page) and `/schema/openapi.json`; no renderer that loads scripts from a CDN."""
    documented = _Documented()
    return OpenAPIConfig(
        title=title,
        version=version,
        description=INFO,
        path=PATH,
        render_plugins=[ApiPage(documented), OpenApiJson(documented)],
    )


# -- the HTML page ------------------------------------------------------------------------------------------

# The page has no script; its one style block is inline.
_CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:1.5rem auto;max-width:70rem;padding:0 1rem;color:#1d232a}
h1{font-size:1.5rem}h2{font-size:1.1rem;margin:2rem 0 .3rem}h3{font-size:.95rem;margin:.8rem 0 .3rem}
table{border-collapse:collapse;margin:.2rem 0}th,td{border:1px solid #d5d8dc;padding:.25rem .5rem;text-align:left;
vertical-align:top}th{background:#eef0f2}code{font:12.5px ui-monospace,monospace}
.m{display:inline-block;min-width:3.5rem;font-weight:700}.d{white-space:pre-line}.muted{color:#68717a}
section{border-top:1px solid #ddd}
"""
_METHODS = ("get", "post", "put", "patch", "delete", "head")


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _prose(value: object) -> str:
    """Escaped text whose `backticked` words read as code."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", _e(value))


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _number(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def schema_text(schema: Mapping[str, Any] | None) -> str:
    """A short reading of a JSON schema: `string (date-time)`, `integer (1-100)`, `TrackView[]`."""
    if not schema:
        return ""
    if "$ref" in schema:
        return _ref_name(str(schema["$ref"]))
    for key in ("oneOf", "anyOf"):
        if key in schema:
            parts = [schema_text(s) for s in schema[key] if s.get("type") != "null"]
            text = " or ".join(p for p in parts if p)
            break
    else:
        kind = schema.get("type", "")
        if isinstance(kind, list):
            kind = " or ".join(str(k) for k in kind if k != "null")
        text = f"{schema_text(schema.get('items'))}[]" if kind == "array" else str(kind)
        if "format" in schema:
            text += f" ({schema['format']})"
    bounds = []
    for low, high in (("minimum", "maximum"), ("minLength", "maxLength"), ("minItems", "maxItems")):
        lo, hi = schema.get(low), schema.get(high)
        if lo is not None and hi is not None:
            bounds.append(f"{_number(lo)}-{_number(hi)}")
        elif hi is not None:
            bounds.append(f"at most {_number(hi)}")
        elif lo is not None:
            bounds.append(f"at least {_number(lo)}")
    if "default" in schema:
        bounds.append(f"default {schema['default']}")
    return text + (f" ({', '.join(bounds)})" if bounds else "")


def operations(doc: Mapping[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(METHOD, path, operation) of every operation, XRPC methods first, each group by path."""
    found = [
        (method.upper(), path, op)
        for path, item in (doc.get("paths") or {}).items()
        for method, op in item.items()
        if method in _METHODS and isinstance(op, dict)
    ]
    return sorted(found, key=lambda f: (not f[1].startswith(XRPC), f[1], f[0]))


def _parameters(op: Mapping[str, Any]) -> str:
    params = op.get("parameters") or []
    if not params:
        return ""
    rows = "".join(
        f"<tr><td><code>{_e(p.get('name'))}</code>{'' if p.get('required') else '?'}</td><td>{_e(p.get('in'))}</td>"
        f"<td><code>{_e(schema_text(p.get('schema')))}</code></td><td>{_prose(p.get('description'))}</td></tr>"
        for p in params
        if isinstance(p, dict)
    )
    return f"<h3>Parameters</h3><table><tr><th>name</th><th>in</th><th>type</th><th>meaning</th></tr>{rows}</table>"


def _body(op: Mapping[str, Any]) -> str:
    body = op.get("requestBody")
    if not isinstance(body, dict):
        return ""
    items = "".join(
        f"<li><code>{_e(media)}</code> {_e(schema_text(spec.get('schema')) if isinstance(spec, dict) else '')}</li>"
        for media, spec in (body.get("content") or {}).items()
    )
    return f"<h3>Request body</h3><ul>{items}</ul>"


def _responses(op: Mapping[str, Any]) -> str:
    rows = []
    for status, resp in (op.get("responses") or {}).items():
        if not isinstance(resp, dict):
            continue
        content = resp.get("content") or {}
        shapes = ", ".join(schema_text(spec.get("schema")) for spec in content.values() if isinstance(spec, dict))
        names = list(resp.get("x-xrpc-errors") or [])
        errors = " ".join(f"<code>{_e(n)}</code>" for n in names)
        # The names have their own column; the description repeats them for readers of the JSON.
        meaning = str(resp.get("description") or "").removeprefix(", ".join(f"`{n}`" for n in names) + ": ")
        rows.append(
            f"<tr><td>{_e(status)}</td><td>{errors}</td><td>{_prose(meaning)}</td>"
            f"<td><code>{_e(shapes)}</code></td></tr>"
        )
    head = "<tr><th>status</th><th>errors</th><th>meaning</th><th>body</th></tr>"
    return f"<h3>Responses</h3><table>{head}{''.join(rows)}</table>"


def _anchor(method: str, path: str) -> str:
    return "op-" + "".join(c if c.isalnum() else "-" for c in f"{method}{path}")


def page(doc: Mapping[str, Any], json_url: str) -> str:
    """The whole document as one HTML page; every value escaped."""
    info = doc.get("info") or {}
    ops = operations(doc)
    index = "".join(
        f'<li><a href="#{_anchor(m, p)}"><span class="m">{_e(m)}</span><code>{_e(p)}</code></a> '
        f'<span class="muted">{_e(op.get("summary"))}</span></li>'
        for m, p, op in ops
    )
    sections = "".join(
        f'<section id="{_anchor(m, p)}"><h2><span class="m">{_e(m)}</span><code>{_e(p)}</code></h2>'
        f"<p><strong>{_e(op.get('summary'))}</strong></p>"
        + (f'<p class="d">{_prose(op.get("description"))}</p>' if op.get("description") != op.get("summary") else "")
        + _parameters(op)
        + _body(op)
        + _responses(op)
        + "</section>"
        for m, p, op in ops
    )
    title = f"{info.get('title', 'API')} {info.get('version', '')}".strip()
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_e(_CSP)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>{_e(title)}</h1><p>{_prose(info.get('description'))}</p>"
        f'<p>The machine-readable document: <a href="{_e(json_url)}">{_e(json_url)}</a> (OpenAPI '
        f"{_e(doc.get('openapi', ''))}).</p>"
        f"<h2>Operations</h2><ul>{index}</ul>{sections}</body></html>"
    )
