"""Label parsing and signatures, against vectors made by the reference implementation: the labels below were
encoded with @atproto/common's `cborEncode` and signed with @atproto/crypto (`Secp256k1Keypair` and
`P256Keypair` imported from the same private key), exactly as tests/labeler/labeler.js signs its labels."""

from __future__ import annotations

from typing import Any

import pytest

from indexer.labels.label import Label, Refusal, label_key, labeler_endpoint, parse_label, signing_bytes, verify_label

LABEL: dict[str, Any] = {
    "ver": 1,
    "src": "did:plc:ar7c4by46qjdydhdevvrndac",
    "uri": "at://did:plc:ewvi7nxzyoun6zhxrhs64oiz/fm.plyr.track/3l3qo2vutsw2b",
    "cid": "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm",
    "val": "porn",
    "neg": False,
    "cts": "2026-11-30T12:00:00.000Z",
    "exp": "2027-01-01T00:00:00.000Z",
}
SIGNING_BYTES = bytes.fromhex(
    "a863636964783b6261667972656965353733376764786c7735693634767a69636863616c6261337a3276356e36696369667678"
    "3578797476736b65376d723368706d636374737818323032362d31312d33305431323a30303a30302e3030305a6365787078"
    "18323032372d30312d30315430303a30303a30302e3030305a636e6567f46373726378206469643a706c633a617237633462"
    "793436716a6479646864657676726e64616363757269784161743a2f2f6469643a706c633a65777669376e787a796f756e36"
    "7a687872687336346f697a2f666d2e706c79722e747261636b2f336c33716f32767574737732626376616c64706f726e6376"
    "657201"
)
K256 = "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme"
K256_SIG = bytes.fromhex(
    "17d6faba889ae447026e4e2e0ba58fc2dc8f5b6f36a09012ebf76cf73f1820671d7e0333c4f50228fa68acd559bceb2ef45a7f2e"
    "1910fd548124329400c2364d"
)
P256 = "did:key:zDnaexhwt5EdJEnhM7od5VWEjgw6ZRon65ZYJfRjr7LfN9RB7"
P256_SIG = bytes.fromhex(
    "3f7e0d66a909c4c493eb087f862549cab5c94ec590e6339601e9907cda61df043689a5826531b74b9db75700e4d7704af2a0202588"
    "23355131ccb46c3752b4f0"
)
# secp256k1's group order: n - s is the high-S twin of a valid signature, which atproto refuses.
K256_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def _parsed(**changes: Any) -> Label:
    value = {**LABEL, **changes}
    parsed = parse_label(value)
    assert isinstance(parsed, Label), parsed
    return parsed


def test_signing_bytes_match_the_reference_encoding() -> None:
    assert signing_bytes({**LABEL, "sig": K256_SIG}) == SIGNING_BYTES
    # Key order in the received map does not matter: DAG-CBOR sorts keys.
    assert signing_bytes(dict(reversed(list(LABEL.items())))) == SIGNING_BYTES


@pytest.mark.parametrize(("key", "sig"), [(K256, K256_SIG), (P256, P256_SIG)])
def test_reference_signatures_verify(key: str, sig: bytes) -> None:
    assert verify_label(_parsed(sig=sig), key)


@pytest.mark.parametrize(
    "changes",
    [{"val": "nudity"}, {"uri": LABEL["uri"] + "x"}, {"neg": True}, {"exp": "2027-01-01T00:00:01.000Z"}],
)
def test_any_changed_field_breaks_the_signature(changes: dict[str, Any]) -> None:
    assert not verify_label(_parsed(sig=K256_SIG, **changes), K256)


def test_wrong_key_and_wrong_curve_fail() -> None:
    assert not verify_label(_parsed(sig=K256_SIG), P256)
    assert not verify_label(_parsed(sig=P256_SIG), K256)


def test_high_s_twin_is_refused() -> None:
    r, s = K256_SIG[:32], int.from_bytes(K256_SIG[32:], "big")
    twin = r + (K256_ORDER - s).to_bytes(32, "big")
    assert not verify_label(_parsed(sig=twin), K256)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"ver": 2}, "label_malformed"),
        ({"ver": None}, "label_malformed"),
        ({"src": "nobody"}, "label_malformed"),
        ({"uri": "https://example.com/x"}, "label_malformed"),
        ({"val": ""}, "label_malformed"),
        ({"val": "x" * 129}, "label_malformed"),
        ({"val": "a\x00b"}, "label_malformed"),
        ({"cid": "not-a-cid"}, "label_malformed"),
        ({"neg": 1}, "label_malformed"),
        ({"cts": "yesterday"}, "label_malformed"),
        ({"exp": "2027-13-01T00:00:00Z"}, "label_malformed"),
        ({"sig": "abc"}, "label_malformed"),
        ({"extra": 1}, "label_malformed"),
        ({}, "label_unsigned"),
    ],
)
def test_malformed_labels_are_refused_with_a_reason(changes: dict[str, Any], reason: str) -> None:
    value = {**LABEL, **changes}
    if "sig" not in changes and reason != "label_unsigned":
        value["sig"] = K256_SIG
    value = {k: v for k, v in value.items() if v is not None}
    refused = parse_label(value)
    assert isinstance(refused, Refusal)
    assert refused.reason == reason


def test_not_a_map_is_refused() -> None:
    assert parse_label([1, 2]) == Refusal("label_malformed", "label is a list, not a map")


def test_account_level_label_on_a_did_is_accepted() -> None:
    parsed = _parsed(uri="did:plc:ewvi7nxzyoun6zhxrhs64oiz", sig=K256_SIG)
    assert parsed.uri.startswith("did:")
    assert not verify_label(parsed, K256)  # signed over another uri


def test_labeler_identity_from_a_did_document() -> None:
    did = "did:web:labeler.example"
    doc = {
        "id": did,
        "verificationMethod": [
            {"id": f"{did}#atproto", "type": "Multikey", "publicKeyMultibase": P256.removeprefix("did:key:")},
            {"id": "#atproto_label", "type": "Multikey", "publicKeyMultibase": K256.removeprefix("did:key:")},
        ],
        "service": [
            {"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": "https://pds.example"},
            {"id": f"{did}#atproto_labeler", "type": "AtprotoLabeler", "serviceEndpoint": "https://mod.example/"},
        ],
    }
    assert label_key(doc) == K256
    assert labeler_endpoint(doc) == "https://mod.example"
    assert label_key({"id": did, "verificationMethod": doc["verificationMethod"][:1]}) is None
    broken = {
        "id": did,
        "verificationMethod": [{"id": "#atproto_label", "type": "Multikey", "publicKeyMultibase": "zzz"}],
    }
    assert label_key(broken) is None
    assert labeler_endpoint({"id": did, "service": [{"id": "#atproto_labeler", "serviceEndpoint": "ftp://x"}]}) is None


def test_labelers_setting_is_strict() -> None:
    from indexer.settings import ConfigError, Settings

    env = {"PLYR_APPVIEW_LABELERS": f" {LABEL['src']}, did:web:mod.example ,{LABEL['src']}"}
    assert Settings.from_env(env).labelers == ("did:plc:ar7c4by46qjdydhdevvrndac", "did:web:mod.example")
    assert Settings.from_env({}).labelers == ()
    with pytest.raises(ConfigError, match="PLYR_APPVIEW_LABELERS"):
        Settings.from_env({"PLYR_APPVIEW_LABELERS": "did:plc:ar7c4by46qjdydhdevvrndac, mod.example"})
