"""Commit signatures: every production commit in the corpus verifies offline; tampered ones do not."""

from __future__ import annotations

import json
from typing import Any

import libipld
import pytest

from indexer.atproto.repo.signatures import (
    SigningKeyError,
    parse_signing_key,
    unsigned_commit_bytes,
    verify_commit,
    verify_commit_with_key,
)
from tests.test_firehose_support import FakeRepo, Key, corpus_frames, did_docs, manifest, sign_commit


def corpus_commits() -> list[dict[str, Any]]:
    out = []
    for frame in corpus_frames():
        header, body = libipld.decode_dag_cbor_multi(frame)
        if header.get("t") == "#commit":
            _, blocks = libipld.decode_car(body["blocks"])
            out.append(blocks[body["commit"]])
    return out


def test_every_corpus_commit_verifies() -> None:
    docs = did_docs()
    commits = corpus_commits()
    assert len(commits) == manifest()["commit_frames"]
    failures = [(c["did"], verify_commit(c, docs[c["did"]])) for c in commits]
    assert [f for f in failures if f[1] is not None] == []


def test_corpus_keys_are_secp256k1_multikeys() -> None:
    keys = {parse_signing_key(doc) for doc in did_docs().values()}
    assert len(keys) == len(did_docs())
    assert all(k.startswith("did:key:zQ3s") for k in keys)


@pytest.fixture
def commit_and_doc() -> tuple[dict[str, Any], dict[str, Any]]:
    commit = corpus_commits()[0]
    return commit, did_docs()[commit["did"]]


def test_flipped_signature_byte(commit_and_doc: tuple[dict[str, Any], dict[str, Any]]) -> None:
    commit, doc = commit_and_doc
    for pos in (0, 31, 32, 63):
        sig = bytearray(commit["sig"])
        sig[pos] ^= 0x01
        assert verify_commit({**commit, "sig": bytes(sig)}, doc) == "bad_signature"


@pytest.mark.parametrize("field", ["rev", "data", "version"])
def test_changed_commit_content(commit_and_doc: tuple[dict[str, Any], dict[str, Any]], field: str) -> None:
    commit, doc = commit_and_doc
    changed = dict(commit)
    if field == "rev":
        changed["rev"] = commit["rev"][:-1] + ("b" if commit["rev"][-1] != "b" else "c")
    elif field == "data":
        data = bytearray(commit["data"])
        data[-1] ^= 0x01
        changed["data"] = bytes(data)
    else:
        changed["version"] = 2
    assert verify_commit(changed, doc) == "bad_signature"


def test_wrong_key(commit_and_doc: tuple[dict[str, Any], dict[str, Any]]) -> None:
    commit, _ = commit_and_doc
    other_did = next(d for d in did_docs() if d != commit["did"])
    borrowed = json.loads(json.dumps(did_docs()[other_did]).replace(other_did, commit["did"]))
    assert verify_commit(commit, borrowed) == "bad_signature"
    assert verify_commit(commit, did_docs()[other_did]) == "did_mismatch"


def test_bad_inputs(commit_and_doc: tuple[dict[str, Any], dict[str, Any]]) -> None:
    commit, doc = commit_and_doc
    assert verify_commit({k: v for k, v in commit.items() if k != "sig"}, doc) == "invalid_commit"
    assert verify_commit({**commit, "sig": commit["sig"][:63]}, doc) == "bad_signature"
    assert verify_commit(commit, {**doc, "verificationMethod": []}) == "no_signing_key"
    ed25519 = {
        **doc["verificationMethod"][0],
        "publicKeyMultibase": "z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK",
    }
    assert verify_commit(commit, {**doc, "verificationMethod": [ed25519]}) == "unsupported_key"


def test_high_s_signature_is_refused() -> None:
    # (r, n - s) is an equally valid ECDSA signature; atproto accepts only the low-S form.
    for curve in ("secp256k1", "p256"):
        key = Key(curve)
        did = "did:plc:highs"
        unsigned = {
            "did": did,
            "version": 3,
            "data": b"\x01q\x12 " + bytes(32),
            "rev": "3mptbypluud2a",
            "prev": None,
        }
        high = {**unsigned, "sig": key.sign(unsigned_commit_bytes(unsigned), low_s=False)}
        low = {**unsigned, "sig": key.sign(unsigned_commit_bytes(unsigned))}
        assert verify_commit(low, key.did_doc(did)) is None
        assert verify_commit(high, key.did_doc(did)) == "bad_signature"


@pytest.mark.parametrize("curve", ["secp256k1", "p256"])
def test_generated_keys_both_curves(curve: str) -> None:
    repo = FakeRepo(curve=curve)
    prefix = "zQ3s" if curve == "secp256k1" else "zDn"
    assert repo.key.multikey.startswith(prefix)
    commit = sign_commit(
        {
            "did": repo.did,
            "version": 3,
            "data": b"\x01q\x12 " + bytes(32),
            "rev": "3mptbypluud2a",
            "prev": None,
        },
        repo.key,
    )
    assert verify_commit(commit, repo.did_doc) is None
    assert verify_commit(commit, FakeRepo(did=repo.did, curve=curve).did_doc) == "bad_signature"
    did_key = parse_signing_key(repo.did_doc)
    assert verify_commit_with_key(commit, did_key) is None


def test_relative_method_id_and_other_method_ids() -> None:
    key = Key("secp256k1")
    did = "did:web:music.example.com"
    doc = key.did_doc(did, method_id="#atproto")
    assert parse_signing_key(doc).startswith("did:key:zQ3s")
    not_atproto = key.did_doc(did, method_id=f"{did}#other")
    with pytest.raises(SigningKeyError) as e:
        parse_signing_key(not_atproto)
    assert e.value.reason == "no_signing_key"
