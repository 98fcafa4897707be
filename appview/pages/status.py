"""`GET /status` (and `/`): the operator's page. Plain server-rendered HTML that reloads itself; every value is
escaped, since rejection examples and a source's last error are whatever hostile input the network sent.

Ingest: each live source with its committed cursor, lag, last commit and rate, and the connection state of each
of its hosts as the indexer reports it (connected since, or not connected with the last error and the number of
failed attempts, or never connected); a line saying why ingest is not healthy when it is not; replays apart.
The page also says when fuzzy search is unavailable (no pg_trgm in the database)."""

from __future__ import annotations

import datetime as dt
import html
import logging
from collections.abc import Iterable

from litestar import MediaType, Response, get
from litestar.di import NamedDependency
from litestar.response import Redirect

from appview.context import AppContext
from appview.memo import Slot
from appview.pages.status_data import Count, SourceStatus, StatusSnapshot, snapshot
from indexer.source_status import HostState

log = logging.getLogger(__name__)

# The page has no script at all; should an escaping mistake ever let markup through, the browser runs nothing.
CSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
# However many operators keep the page open, each replica reads the database at most this often for it.
CACHE_SECONDS = 5.0
SNAPSHOT = Slot[None, StatusSnapshot]("status-page", ttl=CACHE_SECONDS)
REFRESH_SECONDS = 10

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#1d232a;background:#f7f7f5}
h1{font-size:1.4rem;margin:0 0 .2rem}h2{font-size:1.1rem;margin:1.6rem 0 .4rem}
table{border-collapse:collapse;background:#fff;min-width:30rem}
th,td{border:1px solid #d5d8dc;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#e9ecef}td.n{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#68717a}.bad{color:#b3261e;font-weight:600}.ok{color:#1e7b34;font-weight:600}
code,pre{font:12px ui-monospace,monospace;white-space:pre-wrap;word-break:break-all;margin:0}
nav a{margin-right:1rem}
"""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _count(c: Count) -> str:
    prefix = {"estimate": "≈ ", "at_least": "≥ "}.get(c.kind, "")
    return f"{prefix}{c.value:,}"


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _seconds(s: float | None) -> str:
    if s is None:
        return "—"
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    if s < 172800:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


def _table(headers: Iterable[str], rows: Iterable[Iterable[str]], *, cls: str) -> str:
    """`rows` hold already-escaped cells."""
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _td(value: str, numeric: bool = False, cls: str = "") -> str:
    classes = " ".join(c for c in ("n" if numeric else "", cls) if c)
    return f'<td class="{classes}">{value}</td>' if classes else f"<td>{value}</td>"


def _clock(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%H:%M:%S UTC")


def _ago(now: dt.datetime, t: dt.datetime) -> str:
    return _seconds(max(0.0, (now - t).total_seconds()))


def _host(h: HostState, now: dt.datetime) -> str:
    """One host's connection state, escaped."""
    host = f"<code>{_e(h.host)}</code>"
    if h.stale:
        return (
            f'<span class="bad">{host}: state unknown</span> <span class="muted">the indexer has not reported since'
            f" {_e(_clock(h.updated_at))} ({_e(_ago(now, h.updated_at))} ago)</span>"
        )
    if h.connected:
        return f'<span class="ok">{host}: connected</span> <span class="muted">since {_e(_clock(h.since))}' \
            f" ({_e(_ago(now, h.since))})</span>"
    if not h.active and not h.attempts and h.last_error is None:
        return f'<span class="muted">{host}: standby (failover)</span>'
    attempts = "1 attempt" if h.attempts == 1 else f"{h.attempts} attempts"
    error = f" — last error: <code>{_e(h.last_error)}</code>" if h.last_error else ""
    when = (
        f"never connected; trying since {_e(_clock(h.since))}"
        if h.last_connected_at is None
        else f"disconnected since {_e(_clock(h.since))} ({_e(_ago(now, h.since))} ago)"
    )
    return f'<span class="bad">{host}: not connected{error} ({_e(attempts)})</span> <span class="muted">{when}</span>'


def _connection(src: SourceStatus, now: dt.datetime) -> str:
    if not src.hosts:
        return '<span class="muted">no connection state reported</span>'
    return "<br>".join(_host(h, now) for h in src.hosts)


def _sources(s: StatusSnapshot) -> str:
    parts = []
    if s.ingest_problem is not None and (s.sources or s.replays):
        parts.append(f'<p class="bad" id="ingest-problem">Ingest is not healthy: {_e(s.ingest_problem)}</p>')
    if not s.sources and not s.replays:
        parts.append(
            '<p class="muted" id="no-sources">No ingest source has reported a connection or committed anything yet'
            " (is the indexer running?).</p>"
        )
    elif s.sources:
        rows = []
        for src in s.sources:
            stale = src.last_commit_ago_seconds is not None and src.last_commit_ago_seconds > 300
            rows.append(
                [
                    _td(f"<code>{_e(src.source)}</code>"),
                    _td(_e("—" if src.cursor is None else src.cursor), numeric=True),
                    _td(_e(_seconds(src.lag_seconds)), numeric=True),
                    _td(_e(_seconds(src.last_commit_ago_seconds)), numeric=True, cls="bad" if stale else ""),
                    _td(_e(f"{src.events_per_second:.1f}"), numeric=True),
                    _td(_connection(src, s.taken_at)),
                ]
            )
        parts.append(
            _table(
                ["source", "cursor", "lag", "last commit", f"events/s ({s.rate_window_seconds:.0f} s)", "connection"],
                rows,
                cls="sources",
            )
        )
    if s.replays:
        parts.append('<h3 id="replays">Replays</h3>')
        parts.append(
            _table(
                ["replay", "cursor", "last commit", f"events/s ({s.rate_window_seconds:.0f} s)"],
                (
                    [
                        _td(f"<code>{_e(r.source)}</code>"),
                        _td(_e("—" if r.cursor is None else r.cursor), numeric=True),
                        _td(_e(_seconds(r.last_commit_ago_seconds)) + " ago", numeric=True),
                        _td(_e(f"{r.events_per_second:.1f}"), numeric=True),
                    ]
                    for r in s.replays
                ),
                cls="replays",
            )
        )
    return "".join(parts)


def _search(trigram: bool) -> str:
    if trigram:
        return ""
    return (
        '<p class="bad" id="no-fuzzy">Fuzzy search is unavailable: the database has no <code>pg_trgm</code>'
        " extension (the embedded server ships none), so searchTracks finds exact, prefix, word-prefix and"
        " substring matches only. A Postgres with pg_trgm (<code>DATABASE_URL</code>) adds fuzzy matches.</p>"
    )


def _rejections(s: StatusSnapshot) -> str:
    if not s.rejections:
        return '<p class="ok" id="no-rejections">No rejections.</p>'
    rows = []
    for r in s.rejections:
        examples = "".join(
            "<li>"
            f'<span class="muted">#{_e(x.id)} {_e(x.received_at.isoformat(timespec="seconds"))}'
            f" {_e(x.source)}</span> "
            f"<code>{_e(x.did)} {_e(x.collection)} {_e(x.rkey)}</code><br>"
            f"<code>{_e(x.detail)}</code>"
            + (f"<details><summary>input</summary><pre>{_e(x.event)}</pre></details>" if x.event else "")
            + "</li>"
            for x in r.examples
        )
        rows.append([_td(f"<code>{_e(r.reason)}</code>"), _td(_e(_count(r.count)), numeric=True),
                     _td(f"<ul>{examples}</ul>")])
    return _table(["reason", "count", "latest examples"], rows, cls="rejections")


def _sync(s: StatusSnapshot) -> str:
    sync = s.sync
    done = max(0, sync.total.value - sync.pending.value)
    approx = "" if sync.total.kind == "exact" and sync.pending.kind == "exact" else "≈ "
    parts = [
        f'<p id="sync-summary">Repos known to backfill/reconcile: <b>{_e(_count(sync.total))}</b>; '
        f"pending fetch: <b>{_e(_count(sync.pending))}</b>; synced: <b>{approx}{done:,}</b></p>"
    ]
    if sync.total.value:
        parts.append(f'<progress max="{sync.total.value}" value="{done}"></progress>')
    if sync.pending_by_reason:
        parts.append(
            _table(
                ["pending because", "repos"],
                ([_td(f"<code>{_e(k)}</code>"), _td(_e(f"{v:,}"), numeric=True)]
                 for k, v in sync.pending_by_reason.items()),
                cls="pending",
            )
        )
    if sync.failing:
        parts.append("<h3>Failing fetches (retried)</h3>")
        parts.append(
            _table(
                ["repo", "marked because", "attempts", "marked", "last error"],
                (
                    [
                        _td(f"<code>{_e(f.did)}</code>"),
                        _td(_e(f.reason)),
                        _td(_e(f.attempts), numeric=True),
                        _td(_e(f.marked_at.isoformat(timespec="seconds"))),
                        _td(f"<code>{_e(f.last_error)}</code>"),
                    ]
                    for f in sync.failing
                ),
                cls="failing",
            )
        )
    return "".join(parts)


def _tables(s: StatusSnapshot) -> str:
    return _table(
        ["table", "rows", "size on disk"],
        ([_td(_e(t.name)), _td(_e(_count(t.rows)), numeric=True), _td(_e(_bytes(t.bytes)), numeric=True)]
         for t in s.tables),
        cls="tables",
    )


def _page(body: str) -> str:
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>plyr-appview status</title><style>{_STYLE}</style></head><body>"
        '<nav><a href="/status">status</a><a href="/listen">listen</a><a href="/metrics">metrics</a>'
        '<a href="/xrpc/_health">health</a><a href="/schema">API schema</a></nav>'
        f"{body}</body></html>"
    )


def render(s: StatusSnapshot, *, trigram: bool = True) -> str:
    return _page(
        "<h1>plyr-appview status</h1>"
        f'<p class="muted">Database {_e(_bytes(s.database_bytes))} · read at '
        f"{_e(s.taken_at.isoformat(timespec='seconds'))} · reloads every {REFRESH_SECONDS} s"
        " · ≈ marks planner estimates</p>"
        f"{_search(trigram)}"
        f'<h2 id="ingest">Ingest sources</h2>{_sources(s)}'
        f'<h2 id="rejections">Rejections by reason</h2>{_rejections(s)}'
        f'<h2 id="sync">Backfill and reconciliation</h2>{_sync(s)}'
        f'<h2 id="tables">Tables</h2>{_tables(s)}'
    )


async def cached_snapshot(ctx: AppContext) -> StatusSnapshot:
    async def read() -> StatusSnapshot:
        async with ctx.pool.connection(timeout=5.0) as conn:
            # One snapshot, so the numbers on the page describe the same moment.
            async with conn.transaction():
                await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                return await snapshot(conn)

    return await ctx.memo.get(SNAPSHOT, None, read)


@get("/status", media_type=MediaType.HTML, include_in_schema=False, cache=False)
async def status_page(ctx: NamedDependency[AppContext]) -> Response[str]:
    headers = {"Cache-Control": "no-store", "Content-Security-Policy": CSP}
    try:
        found = await cached_snapshot(ctx)
    except Exception as exc:
        log.warning("status page could not read the database", extra={"error": repr(exc)[:300]})
        # The error text may name hosts and users: it goes to the log, the public page only says what failed.
        body = (
            '<h1>plyr-appview status</h1><p class="bad" id="db-error">'
            f"Database unavailable ({_e(type(exc).__name__)}); see the logs.</p>"
        )
        return Response(_page(body), media_type=MediaType.HTML, status_code=503, headers=headers)
    return Response(render(found, trigram=ctx.trigram), media_type=MediaType.HTML, headers=headers)


@get("/", include_in_schema=False)
async def root() -> Redirect:
    return Redirect("/status", status_code=302)
