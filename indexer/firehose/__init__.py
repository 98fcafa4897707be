"""Raw firehose (`com.atproto.sync.subscribeRepos`): frame decoding, repo CARs and MSTs, commit signatures,
and conversion of frame captures to Jetstream v1 JSON lines."""

from indexer.atproto.repo.car import (
    CarError,
    RecordError,
    RepoCar,
    RepoCommit,
    RepoRecord,
    read_repo_car,
    record_to_json,
)
from indexer.atproto.repo.signatures import SigningKeyError, parse_signing_key, verify_commit, verify_commit_with_key
from indexer.firehose.commit import CommitVerifier
from indexer.firehose.convert import ConvertStats, convert
from indexer.firehose.frames import (
    DEFAULT_MAX_FRAME_BYTES,
    CaptureError,
    Control,
    ControlKind,
    Decoded,
    decode_frame,
    iter_capture,
)

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "CaptureError",
    "CarError",
    "CommitVerifier",
    "Control",
    "ControlKind",
    "ConvertStats",
    "Decoded",
    "RecordError",
    "RepoCar",
    "RepoCommit",
    "RepoRecord",
    "SigningKeyError",
    "convert",
    "decode_frame",
    "iter_capture",
    "parse_signing_key",
    "read_repo_car",
    "record_to_json",
    "verify_commit",
    "verify_commit_with_key",
]
