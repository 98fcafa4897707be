"""What readers must not see, and the other decisions taken on hydrated rows, in one place.

A projection row exists only for a live, valid record of an account that is not deleted (the fold keeps
nothing else), so what is left to hide is the content of accounts that are not active (deactivated, taken
down, suspended), and whatever went missing between a skeleton and its hydration. An actor a request names
by DID or handle must exist and be active, else the request fails and says why."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal, Protocol, TypeGuard, TypeVar

from appview.audio.locator import is_trusted
from appview.http import ActorRef, XrpcError, not_found
from appview.hydrate import ActorRow, NamedActorRow, TrackRow
from indexer.fold.collections.track import NSID as TRACK


class Published(Protocol):
    """A row of a record (track, list) that knows whether its author is active."""

    @property
    def author_active(self) -> bool: ...


class Authored(Protocol):
    """A row of a record (like, comment) whose author is hydrated separately."""

    @property
    def did(self) -> str: ...


P = TypeVar("P", bound=Published)
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
