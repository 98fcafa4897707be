"""Presentation: hydrated rows, already filtered by appview/rules.py, as the views of appview/views.py. Every
view is built here and nowhere else; a track in particular has one presenter (`track`), whichever statement
hydrated it.

Stored JSON (a record, its features) is passed through as `msgspec.Raw`, never decoded and re-encoded; a
record's self-labels become labels (appview/labels.py)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from appview import rules
from appview.hydrate import (
    ActorRow,
    AlbumRow,
    CommentRow,
    FeatureRow,
    LikeRow,
    ListRow,
    NamedActorRow,
    ProfileRow,
    StatsRow,
    TrackRow,
)
from appview.labels import self_labels
from appview.views import (
    INVALID_HANDLE,
    ActorView,
    AlbumView,
    AudioView,
    CommentView,
    LikeView,
    ListItemView,
    ListView,
    ProfileView,
    StatsOutput,
    TrackView,
    TrackViewerState,
)

if TYPE_CHECKING:
    from appview.context import AppContext


def _raw(text: str) -> Any:
    return msgspec.Raw(text.encode())


def actor(did: str, handle: str | None, avatar: str | None, display_name: str | None = None) -> ActorView:
    return ActorView(did=did, handle=handle or INVALID_HANDLE, display_name=display_name, avatar=avatar)


def actor_of(row: ActorRow) -> ActorView:
    return actor(row.did, row.handle, row.avatar, row.display_name)


_features = msgspec.json.Decoder(list[FeatureRow])


def features(resolved: str | None) -> list[ActorView] | None:
    """A track's featured artists as actor views, from the DIDs its record names (hydrate's `_FEATURES`): the
    verified handle, avatar and display name of an active account; `handle.invalid` and nothing else for a DID with no
    verified handle, unknown here, or not active, as an actor view shows any such actor. The record's handle
    snapshot is never trusted over the DID (it stays readable in `record`)."""
    if not resolved:
        return None
    return [actor(f.did, f.handle, f.avatar, f.display_name) for f in _features.decode(resolved)] or None


# What a view of a gated track leaves out of its record for a viewer who may not play it.
_AUDIO_FIELDS = ("audioUrl", "audioBlob")


def _without_audio(record: str) -> Any:
    """The record minus its audio fields: decoded and re-encoded, for the few gated tracks only."""
    decoded = msgspec.json.decode(record)
    if isinstance(decoded, dict):
        for name in _AUDIO_FIELDS:
            decoded.pop(name, None)
    return msgspec.Raw(msgspec.json.encode(decoded))


def track(
    row: TrackRow, *, audio_base: str, trusted: tuple[str, ...], viewer: bool, audio_shown: bool = True
) -> TrackView:
    """`audio_shown` False (rules.audio_shown): no `audio` block, and the record without `audioUrl` and
    `audioBlob`."""
    return TrackView(
        uri=row.uri,
        cid=row.cid,
        author=actor(row.did, row.handle, row.avatar, row.display_name),
        title=row.title,
        artist=row.artist,
        album=row.album,
        duration=row.duration,
        file_type=row.file_type,
        features=features(row.features),
        image_url=row.image_url,
        description=row.description,
        audio=AudioView(
            url=f"{audio_base}/{row.did}/{row.rkey}",
            mime_type=row.audio_blob_mime,
            source=rules.audio_source(row, trusted),
        )
        if audio_shown
        else None,
        support_gate=_raw(row.support_gate) if row.support_gate and row.support_gate.startswith("{") else None,
        labels=self_labels(row.labels, did=row.did, uri=row.uri, cid=row.cid, cts=row.created_at) or None,
        like_count=row.like_count,
        comment_count=row.comment_count,
        play_count=row.play_count,
        created_at=row.created_at,
        indexed_at=row.indexed_at,
        record=_raw(row.record) if audio_shown else _without_audio(row.record),
        viewer=TrackViewerState(like=row.viewer_like) if viewer else None,
    )


def tracks(
    rows: Iterable[TrackRow], ctx: AppContext, viewer: str | None, proven: frozenset[str] = frozenset()
) -> list[TrackView]:
    """Tracks for a request; a viewer's carry a `viewer` block (their like), an anonymous request's none.
    `proven`: the artists the viewer was proven to support (gated audio, rules.audio_shown)."""
    audio_base, trusted, has_viewer = ctx.audio_base, ctx.audio.trusted, viewer is not None
    return [
        track(
            r,
            audio_base=audio_base,
            trusted=trusted,
            viewer=has_viewer,
            audio_shown=rules.audio_shown(r, viewer, proven),
        )
        for r in rows
    ]


def profile(found: NamedActorRow, counts: ProfileRow) -> ProfileView:
    return ProfileView(
        did=found.did,
        handle=found.handle or INVALID_HANDLE,
        display_name=counts.display_name,
        bio=counts.bio,
        avatar=counts.avatar,
        track_count=counts.track_count,
        like_count=counts.like_count,
        list_count=counts.list_count,
        indexed_at=counts.indexed_at,
    )


def list_view(row: ListRow, items: list[ListItemView] | None = None) -> ListView:
    return ListView(
        uri=row.uri,
        cid=row.cid,
        author=actor(row.did, row.handle, row.avatar, row.display_name),
        name=row.name,
        list_type=row.list_type,
        item_count=row.item_count,
        created_at=row.created_at,
        indexed_at=row.indexed_at,
        record=_raw(row.record),
        items=items,
    )


def list_items(subjects: Sequence[str], found: Mapping[str, TrackView]) -> list[ListItemView]:
    """Every item in record order; `track` only where the subject is a track that is shown."""
    return [ListItemView(uri=s, track=found.get(s)) for s in subjects]


def album(row: AlbumRow) -> AlbumView:
    return AlbumView(
        title=row.title,
        author=actor(row.did, row.handle, row.avatar, row.display_name),
        artist=row.artist,
        list_uri=row.list_uri,
        track_count=row.track_count,
        first_track_at=row.first_track_at,
        last_track_at=row.last_track_at,
        image_url=row.image_url,
    )


def comment(row: CommentRow, author: ActorRow) -> CommentView:
    return CommentView(
        uri=row.uri,
        cid=row.cid,
        author=actor_of(author),
        text=row.text,
        timestamp_ms=row.timestamp_ms,
        created_at=row.created_at,
        indexed_at=row.indexed_at,
        record=_raw(row.record),
    )


def like(row: LikeRow, liker: ActorRow) -> LikeView:
    return LikeView(actor=actor_of(liker), created_at=row.created_at, indexed_at=row.indexed_at)


def stats(row: StatsRow) -> StatsOutput:
    return StatsOutput(
        tracks=row.tracks,
        artists=row.artists,
        likes=row.likes,
        lists=row.lists,
        plays=row.plays,
        unlinked_plays=row.unlinked_plays,
    )
