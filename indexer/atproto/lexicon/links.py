"""CID strings as the data model carries them in JSON: the `$link` of a CID link or a blob's `ref`, and the
`cid` of a legacy blob.

The Lexicon `cid` string format is a syntax check (`indexer.atproto.syntax.is_cid`, the interop syntax vectors
accept strings that do not decode). A link is more than that: it must decode as a CID, as the TypeScript
reference (`CID.parse`) and the Go one (`cid.Parse`) require before they accept a `$link`:

- `is_link`: a CIDv1 in multibase base32 (`b` prefix, lower case, RFC 4648 without padding, no stray trailing
  bits), whose bytes are `version=1, codec, multihash(code, length, digest)` with a digest of exactly
  `length` bytes and nothing after it. The data model writes every link this way; the sources print CIDs so.
  Codec and hash function are not restricted: the interop record vectors use a dag-cbor CID as a blob ref.
- `is_legacy_cid`: the same CIDv1 in base32 or base58btc (`z` prefix), the two bases the reference decodes
  without being told the base. CIDv0 (`Qm...`) is refused already by `is_cid`.

Both take any `str` and never raise.
"""

from __future__ import annotations

import re

__all__ = ["is_legacy_cid", "is_link"]

_BASE32 = re.compile(r"b[a-z2-7]{8,}").fullmatch
_BASE58 = re.compile(r"z[1-9A-HJ-NP-Za-km-z]{8,}").fullmatch
_B32_VALUES = {c: i for i, c in enumerate("abcdefghijklmnopqrstuvwxyz234567")}
_B58_VALUES = {c: i for i, c in enumerate("123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz")}
_MAX_LEN = 2048  # the reference's own bound on a `$link` string


def _base32(text: str) -> bytes | None:
    acc = 0
    bits = 0
    out = bytearray()
    for ch in text:
        acc = (acc << 5) | _B32_VALUES[ch]
        bits += 5
        if bits >= 8:
            bits -= 8
            out.append((acc >> bits) & 0xFF)
    # RFC 4648 without padding: what is left over must be fewer than 5 bits, all zero.
    if bits >= 5 or acc & ((1 << bits) - 1):
        return None
    return bytes(out)


def _base58(text: str) -> bytes:
    n = 0
    for ch in text:
        n = n * 58 + _B58_VALUES[ch]
    zeros = len(text) - len(text.lstrip("1"))
    return b"\x00" * zeros + (n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b"")


def _varint(data: bytes, pos: int) -> tuple[int, int] | None:
    value = 0
    for shift in range(0, 63, 7):
        if pos >= len(data):
            return None
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if byte == 0 and shift:  # over-long encoding
                return None
            return value, pos
    return None


def _is_cidv1(data: bytes) -> bool:
    parts: list[int] = []
    pos = 0
    for _ in range(4):  # version, codec, multihash code, digest length
        step = _varint(data, pos)
        if step is None:
            return False
        value, pos = step
        parts.append(value)
    return parts[0] == 1 and len(data) - pos == parts[3]


def is_link(value: str) -> bool:
    """A CID as a `$link` holds it: base32 CIDv1 that decodes."""
    if len(value) > _MAX_LEN or _BASE32(value) is None:
        return False
    data = _base32(value[1:])
    return data is not None and _is_cidv1(data)


def is_legacy_cid(value: str) -> bool:
    """The `cid` string of a legacy blob: a CIDv1 in base32 or base58btc that decodes."""
    if len(value) > _MAX_LEN:
        return False
    if _BASE58(value) is not None:
        return _is_cidv1(_base58(value[1:]))
    return is_link(value)
