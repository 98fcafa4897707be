"""The advisory locks writers coordinate with, in one place so their keys never collide.

- The fold lock: every batch writer takes it shared for its transaction; `rebuild` and the audio cleanup take it
  exclusive, so they never interleave with folding.
- Per-object audio locks (second key: hashtext(sha256)): an upload of an object and its deletion by the audio
  cleanup are serialised, so a referenced or re-uploaded object is never deleted.
- The takedown lock: operators changing takedowns (CLI, admin XRPC) are serialised, so each change reads the
  state it changes.
"""

from __future__ import annotations

from typing import Final

FOLD_LOCK_KEY: Final = 7243002
AUDIO_OBJECT_LOCK_KEY: Final = 7243010
TAKEDOWN_LOCK_KEY: Final = 7243020

LOCK_FOLD_SHARED: Final = f"SELECT pg_advisory_xact_lock_shared({FOLD_LOCK_KEY})"
LOCK_FOLD_EXCLUSIVE: Final = f"SELECT pg_advisory_xact_lock({FOLD_LOCK_KEY})"
LOCK_AUDIO_OBJECT: Final = f"SELECT pg_advisory_xact_lock({AUDIO_OBJECT_LOCK_KEY}, hashtext(%s))"
LOCK_TAKEDOWNS: Final = f"SELECT pg_advisory_xact_lock({TAKEDOWN_LOCK_KEY})"
