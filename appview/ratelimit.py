"""Rate limits: how much one client may ask of the API, shared by every replica through Postgres.

Policies (indexer/settings.py; 0 disables one):

- `reads`: requests per minute to every route but the write proxy and uploads (XRPC queries, pages, audio,
  static files, the API docs). Charged to the viewer's DID when the request carries a valid service-auth token,
  else to the client address. A PDS proxying its users' reads (`atproto-proxy`) calls from one address for all
  of them, so a verified DID, not that address, is the client then.
- `writes`: proxied `com.atproto.repo.*` write requests per minute, charged twice: to the client address
  before anything else happens (resolving a repo and calling its PDS cost us work whoever asks), and to the
  repo's DID once the target is known (as a PDS limits writes per DID). The caller's credentials are the PDS's
  to verify, so the DID's slot is only held while the PDS is asked: a write the PDS does not accept (any
  answer but 2xx) gives it back, so nobody can spend another account's writes with forged credentials.
- `uploads`: `fm.plyr.uploadAudio` requests per hour, charged to the uploader's verified DID.
- `upload_bytes`: bytes of new audio stored per DID per day. An upload is refused up front once the day's
  quota is spent, and refused after hashing (nothing stored) when its size does not fit in what is left. Bytes
  that were already stored (a deduplicated upload) do not count: the quota bounds storage, which they do not
  grow; the request still counts under `uploads`, which bounds repeated transfers. Once the day's quota is
  spent, every upload is refused before its body is read, bytes already stored included (they cannot be
  recognised before they arrive).

A request with a service-auth token is charged when the token is checked (appview/auth.py): to the DID when it
verifies, to the address when it is refused (so forged tokens are limited like anonymous requests, and once
over the limit are answered 429 instead of 401). A request whose token is never checked (it failed validation
first) is charged to its address as its response starts.

Client address: the socket peer, unless the peer is in `PLYR_APPVIEW_TRUSTED_PROXIES`; then X-Forwarded-For is
read from the right, skipping trusted proxies, and the first address that is not one is the client (the
left-most entry when all are trusted; the nearest proxy when an entry is unreadable, so a garbled header
limits that proxy's clients together rather than letting them escape). X-Forwarded-For from anyone else is
ignored. IPv6 clients are counted per /64, the smallest block an ISP hands out.

Answers: every limited response carries `ratelimit-limit`, `ratelimit-remaining`, `ratelimit-reset` (unix
seconds when the window ends) and `ratelimit-policy` (`<limit>;w=<seconds>`), of the tightest policy charged,
as ATProto's PDS sends them. Over the limit: 429 `{"error": "RateLimitExceeded", "message": ...}` with the same
headers and `retry-after` (seconds). `/xrpc/_health`, `/metrics` and CORS preflights are never limited.

Storage and cost: fixed windows aligned on the epoch (a minute, an hour, a day), one row per (policy, subject,
window) in the UNLOGGED table `rate_limits`, bumped by one `INSERT ... ON CONFLICT DO UPDATE ... RETURNING`:
one round trip per charge, on the primary (counters are writes; a read replica cannot take them). Unlogged:
no WAL per request, at the price of counters reset by a Postgres crash or failover, which only forgives.
Windows are cut on each replica's clock (keep them NTP-synchronised: a skewed replica shifts its window edges
by its skew). A fixed window lets a client spend up to twice its limit across a window edge; that is the price
of one row and one statement per charge. Expired windows are deleted every `PRUNE_SECONDS` by every replica
(`prune`). When the counter statement fails (database unreachable), the request is served unlimited: the
limiter never takes the API down with it, and a database that cannot count cannot serve much either.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Literal

import psycopg
import psycopg_pool
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from psycopg_pool import AsyncConnectionPool

from appview.http import XrpcError
from indexer.metrics import Metrics
from indexer.settings import Settings

log = logging.getLogger(__name__)

PolicyName = Literal["reads", "writes", "uploads", "upload_bytes"]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# The headers a limited response carries (browsers may read them: appview/app.py exposes them to CORS).
RATE_LIMIT_HEADERS = ("ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "ratelimit-policy", "retry-after")
# Never limited: a load balancer's and Prometheus's probes must always get through.
EXEMPT_PATHS = frozenset({"/xrpc/_health", "/metrics"})
UPLOAD_PATH = "/xrpc/fm.plyr.uploadAudio"
# The write proxy's methods (appview/xrpc/repo_*.py); tests/test_ratelimit.py checks this against the routes.
WRITE_PATHS = frozenset(
    f"/xrpc/com.atproto.repo.{name}"
    for name in ("createRecord", "putRecord", "deleteRecord", "applyWrites", "uploadBlob")
)
# Routes whose handlers check a service-auth token (appview/auth.py), which then decides whom to charge.
_SERVICE_AUTH_PREFIX = "/xrpc/fm.plyr."
PRUNE_SECONDS = 60.0
# IPv6 clients are counted per /64: one subscriber commonly holds a whole /64.
_IPV6_PREFIX = 64
# How much of a peer name that is not an IP address (a unix socket, a test client) a subject keeps.
_PEER_CHARS = 64


@dataclass(frozen=True, slots=True)
class Policy:
    name: PolicyName
    # Most units (requests, or bytes) per window; 0: not limited.
    limit: int
    window: int
    unit: str

    @property
    def enabled(self) -> bool:
        return self.limit > 0

    def window_start(self, now: float) -> int:
        return int(now // self.window) * self.window


@dataclass(frozen=True, slots=True)
class Policies:
    reads: Policy
    writes: Policy
    uploads: Policy
    upload_bytes: Policy

    @classmethod
    def from_settings(cls, settings: Settings) -> Policies:
        return cls(
            reads=Policy("reads", settings.rate_limit_reads_per_minute, 60, "requests"),
            writes=Policy("writes", settings.rate_limit_writes_per_minute, 60, "writes"),
            uploads=Policy("uploads", settings.rate_limit_uploads_per_hour, 3600, "uploads"),
            upload_bytes=Policy("upload_bytes", settings.upload_bytes_per_day, 86400, "bytes"),
        )

    def of(self, method: str, path: str) -> Policy:
        """The policy a request falls under, by route."""
        if method == "POST" and path == UPLOAD_PATH:
            return self.uploads
        if method == "POST" and path in WRITE_PATHS:
            return self.writes
        return self.reads


@dataclass(frozen=True, slots=True)
class Status:
    """Where one subject stands in one policy's current window."""

    policy: Policy
    used: int
    window_start: int

    @property
    def remaining(self) -> int:
        return max(0, self.policy.limit - self.used)

    @property
    def exceeded(self) -> bool:
        return self.used > self.policy.limit

    @property
    def reset_at(self) -> int:
        return self.window_start + self.policy.window

    def headers(self) -> dict[str, str]:
        limit = self.policy.limit
        return {
            "ratelimit-limit": str(limit),
            "ratelimit-remaining": str(self.remaining),
            "ratelimit-reset": str(self.reset_at),
            "ratelimit-policy": f"{limit};w={self.policy.window}",
        }


