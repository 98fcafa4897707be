"""Response views (the `fm.plyr.defs` lexicon), as msgspec Structs: they document the OpenAPI schema and
encode straight to JSON. Fields holding a record (or a part of one) are typed as JSON objects for the schema
but carry `msgspec.Raw` at run time, so stored JSON is passed through without a decode/encode round trip."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

INVALID_HANDLE = "handle.invalid"

Json = dict[str, Any]


class View(msgspec.Struct, omit_defaults=True, rename="camel", kw_only=True):
    pass


class LabelView(View, kw_only=True):
    """`com.atproto.label.defs#label`: a labeler's signed label, or a record's self-label (no ver, no sig)."""

    ver: int | None = None
    src: str
    uri: str
    cid: str | None = None
    val: str
    neg: bool | None = None
    cts: str
    exp: str | None = None
    # `{"$bytes": base64}`: the data model's JSON form of bytes.
    sig: Json | None = None


class ActorView(View, kw_only=True):
    did: str
    handle: str
    display_name: str | None = None
    avatar: str | None = None
    # Account-level labels (on the DID) of the labelers the request applies (appview/labels.py).
    labels: list[LabelView] | None = None


class AudioView(View, kw_only=True):
    url: str
    mime_type: str | None = None
    source: Literal["url", "blob"]


class TrackViewerState(View, kw_only=True):
    like: str | None = None


class TrackView(View, kw_only=True):
    uri: str
    cid: str
    author: ActorView
    title: str
    artist: str
    album: str | None = None
    duration: int | None = None
    file_type: str
    # The record's featured artists resolved by DID (appview/presenters.py `features`).
    features: list[ActorView] | None = None
    image_url: str | None = None
    description: str | None = None
    # Absent for a supporter-gated track the viewer may not play (appview/rules.py `audio_shown`).
    audio: AudioView | None = None
    # The record's `supportGate` as published (`fm.plyr.track#supportGate`).
    support_gate: Json | None = None
    # Self-labels, then the applied labelers' labels on the record (appview/labels.py).
    labels: list[LabelView] | None = None
    like_count: int
    comment_count: int
    play_count: int
    created_at: str
    indexed_at: str
    record: Json
    viewer: TrackViewerState | None = None


class ProfileView(View, kw_only=True):
    did: str
    handle: str
    display_name: str | None = None
    bio: str | None = None
    avatar: str | None = None
    track_count: int
    like_count: int
    list_count: int
    indexed_at: str | None = None
    # Account-level labels (on the DID) of the labelers the request applies (appview/labels.py).
    labels: list[LabelView] | None = None


class LikeView(View, kw_only=True):
    actor: ActorView
    created_at: str
    indexed_at: str


class ListItemView(View, kw_only=True):
    uri: str
    track: TrackView | None = None


class ListView(View, kw_only=True):
    uri: str
    cid: str
    author: ActorView
    name: str | None = None
    list_type: str | None = None
    item_count: int
    created_at: str
    indexed_at: str
    record: Json
    items: list[ListItemView] | None = None
    labels: list[LabelView] | None = None


class AlbumView(View, kw_only=True):
    """An artist's album: the tracks naming it in `album`, merged with the artist's `fm.plyr.list` of listType
    album of the same name (`list_uri`), if any (appview/xrpc/get_actor_albums.py)."""

    title: str | None = None
    author: ActorView
    artist: str
    list_uri: str | None = None
    track_count: int
    first_track_at: str
    last_track_at: str
    image_url: str | None = None
    labels: list[LabelView] | None = None


class CommentView(View, kw_only=True):
    uri: str
    cid: str
    author: ActorView
    text: str
    timestamp_ms: int | None = None
    created_at: str
    indexed_at: str
    record: Json
    labels: list[LabelView] | None = None


class ActivityItemView(View, kw_only=True):
    """`fm.plyr.defs#activityItemView`: a new track, like, comment or list (appview/xrpc/get_activity.py)."""

    kind: Literal["track", "like", "comment", "list"]
    uri: str
    cid: str
    actor: ActorView
    created_at: str
    track: TrackView | None = None
    list: ListView | None = None
    comment: CommentView | None = None


# -- method outputs -------------------------------------------------------------------------------------


class TrackOutput(View, kw_only=True):
    track: TrackView


class TracksOutput(View, kw_only=True):
    tracks: list[TrackView]


class TrackPageOutput(View, kw_only=True):
    tracks: list[TrackView]
    cursor: str | None = None


class LikesOutput(View, kw_only=True):
    uri: str
    likes: list[LikeView]
    cursor: str | None = None


class ListOutput(View, kw_only=True):
    list: ListView


class ListsOutput(View, kw_only=True):
    lists: list[ListView]
    cursor: str | None = None


class CommentsOutput(View, kw_only=True):
    comments: list[CommentView]
    cursor: str | None = None


class ActivityOutput(View, kw_only=True):
    items: list[ActivityItemView]
    cursor: str | None = None


class AlbumsOutput(View, kw_only=True):
    albums: list[AlbumView]
    cursor: str | None = None


class AlbumOutput(View, kw_only=True):
    album: AlbumView
    tracks: list[TrackView]
    cursor: str | None = None


class ActorsOutput(View, kw_only=True):
    actors: list[ActorView]
    cursor: str | None = None


class StatsOutput(View, kw_only=True):
    tracks: int
    artists: int
    likes: int
    lists: int
    plays: int
    unlinked_plays: int


class ErrorOutput(msgspec.Struct):
    error: str
    message: str


class DidService(msgspec.Struct):
    id: str
    type: str
    serviceEndpoint: str


class DidDocument(msgspec.Struct, rename={"context": "@context"}):
    context: list[str]
    id: str
    service: list[DidService]
