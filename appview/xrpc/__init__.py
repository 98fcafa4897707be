"""One module per XRPC method: reads, the write proxy, audio upload.

Each read is a pipeline whose steps the method names: its skeleton (the ids and sort keys of a page, from one
SQL statement that names the index it walks), hydrate (typed rows, batched: appview/hydrate.py), rules (what
readers must not see: appview/rules.py), present (views: appview/presenters.py). Parameters, cursors,
responses and errors are appview/http.py's. A feed's skeleton and hydration usually travel as one statement
(`hydrate.page`)."""

from __future__ import annotations

from litestar.types import ControllerRouterHandler

from appview.xrpc import (
    admin_get_subject_status,
    admin_update_subject_status,
    get_activity,
    get_actor_albums,
    get_actor_likes,
    get_actor_lists,
    get_actor_profile,
    get_actor_status,
    get_actor_tracks,
    get_album,
    get_comments,
    get_latest_tracks,
    get_likes,
    get_list,
    get_stats,
    get_top_tracks,
    get_track,
    get_tracks,
    repo_apply_writes,
    repo_create_record,
    repo_delete_record,
    repo_put_record,
    repo_upload_blob,
    search_actors,
    search_lists,
    search_tracks,
    upload_audio,
)

HANDLERS: list[ControllerRouterHandler] = [
    get_track.handler,
    get_tracks.handler,
    get_latest_tracks.handler,
    get_actor_tracks.handler,
    get_actor_profile.handler,
    get_actor_status.handler,
    get_likes.handler,
    get_actor_likes.handler,
    get_list.handler,
    get_actor_lists.handler,
    get_comments.handler,
    search_tracks.handler,
    search_actors.handler,
    search_lists.handler,
    get_actor_albums.handler,
    get_album.handler,
    get_top_tracks.handler,
    get_stats.handler,
    get_activity.handler,
    # The write proxy (appview/proxy).
    repo_create_record.handler,
    repo_put_record.handler,
    repo_delete_record.handler,
    repo_apply_writes.handler,
    repo_upload_blob.handler,
    # Audio storage (appview/storage).
    upload_audio.handler,
    # The operator's takedowns (appview/moderation.py).
    admin_update_subject_status.handler,
    admin_get_subject_status.handler,
]

# Every anonymous read whose answer is a function of the index and the request alone: the paths the page cache
# may answer (appview/page_cache.py). Not here: the admin reads (authenticated), the writes and the upload.
CACHED_READS = frozenset(
    f"/xrpc/{m.NSID}"
    for m in (
        get_track,
        get_tracks,
        get_latest_tracks,
        get_actor_tracks,
        get_actor_profile,
        get_actor_status,
        get_likes,
        get_actor_likes,
        get_list,
        get_actor_lists,
        get_comments,
        search_tracks,
        search_actors,
        search_lists,
        get_actor_albums,
        get_album,
        get_top_tracks,
        get_stats,
        get_activity,
    )
)