class RateLimitExceeded(XrpcError):
    def __init__(self, status: Status, now: float) -> None:
        wait = max(1, math.ceil(status.reset_at - now))
        policy = status.policy
        super().__init__(
            "RateLimitExceeded",
            f"rate limit exceeded: at most {policy.limit} {policy.unit} per {policy.window} s; retry in {wait} s",
            status=429,
            headers={**status.headers(), "retry-after": str(wait)},
        )
        self.limit_status = status


def tightest(statuses: Sequence[Status]) -> Status | None:
    """The status a response reports: an exceeded one first, else the one with the fewest units left (as the
    PDS reports the tightest of the limits it applies)."""
    if not statuses:
        return None
    return min(statuses, key=lambda s: (not s.exceeded, s.remaining))


# -- client addresses ---------------------------------------------------------------------------------------


def _ip(text: str) -> Address | None:
    """An IP address, also as `[v6]:port` or `v4:port` (some proxies add the port)."""
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else ""
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def subject_of_address(ip: Address) -> str:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return f"ip:{ip.ipv4_mapped}"
        return f"ip:{ipaddress.IPv6Network((ip, _IPV6_PREFIX), strict=False)}"
    return f"ip:{ip}"


def client_subject(scope: Scope, trusted: Sequence[Network]) -> str:
    """The counter subject of the request's client address (see the module docstring)."""
    peer = scope.get("client")
    host = str(peer[0]) if peer else ""
    ip = _ip(host)
    if ip is None:
        return f"peer:{host[:_PEER_CHARS]}"

    def is_trusted(address: Address) -> bool:
        return any(address in network for network in trusted)

    if trusted and is_trusted(ip):
        hops: list[str] = []
        for name, value in scope.get("headers", ()):
            if name.lower() == b"x-forwarded-for":
                hops.extend(value.decode("latin-1").split(","))
        for entry in reversed(hops):
            hop = _ip(entry)
            if hop is None:
                break
            ip = hop
            if not is_trusted(hop):
                break
    return subject_of_address(ip)


