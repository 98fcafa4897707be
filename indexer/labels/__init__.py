"""ATProto moderation labels from the labelers the operator configures (`PLYR_APPVIEW_LABELERS`).

- `label`: one label as a labeler sends it (`com.atproto.label.defs#label`), checked field by field, and its
  signature (DAG-CBOR of the label without `sig`, signed with the labeler's `#atproto_label` key).
- `source`: follows one labeler's `com.atproto.label.subscribeLabels` stream (DID document -> endpoint and
  key, websocket frames, reconnects with backoff, key rotation) and hands each frame to the store.
- `store`: writes a frame's labels, its rejections and the labeler's cursor in one transaction.

Labels are not part of the record log: they do not come from repositories and `rebuild` does not touch them.
A labeler's own stream is their source of truth; `labels` keeps, per (src, uri, val), the newest label signed,
and the labeler's cursor (`cursors`, source `labeler:<did>`) says how far that stream was applied.
"""
