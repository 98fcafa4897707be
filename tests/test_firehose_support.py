"""Fixtures shared by the firehose tests: the reference corpus, and builders for relay frames, CARs and signed
commits (so tampering cases can be made from a known-good starting point)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import libipld
import pytest
import zstandard
from atproto_crypto.consts import P256_CURVE_ORDER, SECP256K1_CURVE_ORDER
from atproto_crypto.did import format_multikey
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from indexer.atproto.repo.car import DAG_CBOR_SHA256_PREFIX
from indexer.atproto.repo.signatures import unsigned_commit_bytes
from indexer.capture.files import iter_capture

REFERENCE = Path(os.environ.get("PLYR_REFERENCE_DIR") or Path(__file__).resolve().parents[2] / "shared" / "reference")
CORPUS = REFERENCE / "corpus"
FRAMES = CORPUS / "frames.bin.zst"
T0 = "2026-07-04T14:38:07.517Z"
T0_US = 1783175887517000


@cache
def manifest() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((CORPUS / "manifest.json").read_text())
    return data


@cache
def corpus_frames() -> tuple[bytes, ...]:
    return tuple(frame for _, frame in iter_capture(FRAMES, strict=True))


@cache
def did_docs() -> dict[str, Any]:
    raw = zstandard.ZstdDecompressor().decompressobj().decompress((CORPUS / "did_docs.json.zst").read_bytes())
    docs: dict[str, Any] = json.loads(raw)
    return docs


def expected_v1() -> list[dict[str, Any]]:
    return [json.loads(line) for line in (CORPUS / "expected_v1.jsonl").read_text().splitlines() if line]


# --- CBOR / CAR builders --------------------------------------------------------------------------


def cid_of(data: bytes) -> bytes:
    return DAG_CBOR_SHA256_PREFIX + hashlib.sha256(data).digest()


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def make_car(roots: list[bytes], blocks: Iterable[tuple[bytes, bytes]]) -> bytes:
    """CARv1 bytes: header, then `varint(len) cid block` sections, in the given order."""
    header = libipld.encode_dag_cbor({"version": 1, "roots": roots})
    out = bytearray(varint(len(header)) + header)
    for cid, data in blocks:
        out += varint(len(cid) + len(data)) + cid + data
    return bytes(out)


def make_frame(header: dict[str, Any], body: Any) -> bytes:
    return libipld.encode_dag_cbor(header) + libipld.encode_dag_cbor(body)


def write_capture(path: Path, frames: Iterable[bytes], tail: bytes = b"") -> None:
    raw = b"".join(len(f).to_bytes(4, "little") + f for f in frames) + tail
    path.write_bytes(zstandard.ZstdCompressor().compress(raw))


# --- signing keys ---------------------------------------------------------------------------------


class Key:
    def __init__(self, curve: str = "secp256k1") -> None:
        if curve == "secp256k1":
            self._priv = ec.generate_private_key(ec.SECP256K1())
            self.alg, self._order = "ES256K", SECP256K1_CURVE_ORDER
        else:
            self._priv = ec.generate_private_key(ec.SECP256R1())
            self.alg, self._order = "ES256", P256_CURVE_ORDER
        point = self._priv.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        self.multikey = format_multikey(self.alg, point)

    def sign(self, data: bytes, *, low_s: bool = True) -> bytes:
        r, s = decode_dss_signature(self._priv.sign(data, ec.ECDSA(hashes.SHA256())))
        if (s > self._order // 2) == low_s:
            s = self._order - s
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")

    def did_doc(self, did: str, method_id: str | None = None) -> dict[str, Any]:
        return {
            "id": did,
            "verificationMethod": [
                {
                    "id": method_id or f"{did}#atproto",
                    "type": "Multikey",
                    "controller": did,
                    "publicKeyMultibase": self.multikey,
                }
            ],
        }


def sign_commit(commit: dict[str, Any], key: Key) -> dict[str, Any]:
    unsigned = {k: v for k, v in commit.items() if k != "sig"}
    return {**unsigned, "sig": key.sign(unsigned_commit_bytes(unsigned))}


# --- synthetic repos and commit frames ------------------------------------------------------------


@dataclass
class Op:
    action: str
    path: str
    record: dict[str, Any] | None = None


class FakeRepo:
    """A repo whose commits are real (signed, content-addressed) but whose MST is a single node: enough for a
    decoder that checks CIDs, paths and signatures, and easy to tamper with."""

    def __init__(self, did: str = "did:plc:testrepo2hcldzgr4nm6a4r", curve: str = "secp256k1") -> None:
        self.did = did
        self.key = Key(curve)

    @property
    def did_doc(self) -> dict[str, Any]:
        return self.key.did_doc(self.did)

    def commit_frame(
        self,
        ops: list[Op],
        *,
        seq: int = 1000,
        rev: str = "3mptbypluud2a",
        tree: dict[str, dict[str, Any]] | None = None,
        omit: Iterable[str] = (),
        swap: dict[str, dict[str, Any]] | None = None,
        op_cids: dict[str, bytes | None] | None = None,
        commit: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
    ) -> bytes:
        """A `#commit` frame for `ops`.

        `tree` holds other records already in the repo (in the MST, not in the CAR). Tampering hooks:
        `omit` paths whose record block (or "mst" / "commit") is left out of the CAR; `swap` replaces a
        path's record block content while keeping its CID; `op_cids` overrides an op's `cid`; `commit` and
        `body` override fields of the signed commit (before signing) and of the frame body."""
        records = dict(tree or {})
        for op in ops:
            if op.action == "delete":
                records.pop(op.path, None)
            else:
                assert op.record is not None
                records[op.path] = op.record
        cids = {path: cid_of(libipld.encode_dag_cbor(rec)) for path, rec in records.items()}
        mst = {
            "l": None,
            "e": [{"p": 0, "k": path.encode(), "v": cids[path], "t": None} for path in sorted(records)],
        }
        mst_bytes = libipld.encode_dag_cbor(mst)
        mst_cid = cid_of(mst_bytes)
        signed = sign_commit(
            {"did": self.did, "version": 3, "data": mst_cid, "rev": rev, "prev": None, **(commit or {})},
            self.key,
        )
        commit_bytes = libipld.encode_dag_cbor(signed)
        commit_cid = cid_of(commit_bytes)
        omitted = set(omit)
        blocks: list[tuple[bytes, bytes]] = []
        if "commit" not in omitted:
            blocks.append((commit_cid, commit_bytes))
        if "mst" not in omitted:
            blocks.append((mst_cid, mst_bytes))
        for op in ops:
            if op.action != "delete" and op.path not in omitted:
                content = (swap or {}).get(op.path, records[op.path])
                blocks.append((cids[op.path], libipld.encode_dag_cbor(content)))
        wire_ops = [
            {
                "action": op.action,
                "path": op.path,
                "cid": (op_cids or {}).get(op.path, None if op.action == "delete" else cids[op.path]),
            }
            for op in ops
        ]
        frame_body = {
            "seq": seq,
            "repo": self.did,
            "rev": rev,
            "since": None,
            "commit": commit_cid,
            "blocks": make_car([commit_cid], blocks),
            "ops": wire_ops,
            "blobs": [],
            "time": T0,
            "tooBig": False,
            "rebase": False,
            "prevData": None,
            **(body or {}),
        }
        return make_frame({"op": 1, "t": "#commit"}, frame_body)


TRACK_RECORD: dict[str, Any] = {
    "$type": "fm.plyr.track",
    "title": "Sacred Sands <live> & more",
    "artist": "Dianna Lopez",
    "audioUrl": "https://cdn.plyr.fm/audio/abc.mp3",
    "createdAt": "2026-07-04T14:38:06.240Z",
    "audioBlob": {
        "$type": "blob",
        "ref": cid_of(b"audio"),
        "mimeType": "audio/mpeg",
        "size": 4_812_345,
    },
    "waveform": b"\x00\x01\x02\xff",
    "album": {
        "uri": "at://did:plc:x/fm.plyr.list/3abc",
        "cid": "bafyreiftot7eltsc3f6g4qktykmbv6jcmdmhcx5osscan6jpdxkpqcmcza",
    },
    "previous": cid_of(b"previous version"),
    "duration": 241,
    "tags": ["ambient", None],
}


# --- the builders' own checks ---------------------------------------------------------------------


def test_make_car_round_trips_through_libipld() -> None:
    data = libipld.encode_dag_cbor({"a": 1})
    cid = cid_of(data)
    header, blocks = libipld.decode_car(make_car([cid], [(cid, data)]))
    assert header == {"version": 1, "roots": [cid]}
    assert blocks == {cid: {"a": 1}}


def test_fake_repo_frame_is_a_decodable_commit() -> None:
    repo = FakeRepo()
    frame = repo.commit_frame([Op("create", "fm.plyr.track/3mptbyplj5d2a", TRACK_RECORD)])
    header, body = libipld.decode_dag_cbor_multi(frame)
    assert header == {"op": 1, "t": "#commit"}
    _, blocks = libipld.decode_car(body["blocks"])
    assert blocks[body["commit"]]["did"] == repo.did
    assert len(blocks) == 3  # commit, MST node, record


@pytest.mark.parametrize("curve", ["secp256k1", "p256"])
def test_key_signatures_are_low_s_unless_asked(curve: str) -> None:
    key = Key(curve)
    order = SECP256K1_CURVE_ORDER if curve == "secp256k1" else P256_CURVE_ORDER
    assert int.from_bytes(key.sign(b"x")[32:], "big") <= order // 2
    assert int.from_bytes(key.sign(b"x", low_s=False)[32:], "big") > order // 2
