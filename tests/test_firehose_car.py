"""read_repo_car: a real getRepo CAR against an independent listing, and damaged CARs."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import libipld
import pytest

from indexer.atproto.repo.car import CarError, RepoCar, cid_str, read_repo_car
from indexer.events import Malformed
from tests.test_firehose_support import CORPUS, cid_of, make_car

REPO_CAR = CORPUS / "repo.car"


def goat_inspect(car: RepoCar) -> str:
    """The commit in `goat repo inspect`'s layout (the format of car_expected_commit.txt)."""
    c = car.commit
    return (
        f"ATProto Repo Spec Version: {c.version}\n"
        f"DID: {c.did}\n"
        f"Data CID: {c.data}\n"
        f"Prev CID: {c.prev if c.prev is not None else '<nil>'}\n"
        f"Revision: {c.rev}\n"
    )


def test_commit_matches_goat() -> None:
    car = read_repo_car(REPO_CAR.read_bytes())
    assert goat_inspect(car) == (CORPUS / "car_expected_commit.txt").read_text()
    assert car.commit.cid == cid_str(car.root)
    assert len(car.commit.sig) == 64 and car.commit.raw["sig"] == car.commit.sig


def test_listing_matches_goat() -> None:
    car = read_repo_car(REPO_CAR.read_bytes())
    got = [f"{r.collection}/{r.rkey}\t{r.cid}" for r in car.records()]
    assert got == (CORPUS / "car_expected_records.tsv").read_text().splitlines()


def test_records_are_rendered_and_filterable() -> None:
    car = read_repo_car(REPO_CAR.read_bytes())
    records = list(car.records())
    assert all(isinstance(r.record, dict) and r.record["$type"] == r.collection for r in records)
    likes = list(car.records(want=lambda c: c == "app.bsky.feed.like"))
    assert len(likes) == sum(r.collection == "app.bsky.feed.like" for r in records) > 0
    assert all(r.collection == "app.bsky.feed.like" for r in likes)


# --- damaged CARs ---------------------------------------------------------------------------------


def blocks_of(data: bytes) -> tuple[bytes, list[tuple[bytes, Any]]]:
    header, blocks = libipld.decode_car(data)
    return header["roots"][0], list(blocks.items())


def rebuild(root: bytes, blocks: list[tuple[bytes, Any]], drop: Collection[bytes] = ()) -> bytes:
    return make_car([root], [(cid, libipld.encode_dag_cbor(b)) for cid, b in blocks if cid not in drop])


def test_rebuilt_car_is_still_valid() -> None:
    # Guards the damage tests below: the rebuilding itself must not be what breaks the CAR.
    root, blocks = blocks_of(REPO_CAR.read_bytes())
    assert len(list(read_repo_car(rebuild(root, blocks)).records())) == 23


def test_tampered_block_is_detected() -> None:
    data = REPO_CAR.read_bytes()
    car = read_repo_car(data)
    profile = next(r for r in car.records() if r.collection == "app.bsky.actor.profile")
    assert isinstance(profile.record, dict)
    name = profile.record["displayName"].encode()
    assert data.count(name) == 1
    tampered = data.replace(name, name[:-1] + bytes([name[-1] ^ 0x01]))
    with pytest.raises(CarError) as e:
        read_repo_car(tampered)
    assert e.value.reason == "cid_mismatch"


def test_missing_record_block_is_detected_while_walking() -> None:
    root, blocks = blocks_of(REPO_CAR.read_bytes())
    car = read_repo_car(REPO_CAR.read_bytes())
    victim = next(r for r in car.records() if r.collection == "app.bsky.feed.like")
    damaged = read_repo_car(rebuild(root, blocks, {_raw(victim.cid)}))
    with pytest.raises(CarError) as e:
        list(damaged.records())
    assert e.value.reason == "missing_block" and victim.rkey in e.value.detail