# -- the counters -------------------------------------------------------------------------------------------

_HIT = """
INSERT INTO rate_limits AS r (policy, subject, window_start, hits, expires_at)
VALUES (%(policy)s, %(subject)s, %(window_start)s, %(cost)s, to_timestamp(%(expires)s))
ON CONFLICT (policy, subject, window_start) DO UPDATE SET hits = r.hits + EXCLUDED.hits
RETURNING hits
"""

# The same, and in the same round trip what another policy of the subject has used (the day's upload bytes,
# read when an upload request is charged).
_HIT_AND_PEEK = f"""
WITH hit AS ({_HIT})
SELECT (SELECT hits FROM hit),
       COALESCE((SELECT hits FROM rate_limits
                 WHERE policy = %(peek_policy)s AND subject = %(subject)s AND window_start = %(peek_start)s), 0)
"""

# Charges only what fits: no row back means the cost would pass the limit, and nothing was charged.
_RESERVE = """
INSERT INTO rate_limits AS r (policy, subject, window_start, hits, expires_at)
VALUES (%(policy)s, %(subject)s, %(window_start)s, %(cost)s, to_timestamp(%(expires)s))
ON CONFLICT (policy, subject, window_start) DO UPDATE SET hits = r.hits + EXCLUDED.hits
WHERE r.hits + EXCLUDED.hits <= %(limit)s
RETURNING hits
"""

_USED = """
SELECT hits FROM rate_limits WHERE policy = %(policy)s AND subject = %(subject)s AND window_start = %(window_start)s
"""

_REFUND = """
UPDATE rate_limits SET hits = GREATEST(hits - %(cost)s, 0)
WHERE policy = %(policy)s AND subject = %(subject)s AND window_start = %(window_start)s
"""

_PRUNE = "DELETE FROM rate_limits WHERE expires_at < to_timestamp(%s)"

# A charge that finds the database unreachable waits at most this long for a connection before the request
# is served unlimited.
_CONNECT_TIMEOUT = 5.0
_FAILURES = (psycopg.Error, psycopg_pool.PoolTimeout, OSError)


@dataclass(frozen=True, slots=True)
class Hold:
    """Units charged that may be given back (`RateLimiter.refund`)."""

    policy: Policy
    subject: str
    cost: int
    window_start: int


