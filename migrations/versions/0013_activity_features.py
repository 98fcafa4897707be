"""activity and featured artists: sort indexes for getActivity, and the track_features projection

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-27 09:00:00.000000

getActivity merges the newest tracks, likes, comments and lists: each walks its own (sort_at, cid) index
backwards (tracks already have tracks_sort_idx). `track_features` holds, per projected track, each distinct DID
its `features` name, with the track's sort position: getActorTracks' `featured` and `all` filters walk
(feature_did, sort_at, cid). It is filled here from the tracks already projected, so an upgrade needs no rebuild;
from then on the track projection (indexer/fold/collections/track.py) keeps it.
"""

from __future__ import annotations

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

# Same selection as the track projection's: distinct DIDs of a `features` array, from the track's winning event.
_FILL = """
INSERT INTO track_features (did, rkey, feature_did, cid, sort_at)
SELECT DISTINCT t.did, t.rkey, f.item->>'did', t.cid, t.sort_at
FROM tracks t
JOIN events e ON e.id = t.event_id
CROSS JOIN LATERAL jsonb_array_elements(
  CASE WHEN jsonb_typeof(e.record->'features') = 'array' THEN e.record->'features' ELSE '[]'::jsonb END
) AS f(item)
WHERE jsonb_typeof(f.item) = 'object' AND f.item->>'did' LIKE 'did:%'
"""


def upgrade() -> None:
    op.execute("CREATE INDEX likes_sort_idx ON likes (sort_at, cid)")
    op.execute("CREATE INDEX comments_sort_idx ON comments (sort_at, cid)")
    op.execute("CREATE INDEX lists_sort_idx ON lists (sort_at, cid)")
    op.execute(
        """
        CREATE TABLE track_features (
            did text NOT NULL,
            rkey text COLLATE "C" NOT NULL,
            feature_did text NOT NULL,
            cid text NOT NULL,
            sort_at timestamptz NOT NULL,
            PRIMARY KEY (did, rkey, feature_did)
        )
        """
    )
    op.execute(_FILL)
    op.execute("CREATE INDEX track_features_feature_sort_idx ON track_features (feature_did, sort_at, cid)")


def downgrade() -> None:
    op.execute("DROP TABLE track_features")
    for name in ("lists_sort_idx", "comments_sort_idx", "likes_sort_idx"):
        op.execute(f"DROP INDEX {name}")
