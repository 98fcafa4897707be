"""What readers must not see, and the other decisions taken on hydrated rows, in one place.

A projection row exists only for a live, valid record of an account that is not deleted (the fold keeps
nothing else), so what is left to hide is the content of accounts that are not active (deactivated, taken
down, suspended), and whatever went missing between a skeleton and its hydration. An actor a request names
by DID or handle must exist and be active, else the request fails and says why. Labels the request applies
(appview/labels.py) hide too: a redacted `!takedown` / `!suspend` everywhere, `!hide` from listings."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, Protocol, TypeGuard, TypeVar

from appview.audio.gate import ANY_SUPPORTER, AUDIO_LXM, Proof, gate_type
from appview.audio.locator import is_trusted
from appview.http import ActorRef, XrpcError, not_found
from appview.hydrate import ActorRow, NamedActorRow, TrackRow
from appview.views import LabelView
from indexer.fold.collections.track import NSID as TRACK


class Published(Protocol):
    """A row of a record (track, list) that knows whether its author is active."""

    @property
    def author_active(self) -> bool: ...


class Authored(Protocol):
    """A row of a record (like, comment) whose author is hydrated separately."""

    @property
    def did(self) -> str: ...


class Subject(Protocol):
    """A row of a record that labels may name: its at-uri and its author."""

    @property
    def uri(self) -> str: ...

    @property
    def did(self) -> str: ...


P = TypeVar("P", bound=Published)
T = TypeVar("T", bound=Subject)
A = TypeVar("A", bound=Authored)


def visible(rows: Iterable[P]) -> list[P]:
    """The rows of a page that may be shown, in page order."""
    return [r for r in rows if r.author_active]


def in_order(uris: Iterable[str], found: Mapping[str, P]) -> list[P]:
    """The records asked for, in the order asked, leaving out those missing or hidden."""
    return [row for row in (found.get(u) for u in uris) if row is not None and row.author_active]


def visible_actor(row: ActorRow | None) -> TypeGuard[ActorRow]:
    return row is not None and row.active


def with_active_authors(rows: Iterable[A | None], actors: Mapping[str, ActorRow]) -> list[tuple[A, ActorRow]]:
    """Records (comments, likes) in the order given, each with its author, leaving out those missing (None)
    or whose author is not active."""
    shown = []
    for row in rows:
        if row is not None and visible_actor(author := actors.get(row.did)):
            shown.append((row, author))
    return shown


def track_subjects(subjects: Iterable[str]) -> list[str]:
    """The subjects that name a track; a list item naming anything else is listed without one."""
    return list(dict.fromkeys(s for s in subjects if s.startswith("at://") and f"/{TRACK}/" in s))


def checked_actor(found: NamedActorRow | None, actor: ActorRef) -> NamedActorRow:
    """The actor a request names, if active; errors say why not (unknown, deactivated, taken down)."""
    if found is None:
        raise not_found("actor", actor.given[:200])
    if not found.active:
        error = "AccountTakedown" if found.status == "takendown" else "AccountDeactivated"
        raise XrpcError(error, f"account is {found.status}")
    return found


def audio_source(row: TrackRow, trusted: tuple[str, ...]) -> Literal["url", "blob"]:
    """Where the track plays from, as the view tells a client: the blob when it has one and no `audioUrl` on
    an origin we trust, else the URL. The address a player uses is always ours; /audio picks the playable
    source at play time."""
    if row.audio_blob_cid and not (row.audio_url and is_trusted(row.audio_url, trusted)):
        return "blob"
    return "url"


# -- supporter-gated audio ----------------------------------------------------------------------------------

# No shared cache may keep an answer that depends on who asked.
PRIVATE = {"Cache-Control": "private, no-store", "Vary": "Authorization"}


def audio_shown(row: TrackRow, viewer: str | None, proven: frozenset[str]) -> bool:
    """Whether a view of the track may carry its audio (the `audio` block, and `audioUrl` / `audioBlob` in its
    record): always for a track without `supportGate`; for a gated one only for its author, or for a viewer
    proven to support the author (`proven`: the artists checked for this request; feeds and search check
    nobody, getTrack checks its track's artist for a signed-in viewer)."""
    kind = gate_type(row.support_gate)
    if kind is None or (viewer is not None and viewer == row.did):
        return True
    return kind == ANY_SUPPORTER and row.did in proven


def gate_refusal(proof: Proof) -> XrpcError | None:
    """Why a gated track's audio is refused to a requester who stands so towards its gate; None: it plays.
    The names are the API's (README, docs/moderation.md)."""
    if proof in ("author", "proven"):
        return None
    if proof == "anonymous":
        return XrpcError(
            "AuthRequired",
            f"this track is for the artist's supporters: send a service-auth token (lxm {AUDIO_LXM})",
            status=401,
            headers=PRIVATE,
        )
    if proof == "not_supporter":
        return XrpcError("SupporterRequired", "this track is for the artist's supporters", status=403, headers=PRIVATE)
    if proof == "unavailable":
        return XrpcError(
            "SupporterCheckUnavailable",
            "this track is for the artist's supporters, and this AppView's operator has not configured a supporter"
            " check: only the artist can play it here",
            status=501,
            headers=PRIVATE,
        )
    if proof == "failed":
        return XrpcError(
            "SupporterCheckFailed",
            "this track is for the artist's supporters, and the supporter check did not answer; try again later",
            status=503,
            headers=PRIVATE,
        )
    return XrpcError(
        "UnsupportedGate",
        "this track's gate is of a kind this AppView cannot check: only the artist can play it here",
        status=403,
        headers=PRIVATE,
    )


# -- labels -------------------------------------------------------------------------------------------------

# Values a labeler applied with `redact` uses to remove a subject from every response.
REDACTING_LABELS = frozenset({"!takedown", "!suspend"})
# A value that keeps a subject out of feeds, search and rankings, while a direct read still shows it.
HIDING_LABEL = "!hide"


def label_hidden(
    uri: str, did: str, applied: Mapping[str, Sequence[LabelView]], redact: frozenset[str], *, listed: bool
) -> bool:
    """Whether the labels applied to a record (`uri`) or its author (`did`) keep it out of a response:
    `!takedown` / `!suspend` from a labeler applied with redact, everywhere; `!hide` from any applied labeler,
    in listings (`listed`: feeds, search, top lists, an actor's tracks and likes). Other values (porn, sexual,
    nudity, graphic-media, custom ones) are the client's to act on. Self-labels are not consulted: an author
    cannot take their own record down by labeling it."""
    for label in (*applied.get(uri, ()), *applied.get(did, ())):
        if label.val in REDACTING_LABELS and label.src in redact:
            return True
        if listed and label.val == HIDING_LABEL:
            return True
    return False


def refuse_label_redacted_actor(did: str, applied: Mapping[str, Sequence[LabelView]], redact: frozenset[str]) -> None:
    """An actor a request names whose account a labeler applied with redact took down (`!takedown`,
    `!suspend`) is answered as an account taken down."""
    if label_hidden(did, did, applied, redact, listed=False):
        raise XrpcError("AccountTakedown", "account is taken down by a labeler this request applies")


def not_label_hidden(
    rows: Iterable[T], applied: Mapping[str, Sequence[LabelView]], redact: frozenset[str], *, listed: bool
) -> list[T]:
    """The rows (records with `uri` and `did`) no applied label keeps out of the response, in order."""
    return [r for r in rows if not label_hidden(r.uri, r.did, applied, redact, listed=listed)]