class RateLimiter:
    """The counters. `pool` must reach the primary; `clock` (unix seconds) cuts the windows."""

    def __init__(
        self,
        pool: AsyncConnectionPool,
        settings: Settings,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.policies = Policies.from_settings(settings)
        self.trusted_proxies: tuple[Network, ...] = tuple(ipaddress.ip_network(n) for n in settings.trusted_proxies)
        self.clock = clock
        self._pool = pool
        self._metrics = metrics

    @property
    def enabled(self) -> bool:
        p = self.policies
        return any(policy.enabled for policy in (p.reads, p.writes, p.uploads, p.upload_bytes))

    async def hit(self, policy: Policy, subject: str, cost: int = 1, *, peek: Policy | None = None) -> list[Status]:
        """Charge `cost` and return where the subject stands (and, with `peek`, where it stands in that policy,
        uncharged); [] when both are off or the counter could not be reached."""
        now = self.clock()
        if not policy.enabled:
            return [] if peek is None else await self._peek(peek, subject, now)
        start = policy.window_start(now)
        params: dict[str, object] = {
            "policy": policy.name,
            "subject": subject,
            "window_start": start,
            "cost": cost,
            "expires": start + policy.window,
        }
        if peek is not None and peek.enabled:
            params |= {"peek_policy": peek.name, "peek_start": peek.window_start(now)}
        try:
            row = await self._one(_HIT_AND_PEEK if "peek_policy" in params else _HIT, params)
        except _Unreachable:
            return []
        assert row is not None
        found = [Status(policy, int(row[0]), start)]
        if peek is not None and "peek_policy" in params:
            found.append(Status(peek, int(row[1]), peek.window_start(now)))
        return found

    async def _peek(self, policy: Policy, subject: str, now: float) -> list[Status]:
        if not policy.enabled:
            return []
        start = policy.window_start(now)
        try:
            row = await self._one(_USED, {"policy": policy.name, "subject": subject, "window_start": start})
        except _Unreachable:
            return []
        return [Status(policy, 0 if row is None else row[0], start)]

    async def reserve(self, policy: Policy, subject: str, cost: int) -> tuple[Status | None, Hold | None]:
        """Charge `cost` only if it fits in what is left of the window: (status, the hold to give back) when it
        does, (status, None) when it does not (nothing charged; `status.exceeded` is set, for the answer),
        (None, None) when the policy is off or the counter could not be reached."""
        if not policy.enabled:
            return None, None
        start = policy.window_start(self.clock())
        params: dict[str, object] = {
            "policy": policy.name,
            "subject": subject,
            "window_start": start,
            "cost": cost,
            "expires": start + policy.window,
            "limit": policy.limit,
        }
        try:
            if cost <= policy.limit:
                row = await self._one(_RESERVE, params)
                if row is not None:
                    return Status(policy, int(row[0]), start), Hold(policy, subject, cost, start)
            row = await self._one(_USED, params)
        except _Unreachable:
            return None, None
        # Reported as what the subject would have used: over the limit, which is why it was refused.
        return Status(policy, (0 if row is None else int(row[0])) + cost, start), None

    async def refund(self, hold: Hold) -> None:
        params: dict[str, object] = {
            "policy": hold.policy.name,
            "subject": hold.subject,
            "window_start": hold.window_start,
            "cost": hold.cost,
        }
        with contextlib.suppress(_Unreachable):
            await self._one(_REFUND, params, returns=False)

    async def prune(self) -> int:
        """Delete the windows that have ended; the number deleted."""
        async with self._pool.connection(timeout=_CONNECT_TIMEOUT) as conn:
            cur = await conn.execute(_PRUNE, (self.clock(),))
            return cur.rowcount

    def refuse(self, status: Status, subject: str, *, first: bool) -> RateLimitExceeded:
        """The 429 for `status`, counted; logged when `first` (the first refusal of the subject's window, so an
        attack is one line per window, not one per request)."""
        self._metrics.rate_limited.labels(status.policy.name).inc()
        if first:
            log.info(
                "rate limit exceeded",
                extra={"policy": status.policy.name, "subject": subject[:200], "limit": status.policy.limit},
            )
        return RateLimitExceeded(status, self.clock())

    async def _one(self, sql: str, params: dict[str, object], *, returns: bool = True) -> tuple[int, ...] | None:
        try:
            async with self._pool.connection(timeout=_CONNECT_TIMEOUT) as conn:
                cur = await conn.execute(sql, params)  # type: ignore[arg-type]
                row = await cur.fetchone() if returns else None
                return None if row is None else tuple(int(v) for v in row)
        except _FAILURES as exc:
            self._metrics.rate_limit_failures.inc()
            log.warning("rate limit counter unavailable; serving unlimited", extra={"error": repr(exc)[:300]})
            raise _Unreachable from exc


class _Unreachable(Exception):
    """The counter statement failed: the request goes unlimited."""


# -- one request --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Request:
    """What one request has been charged, for its response headers and its refunds."""

    limiter: RateLimiter
    policy: Policy
    address: str
    # Charged when its service-auth token is checked (appview/auth.py), not before.
    pending: bool
    statuses: list[Status] = field(default_factory=list)
    holds: list[Hold] = field(default_factory=list)

    async def charge(self, subject: str, *, peek: Policy | None = None) -> list[Status]:
        """One request's worth of the route's policy; 429 when that goes over the limit."""
        found = await self.limiter.hit(self.policy, subject, peek=peek)
        self.statuses.extend(found)
        if found and found[0].exceeded:
            # Only the charge that first went over is logged: the one that reached exactly limit + 1.
            raise self.limiter.refuse(found[0], subject, first=found[0].used == self.policy.limit + 1)
        return found


_current: ContextVar[_Request | None] = ContextVar("plyr_rate_limit_request", default=None)


async def charge_verified(did: str) -> None:
    """The request's service-auth token verified as `did`: charge the DID, which is then the client. An upload
    also checks the day's byte quota here, before its body is read."""
    request = _current.get()
    if request is None or not request.pending:
        return
    request.pending = False
    policies = request.limiter.policies
    peek = policies.upload_bytes if request.policy is policies.uploads else None
    for status in await request.charge(did, peek=peek):
        # A spent byte quota refuses the upload before its body is read.
        if status.policy is policies.upload_bytes and status.remaining == 0:
            raise request.limiter.refuse(status, did, first=True)


async def charge_refused() -> None:
    """The request's token was refused: the address pays, as for an anonymous request."""
    request = _current.get()
    if request is None or not request.pending:
        return
    request.pending = False
    await request.charge(request.address)


async def charge_write(did: str) -> None:
    """A proxied write to `did`'s repo: charge the DID, given back unless the PDS accepts it (see the module
    docstring). Outside a limited request (a direct call), nothing."""
    request = _current.get()
    if request is None:
        return
    policy = request.limiter.policies.writes
    status, hold = await request.limiter.reserve(policy, did, 1)
    if status is None:
        return
    request.statuses.append(status)
    if hold is None:
        raise request.limiter.refuse(status, did, first=status.used == policy.limit + 1)
    request.holds.append(hold)


@contextlib.asynccontextmanager
async def upload_bytes(
    limiter: RateLimiter, did: str, size: int, already_stored: Callable[[], Awaitable[bool]]
) -> AsyncIterator[list[bool]]:
    """Reserve `size` bytes of `did`'s daily quota around storing an upload: 429 when they do not fit, unless
    `already_stored()` says the bytes are in the store already (they will not count). The body sets
    `kept[0] = True` when the bytes were new to the store; otherwise, or if it raises, they are given back."""
    status, hold = await limiter.reserve(limiter.policies.upload_bytes, did, size)
    if status is not None and hold is None:
        if not await already_stored():
            _record(status)
            raise limiter.refuse(status, did, first=True)
        # Nothing was charged: the quota stands where it stood.
        status = Status(status.policy, status.used - size, status.window_start)
    if status is not None:
        _record(status)
    kept = [False]
    try:
        yield kept
    finally:
        if hold is not None and status is not None and not kept[0]:
            await limiter.refund(hold)
            # The response reports the quota as it stands after the refund.
            _record(Status(status.policy, status.used - hold.cost, status.window_start), replacing=status)


def _record(status: Status, *, replacing: Status | None = None) -> None:
    """Keep `status` for the current request's headers (nothing outside a limited request)."""
    request = _current.get()
    if request is None:
        return
    if replacing is not None and replacing in request.statuses:
        request.statuses.remove(replacing)
    request.statuses.append(status)


# -- the middleware -----------------------------------------------------------------------------------------


class RateLimitMiddleware:
    """Charges each routed request (see the module docstring) and adds the headers to its response. The limiter
    is the app context's (`ctx.limits`, built by the lifespan)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP or scope["method"] == "OPTIONS" or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        limiter: RateLimiter = scope["litestar_app"].state.ctx.limits
        if not limiter.enabled:
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        policy = limiter.policies.of("GET" if method == "HEAD" else method, path)
        pending = path.startswith(_SERVICE_AUTH_PREFIX) and _bearer(scope) and policy is not limiter.policies.writes
        request = _Request(limiter, policy, client_subject(scope, limiter.trusted_proxies), pending)
        token = _current.set(request)
        try:
            if not pending:
                await request.charge(request.address)
            await self.app(scope, receive, _Headers(send, request))
        finally:
            _current.reset(token)


def _bearer(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name.lower() == b"authorization":
            return value[:7].lower() == b"bearer "
    return False


class _Headers:
    """At the response's start: settles what is still open (a token never checked charges the address; a
    write the PDS did not accept gives its DID's slot back) and adds the rate-limit headers."""

    def __init__(self, send: Send, request: _Request) -> None:
        self.send = send
        self.request = request

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            request = self.request
            if request.pending:
                request.pending = False
                # The response is already decided: the charge counts against the next request.
                request.statuses.extend(await request.limiter.hit(request.policy, request.address))
            if request.holds and not 200 <= message["status"] < 300:
                holds, request.holds = request.holds, []
                for hold in holds:
                    await request.limiter.refund(hold)
            status = tightest(request.statuses)
            headers = list(message.get("headers", ()))
            if status is not None and not any(name.lower() == b"ratelimit-limit" for name, _ in headers):
                headers.extend((k.encode(), v.encode()) for k, v in status.headers().items())
                message = {**message, "headers": headers}  # type: ignore[typeddict-item]
        await self.send(message)


# -- pruning ------------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def pruning(jobs: Sequence[Callable[[], Awaitable[int]]], every: float = PRUNE_SECONDS) -> AsyncIterator[None]:
    """Run each job every `every` seconds while the context is open (expired counters, expired token ids)."""

    async def loop() -> None:
        while True:
            await asyncio.sleep(every)
            for job in jobs:
                try:
                    await job()
                except Exception as exc:
                    log.warning("pruning expired rows failed; retried later", extra={"error": repr(exc)[:300]})

    pruner = asyncio.create_task(loop(), name="prune-rate-limits")
    try:
        yield
    finally:
        pruner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pruner
