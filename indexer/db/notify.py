"""Change notifications: every committed change to a table the API reads is announced on one channel, so that
what the API keeps in memory (appview/page_cache.py) is dropped as soon as it may be wrong.

The announcement is a statement-level trigger on each table of `TABLES` (migration 0015) that calls
`pg_notify(INDEX_CHANGED, '')`. Statement-level and payload-free on purpose: Postgres keeps one notification per
transaction for identical payloads, so a fold batch of a thousand events costs one notification, delivered at its
commit (and never for a rolled-back one). Writers need not know about it: the fold, rebuild, takedowns, labels and
the write proxy's read-your-writes fold are all covered by the trigger.
"""

from __future__ import annotations

INDEX_CHANGED = "plyr_index_changed"

# The tables the API's reads read. Not here: the log (a new event changes no read until a projection changes in
# the same transaction), the fold's bookkeeping, sync and source state, and the rate limiter's counters.
TABLES = (
    "actors",
    "takedowns",
    "tracks",
    "track_features",
    "likes",
    "comments",
    "lists",
    "list_items",
    "profiles",
    "bsky_profiles",
    "plays",
    "actor_status",
    "labels",
    "audio_objects",
    "audio_flags",
)
