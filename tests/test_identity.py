"""Handle verification: both directions must agree. The DID side is resolved over HTTP from a PLC directory
served on loopback; the handle side (DNS/HTTPS in production) is given as a resolver function."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from litestar import Litestar, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath

from bench.synth import commit, identity, make_did, make_tid, track_record
from indexer.atproto.identity.handles import ResolvingVerifier, TrustingVerifier
from indexer.atproto.lexicon import Validator
from tests.helpers import TRACK, ingest, one, rows
from tests.test_up import free_port

ALICE = make_did(1)
MALLORY = make_did(2)


def did_doc(did: str, handle: str) -> dict[str, Any]:
    return {
        "@context": ["https://www.w3.org/ns/did/v1"],
        "id": did,
        "alsoKnownAs": [f"at://{handle}"],
        "verificationMethod": [
            {
                "id": f"{did}#atproto",
                "type": "Multikey",
                "controller": did,
                "publicKeyMultibase": "zQ3shunBKsXixLxKtC5qeSG9E4J5RkGN57im31pcTzbNQnm5w",
            }
        ],
        "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": "https://pds.test"}],
    }


def docs() -> dict[str, dict[str, Any]]:
    return {ALICE: did_doc(ALICE, "alice.test"), MALLORY: did_doc(MALLORY, "mallory.test")}


# What DNS / well-known would answer for each handle: alice.test points back at Alice; "famous.test" points
# at someone else, so Mallory cannot claim it by writing it into her own document.
HANDLES = {"alice.test": ALICE, "mallory.test": MALLORY, "famous.test": make_did(99)}


@contextlib.asynccontextmanager
async def plc_directory(docs: dict[str, dict[str, Any]]) -> AsyncIterator[str]:
    import asyncio

    import uvicorn

    @get("/{did:str}")
    async def resolve(did: FromPath[str]) -> dict[str, Any]:
        if did not in docs:
            raise NotFoundException("DID not registered")
        return docs[did]

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(Litestar([resolve]), host="127.0.0.1", port=port, log_config=None))
    task = asyncio.create_task(server.serve())
    for _ in range(500):  # the server starts within a second; give up after ten
        if server.started:
            break
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def resolve_handle(handle: str) -> str | None:
    return HANDLES.get(handle)


async def test_verified_handle_both_directions() -> None:
    directory = docs()
    async with plc_directory(directory) as plc:
        verifier = ResolvingVerifier(plc, timeout=2, resolve_handle=resolve_handle)
        assert await verifier.verify(ALICE, "Alice.Test") == "alice.test"
        # The document does not claim it.
        assert await verifier.verify(ALICE, "mallory.test") is None
        # Claimed by the document, but the handle resolves to someone else.
        directory[MALLORY]["alsoKnownAs"] = ["at://famous.test"]
        assert await verifier.verify(MALLORY, "famous.test") is None
        # Unknown DID, syntactically bad handle.
        assert await verifier.verify(make_did(55), "alice.test") is None
        assert await verifier.verify(ALICE, "not a handle") is None


async def test_unreachable_directory_means_unverified_not_a_crash() -> None:
    verifier = ResolvingVerifier(f"http://127.0.0.1:{free_port()}", timeout=0.5, resolve_handle=resolve_handle)
    assert await verifier.verify(ALICE, "alice.test") is None


async def test_writer_records_the_verified_handle(db_url: str, validator: Validator) -> None:
    from indexer.fold.writer import BatchWriter

    async with plc_directory({ALICE: did_doc(ALICE, "alice.test")}) as plc:
        verifier = ResolvingVerifier(plc, timeout=2, resolve_handle=resolve_handle)
        async with BatchWriter(db_url, validator=validator, verifier=verifier) as writer:
            await writer.write(
                [
                    commit(ALICE, TRACK, make_tid(1), make_tid(1), track_record("x")),
                    identity(ALICE, "alice.test", seq=1, micros=1),
                ]
            )
            assert await one(db_url, "SELECT handle FROM actors WHERE did = %s", ALICE) == "alice.test"
            await writer.write([identity(ALICE, "famous.test", seq=2, micros=2)])
    assert await one(db_url, "SELECT handle FROM actors WHERE did = %s", ALICE) is None
    # The verification result is what the log keeps, so a rebuild reproduces it offline.
    logged = await rows(db_url, "SELECT handle FROM events WHERE kind = 'identity' ORDER BY id")
    assert logged == [("alice.test",), (None,)]


async def test_trusting_verifier_takes_valid_handles_as_is() -> None:
    verifier = TrustingVerifier()
    assert await verifier.verify(ALICE, "Someone.Test") == "someone.test"
    assert await verifier.verify(ALICE, "bad handle") is None
    assert await verifier.verify(ALICE, None) is None


async def test_actors_never_introduced_get_a_verified_handle(db_url: str, validator: Validator) -> None:
    from indexer.fold.writer import BatchWriter
    from indexer.sync.introduce import introduce_round

    bob = make_did(3)
    await ingest(
        db_url,
        validator,
        [
            commit(ALICE, TRACK, make_tid(1), make_tid(1), track_record("x")),
            commit(MALLORY, TRACK, make_tid(2), make_tid(2), track_record("y")),
            commit(bob, TRACK, make_tid(3), make_tid(3), track_record("z")),
        ],
    )
    directory = docs()
    directory[MALLORY]["alsoKnownAs"] = ["at://famous.test"]  # claims a handle that is not hers
    async with plc_directory(directory) as plc:
        verifier = ResolvingVerifier(plc, timeout=2, resolve_handle=resolve_handle)
        tried: dict[str, float] = {}
        async with BatchWriter(db_url, validator=validator, verifier=TrustingVerifier()) as writer:
            assert await introduce_round(db_url, writer, verifier, tried=tried) == 1
            # Failures are not retried on the next round.
            assert await introduce_round(db_url, writer, verifier, tried=tried) == 0
    handles = dict(await rows(db_url, "SELECT did, handle FROM actors"))
    assert handles == {ALICE: "alice.test", MALLORY: None, bob: None}
    assert set(tried) == {MALLORY, bob}
    assert await one(db_url, "SELECT source FROM events WHERE kind = 'identity'") == "resolver"


async def test_failed_resolutions_are_remembered_briefly() -> None:
    from indexer.atproto.identity.did_docs import DidDocuments, DidResolutionError

    directory = docs()
    async with plc_directory(directory) as plc:
        async with DidDocuments(plc, timeout=2, failure_ttl=60) as cache:
            unknown = make_did(404)
            for _ in range(3):
                try:
                    await cache.resolve(unknown)
                except DidResolutionError as e:
                    assert e.reason == "did_not_found"
                else:
                    raise AssertionError("an unregistered DID resolved")
            # Repeated lookups of a DID that does not resolve cost one fetch, not one each.
            assert cache.fetches == 1
            # Once it exists, an explicit refresh sees it.
            directory[unknown] = did_doc(unknown, "late.test")
            assert (await cache.resolve(unknown, refresh=True))["id"] == unknown
            assert cache.fetches == 2
            assert (await cache.resolve(unknown))["id"] == unknown
            assert cache.fetches == 2
