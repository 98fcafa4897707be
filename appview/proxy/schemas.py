"""Request and response bodies of the proxied `com.atproto.repo.*` write methods (wire names in camelCase).

The request structs are what the proxy validates and re-encodes: the PDS receives exactly the bytes we checked,
so no difference between two JSON parsers (duplicate keys, odd escapes) can slip an unchecked record through.
"""

from __future__ import annotations

from typing import Any

import msgspec

Record = dict[str, Any]


class _Body(msgspec.Struct, kw_only=True, omit_defaults=True, rename="camel", forbid_unknown_fields=False):
    pass


class CreateRecordInput(_Body):
    repo: str
    collection: str
    record: Record
    rkey: str | None = None
    validate: bool | None = None
    swap_commit: str | None = None


class PutRecordInput(_Body):
    repo: str
    collection: str
    rkey: str
    record: Record
    validate: bool | None = None
    swap_record: str | None = None
    swap_commit: str | None = None


class DeleteRecordInput(_Body):
    repo: str
    collection: str
    rkey: str
    swap_record: str | None = None
    swap_commit: str | None = None


_WRITES = "com.atproto.repo.applyWrites"


class WriteCreate(_Body, tag_field="$type", tag=f"{_WRITES}#create"):
    collection: str
    value: Record
    rkey: str | None = None


class WriteUpdate(_Body, tag_field="$type", tag=f"{_WRITES}#update"):
    collection: str
    rkey: str
    value: Record


class WriteDelete(_Body, tag_field="$type", tag=f"{_WRITES}#delete"):
    collection: str
    rkey: str


Write = WriteCreate | WriteUpdate | WriteDelete


class ApplyWritesInput(_Body):
    repo: str
    writes: list[Write]
    validate: bool | None = None
    swap_commit: str | None = None


class CommitMeta(_Body):
    cid: str
    rev: str


class CreateRecordOutput(_Body):
    uri: str
    cid: str
    commit: CommitMeta | None = None
    validation_status: str | None = None


class PutRecordOutput(_Body):
    uri: str
    cid: str
    commit: CommitMeta | None = None
    validation_status: str | None = None


class DeleteRecordOutput(_Body):
    commit: CommitMeta | None = None


class CreateResult(_Body, tag_field="$type", tag=f"{_WRITES}#createResult"):
    uri: str
    cid: str
    validation_status: str | None = None


class UpdateResult(_Body, tag_field="$type", tag=f"{_WRITES}#updateResult"):
    uri: str
    cid: str
    validation_status: str | None = None


class DeleteResult(_Body, tag_field="$type", tag=f"{_WRITES}#deleteResult"):
    pass


WriteResult = CreateResult | UpdateResult | DeleteResult


class ApplyWritesOutput(_Body):
    commit: CommitMeta | None = None
    results: list[WriteResult] | None = None


class UploadBlobOutput(_Body):
    blob: dict[str, Any]
