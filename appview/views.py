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
    features: list[Json] | None = None
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


class CommentView(View, kw_only=True):
    uri: str
    cid: str
    author: ActorView
    text: str
    timestamp_ms: int | None = None
    created_at: str
    indexed_at: str
    record: Json


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


class StatsOutput(View, kw_only=True):
    tracks: int
    artists: int
    likes: int
    lists: int


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
