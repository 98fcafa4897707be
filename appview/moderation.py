"""What the operator's takedowns mean to the API, beyond what the fold already removed (indexer/moderation/).

A taken-down record or account is gone from every projection, so reads need nothing more. What remains is what
the API hands out or accepts without reading a projection: an uploaded audio object, served by its digest (410
while taken down), and writes and uploads by a taken-down account (refused with `AccountTakedown`). And the
operator's admin routes, which change and read takedowns like `plyr-appview takedown` does.
"""

from __future__ import annotations

import base64
import binascii
import hmac

import msgspec
from psycopg_pool import AsyncConnectionPool

from appview.http import XrpcError, echo
from indexer.moderation import takedowns
from indexer.settings import Settings


async def refuse_taken_down_audio(pool: AsyncConnectionPool, sha256: str) -> None:
    async with pool.connection() as conn:
        if await takedowns.audio_taken_down(conn, sha256):
            raise XrpcError("TakenDown", "this audio file was taken down by the operator", status=410)


async def refuse_taken_down_account(pool: AsyncConnectionPool, did: str) -> None:
    async with pool.connection(timeout=5.0) as conn:
        if await takedowns.account_taken_down(conn, did):
            raise XrpcError("AccountTakedown", f"{did} is taken down on this service", status=403)


# -- the admin XRPC routes (com.atproto.admin.*), as a PDS or Bluesky's AppView serve them ---------------------

ADMIN_USER = "admin"


def require_admin(settings: Settings, authorization: str | None) -> None:
    """HTTP Basic `admin:<PLYR_APPVIEW_ADMIN_PASSWORD>`, compared in constant time. Without a configured
    password nobody is an admin."""
    challenge = {"WWW-Authenticate": 'Basic realm="plyr-appview admin"'}
    expected = settings.admin_password
    if expected is None:
        raise XrpcError("AuthRequired", "admin routes are off: PLYR_APPVIEW_ADMIN_PASSWORD is not set", 401, challenge)
    scheme, _, token = (authorization or "").strip().partition(" ")
    given = b""
    if scheme.lower() == "basic":
        try:
            given = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            given = b""
    wanted = f"{ADMIN_USER}:{expected.value}".encode()
    if not hmac.compare_digest(given, wanted):
        raise XrpcError("AuthRequired", "admin credentials required (HTTP Basic, user admin)", 401, challenge)


class RepoRef(msgspec.Struct, frozen=True, tag_field="$type", tag="com.atproto.admin.defs#repoRef"):
    did: str


class StrongRef(msgspec.Struct, frozen=True, tag_field="$type", tag="com.atproto.repo.strongRef"):
    uri: str
    cid: str


class RepoBlobRef(msgspec.Struct, frozen=True, tag_field="$type", tag="com.atproto.admin.defs#repoBlobRef"):
    did: str
    cid: str
    recordUri: str | None = None


SubjectRef = RepoRef | StrongRef | RepoBlobRef


class StatusAttr(msgspec.Struct, frozen=True, omit_defaults=True):
    applied: bool
    # The operator's reference for the decision (a claim number, a report id); kept as the takedown's reason.
    ref: str | None = None


class UpdateSubjectStatusInput(msgspec.Struct, frozen=True):
    subject: SubjectRef
    takedown: StatusAttr | None = None


class SubjectStatusOutput(msgspec.Struct, frozen=True, omit_defaults=True):
    subject: SubjectRef
    takedown: StatusAttr | None = None


def subject_of(ref: SubjectRef) -> takedowns.Subject:
    """The takedown subject a lexicon subject names; InvalidRequest says what is wrong with it."""
    if isinstance(ref, RepoBlobRef):
        sha256 = takedowns.blob_sha256(ref.cid)
        if sha256 is None:
            raise XrpcError("InvalidRequest", f"{echo(ref.cid)} is not a CIDv1 with a sha-256 hash")
        return takedowns.Subject.audio(sha256)
    text, kind = (ref.did, "account") if isinstance(ref, RepoRef) else (ref.uri, "record")
    try:
        subject = takedowns.parse_subject(text)
    except takedowns.SubjectError as exc:
        raise XrpcError("InvalidRequest", str(exc)) from None
    if subject.kind != kind:
        raise XrpcError("InvalidRequest", f"{echo(text)} is not what {type(ref).__name__} names")
    return subject


async def status_of(pool: AsyncConnectionPool, ref: SubjectRef) -> SubjectStatusOutput:
    subject = subject_of(ref)
    async with pool.connection() as conn:
        found = await takedowns.get(conn, subject)
    if found is None:
        return SubjectStatusOutput(subject=ref)
    return SubjectStatusOutput(subject=ref, takedown=StatusAttr(applied=found.applied, ref=found.reason))