def test_missing_mst_node_is_detected() -> None:
    root, blocks = blocks_of(REPO_CAR.read_bytes())
    commit = dict(blocks)[root]
    nodes = [cid for cid, b in blocks if isinstance(b, dict) and "e" in b and cid != commit["data"]]
    assert nodes, "the repo needs an MST deeper than one node for this test"
    damaged = read_repo_car(rebuild(root, blocks, {nodes[0]}))
    with pytest.raises(CarError) as e:
        list(damaged.records())
    assert e.value.reason == "missing_block"


def test_missing_commit_or_mst_root_is_refused() -> None:
    root, blocks = blocks_of(REPO_CAR.read_bytes())
    with pytest.raises(CarError) as e:
        read_repo_car(rebuild(root, blocks, {root}))
    assert e.value.reason == "missing_block"
    data_root = dict(blocks)[root]["data"]
    with pytest.raises(CarError) as e:
        read_repo_car(rebuild(root, blocks, {data_root}))
    assert e.value.reason == "missing_block"


@pytest.mark.parametrize("data", [b"", b"\x05hello", REPO_CAR.read_bytes()[:50]])
def test_garbage_is_refused(data: bytes) -> None:
    with pytest.raises(CarError) as e:
        read_repo_car(data)
    assert e.value.reason in ("invalid_car", "missing_block")


def single_node_repo(entries: list[tuple[bytes, bytes]], records: dict[bytes, Any]) -> bytes:
    node = libipld.encode_dag_cbor({"l": None, "e": [{"p": 0, "k": k, "v": v, "t": None} for k, v in entries]})
    commit = libipld.encode_dag_cbor(
        {
            "did": "did:plc:abc",
            "version": 3,
            "data": cid_of(node),
            "rev": "3mptbypluud2a",
            "prev": None,
            "sig": b"s" * 64,
        }
    )
    blocks = [(cid_of(commit), commit), (cid_of(node), node)]
    blocks += [(cid, libipld.encode_dag_cbor(rec)) for cid, rec in records.items()]
    return make_car([cid_of(commit)], blocks)


def test_out_of_order_mst_is_refused() -> None:
    rec = {"$type": "fm.plyr.like"}
    cid = cid_of(libipld.encode_dag_cbor(rec))
    ok = single_node_repo([(b"fm.plyr.like/a", cid), (b"fm.plyr.like/b", cid)], {cid: rec})
    assert [r.rkey for r in read_repo_car(ok).records()] == ["a", "b"]
    bad = single_node_repo([(b"fm.plyr.like/b", cid), (b"fm.plyr.like/a", cid)], {cid: rec})
    with pytest.raises(CarError) as e:
        list(read_repo_car(bad).records())
    assert e.value.reason == "invalid_mst"


def test_record_outside_the_data_model_is_reported_and_the_walk_goes_on() -> None:
    good = {"$type": "fm.plyr.like"}
    bad = {"$type": "fm.plyr.track", "bpm": 1.5}
    gcid, bcid = cid_of(libipld.encode_dag_cbor(good)), cid_of(libipld.encode_dag_cbor(bad))
    data = single_node_repo([(b"fm.plyr.like/a", gcid), (b"fm.plyr.track/b", bcid)], {gcid: good, bcid: bad})
    first, second = read_repo_car(data).records()
    assert first.record == good
    assert isinstance(second.record, Malformed) and second.record.reason == "invalid_record"
    assert second.record.did == "did:plc:abc"


def test_invalid_commit_is_refused() -> None:
    node = libipld.encode_dag_cbor({"l": None, "e": []})
    commit = libipld.encode_dag_cbor({"did": "did:plc:abc", "version": 9, "data": cid_of(node), "rev": "x", "sig": b""})
    data = make_car([cid_of(commit)], [(cid_of(commit), commit), (cid_of(node), node)])
    with pytest.raises(CarError) as e:
        read_repo_car(data)
    assert e.value.reason == "invalid_commit"


def _raw(cid: str) -> bytes:
    info = libipld.decode_cid(cid)
    digest: bytes = info["hash"]["digest"]
    return bytes((info["version"], info["codec"], info["hash"]["code"], info["hash"]["size"])) + digest
