"""Supporter-gated tracks: whether a viewer is proven to support a track's artist.

A track record may carry `supportGate` (`fm.plyr.track#supportGate`, `{"type": "any"}`: "the listener must
support the artist"). Support is what atprotofans (https://atprotofans.com) attests, and what plyr.fm checks
before it streams a gated track:

    GET <service>/xrpc/com.atprotofans.validateSupporter?supporter=<viewer DID>&subject=<artist DID>&signer=<DID>
    200 {"valid": true, "profile": {...}}  |  200 {"valid": false}

`signer` is whoever signed the support terms: the artist themself for direct support (the default here), or a
platform's DID when the artist takes support through a platform (`PLYR_APPVIEW_SUPPORTER_SIGNER`).

`SupporterCheck.proof` says how a viewer stands towards one gate; appview/rules.py decides what that allows.
- The author always has their own audio; an anonymous viewer never has gated audio; no service is asked.
- A gate type other than `any` cannot be checked here (it may ask for more than support): author only.
- With no service configured (`PLYR_APPVIEW_SUPPORTER_CHECK_URL` unset) nobody else is proven.
- Otherwise the service is asked. Only a 200 with `"valid": true` proves support; `"valid": false` disproves
  it; anything else (a timeout, a refused connection, another status, a body that is not that object, one
  larger than 64 KiB) proves nothing. The check fails closed, and each failure is logged with its reason and
  counted (`plyr_supporter_checks{outcome}`).

Answers are kept for `ANSWER_TTL` seconds per (viewer, artist, signer), failures for `FAILURE_TTL` seconds, in
the process's memo (appview/memo.py, single-flight per key): an outage costs one request per pair per
`FAILURE_TTL`, not one per play, and a new supporter waits at most `ANSWER_TTL`.

The service's URL is the operator's configuration, not something read from the network, so it does not go
through the SSRF guard (a checker next to the AppView on a private address is a legitimate set-up); redirects
are not followed, so the service cannot send the request anywhere else.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Literal, Protocol

import httpx
import msgspec

from appview.memo import Memo, Slot
from indexer.metrics import Metrics

log = logging.getLogger(__name__)

VALIDATE = "com.atprotofans.validateSupporter"
# The `lxm` a service-auth token for the audio routes (/audio, /audio-files) must carry: they are not XRPC
# methods, so a client asks its PDS for a token for this name (`com.atproto.server.getServiceAuth`).
AUDIO_LXM = "fm.plyr.getAudio"
# The one gate type the lexicon knows: any supporter of the artist.
ANY_SUPPORTER = "any"

ANSWER_TTL = 120.0
FAILURE_TTL = 10.0
TIMEOUT = 3.0
_MAX_BODY = 64 * 1024

# How a viewer stands towards a gate.
Proof = Literal["author", "proven", "anonymous", "not_supporter", "unavailable", "failed", "unsupported"]
Answer = Literal["proven", "not_supporter", "failed"]
_Key = tuple[str, str, str]  # viewer, artist, signer

ANSWERS: Slot[_Key, Answer] = Slot("supporter answers", ttl=ANSWER_TTL, size=50_000)
ATTEMPTS: Slot[_Key, Answer] = Slot("supporter attempts", ttl=FAILURE_TTL, size=10_000)


class Gated(Protocol):
    """A track row as far as its gate goes."""

    @property
    def did(self) -> str: ...

    @property
    def support_gate(self) -> str | None: ...


class _Gate(msgspec.Struct):
    type: str


class _Verdict(msgspec.Struct):
    valid: bool


def gate_type(support_gate: str | None) -> str | None:
    """The type of a stored `supportGate` (its JSON text), None when the track is not gated. A gate we cannot
    read is a gate of an unknown type (""): it stays closed to everyone but the author."""
    if support_gate is None or support_gate == "null":
        return None
    try:
        return msgspec.json.decode(support_gate, type=_Gate).type
    except msgspec.DecodeError:
        return ""


class _NotProven(Exception):
    """A failed check, so the answers slot keeps nothing of it."""


class SupporterCheck:
    def __init__(
        self,
        base_url: str | None,
        *,
        metrics: Metrics,
        signer: str | None = None,
        timeout: float = TIMEOUT,
        memo: Memo | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/") if base_url else None
        self._signer = signer
        self._metrics = metrics
        self._timeout = timeout
        self._memo = memo or Memo()
        self._client: httpx.AsyncClient | None = None

    @property
    def configured(self) -> bool:
        return self.base_url is not None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def proof(self, viewer: str | None, artist: str, support_gate: str | None) -> Proof:
        """How `viewer` (None: anonymous) stands towards the gate of a track by `artist`. An ungated track needs
        no proof; callers ask only about gated ones."""
        if viewer is not None and viewer == artist:
            return "author"
        if viewer is None:
            return "anonymous"
        if gate_type(support_gate) != ANY_SUPPORTER:
            return "unsupported"
        if self.base_url is None:
            return "unavailable"
        return await self.supports(viewer, artist)

    async def proven_artists(self, viewer: str | None, rows: Iterable[Gated]) -> frozenset[str]:
        """The artists of gated `rows` (other than the viewer) whom the viewer is proven to support: one check
        per artist, answers cached."""
        if viewer is None or self.base_url is None:
            return frozenset()
        artists = {r.did for r in rows if r.did != viewer and gate_type(r.support_gate) == ANY_SUPPORTER}
        proven = [a for a in sorted(artists) if await self.supports(viewer, a) == "proven"]
        return frozenset(proven)

    async def supports(self, viewer: str, artist: str) -> Answer:
        """Whether the service proves that `viewer` supports `artist` (cached; see the module docstring)."""
        key = (viewer, artist, self._signer or artist)

        async def answer() -> Answer:
            found = await self._memo.get(ATTEMPTS, key, lambda: self._ask(*key))
            if found == "failed":
                raise _NotProven
            return found

        try:
            return await self._memo.get(ANSWERS, key, answer)
        except _NotProven:
            return "failed"

    def _failed(self, reason: str, key: _Key, detail: str) -> Answer:
        self._metrics.supporter_checks.labels(reason).inc()
        log.warning(
            "supporter check failed; support not proven",
            extra={"reason": reason, "supporter": key[0], "subject": key[1], "detail": detail[:200]},
        )
        return "failed"

    async def _ask(self, viewer: str, artist: str, signer: str) -> Answer:
        key = (viewer, artist, signer)
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout, follow_redirects=False)
        params = {"supporter": viewer, "subject": artist, "signer": signer}
        try:
            async with self._client.stream("GET", f"{self.base_url}/xrpc/{VALIDATE}", params=params) as resp:
                if resp.status_code != 200:
                    return self._failed("error_status", key, f"status {resp.status_code}")
                body = b""
                async for chunk in resp.aiter_bytes():
                    body += chunk
                    if len(body) > _MAX_BODY:
                        return self._failed("bad_answer", key, f"body over {_MAX_BODY} bytes")
        except httpx.TimeoutException as exc:
            return self._failed("timeout", key, repr(exc))
        except httpx.HTTPError as exc:
            return self._failed("unreachable", key, repr(exc))
        try:
            valid = msgspec.json.decode(body, type=_Verdict).valid
        except msgspec.DecodeError as exc:
            return self._failed("bad_answer", key, str(exc))
        outcome: Answer = "proven" if valid else "not_supporter"
        self._metrics.supporter_checks.labels(outcome).inc()
        return outcome
