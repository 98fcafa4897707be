"""A signed commit whose 64-byte signature happens to parse as a CID (about one in 1,200) is still the block its
CID names: its hash is checked on its bytes as they stand in the CAR, where re-encoding would write the
signature as a link and refuse a valid commit. A record's byte string gets no such second look."""

from __future__ import annotations

import hashlib
import os

import cbor2
import libipld
import pytest

from indexer.atproto.repo.car import DAG_CBOR_SHA256_PREFIX, block_digest_ok, commit_digest_ok, raw_block


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _car(root: bytes, blocks: list[tuple[bytes, bytes]]) -> bytes:
    header = libipld.encode_dag_cbor({"version": 1, "roots": [root]})
    out = _varint(len(header)) + header
    for cid, data in blocks:
        out += _varint(len(cid) + len(data)) + cid + data
    return out


def _cid(data: bytes) -> bytes:
    return DAG_CBOR_SHA256_PREFIX + hashlib.sha256(data).digest()


def _ambiguous_signature() -> bytes:
    while True:
        sig = os.urandom(64)
        if b"\xd8\x2a" in libipld.encode_dag_cbor({"sig": sig})[:8]:  # re-encoded as a link (tag 42)
            return sig


def _commit_bytes(sig: bytes) -> bytes:
    # DAG-CBOR as a PDS writes it: canonical key order, the signature as a byte string (major type 2).
    commit = {"did": "did:plc:abcdefghijklmnopqrstuvwx", "rev": "3lrnqk7qs2222", "sig": sig, "version": 3}
    return cbor2.dumps(commit, canonical=True)


def test_a_signature_that_parses_as_a_cid_does_not_fail_the_commit() -> None:
    raw = _commit_bytes(_ambiguous_signature())
    cid = _cid(raw)
    other = libipld.encode_dag_cbor({"x": 1})
    car = _car(cid, [(_cid(other), other), (cid, raw)])
    decoded = libipld.decode_car(car)[1][cid]
    assert block_digest_ok(cid, decoded) < 0  # re-encoding alone refuses it
    assert raw_block(car, cid) == raw
    assert commit_digest_ok(car, cid, decoded)


def test_a_tampered_commit_still_fails() -> None:
    raw = _commit_bytes(_ambiguous_signature())
    cid = _cid(raw)
    tampered = raw[:-1] + bytes([raw[-1] ^ 1])
    car = _car(cid, [(cid, tampered)])
    decoded = libipld.decode_car(car)[1][cid]
    assert not commit_digest_ok(car, cid, decoded)


@pytest.mark.parametrize("cut", [1, 5, 40])
def test_a_truncated_car_has_no_raw_block(cut: int) -> None:
    raw = _commit_bytes(os.urandom(64))
    cid = _cid(raw)
    car = _car(cid, [(cid, raw)])
    assert raw_block(car[:-cut], cid) is None
    assert raw_block(car, _cid(b"absent")) is None
