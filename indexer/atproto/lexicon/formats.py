"""The Lexicon string formats (https://atproto.com/specs/lexicon#string-formats): the format-name table the
validator dispatches on, and the two formats that are Lexicon-only (`uri`, `language`).

The identifier formats (did, handle, at-identifier, nsid, tid, record-key, at-uri, cid, datetime) are
`indexer.atproto.syntax`, shared with the event sources; this module only names them.

Each check takes a `str` and returns a bool; none raises on any string. Where the written spec leaves an edge
case open, the checks follow the reference implementations (the TypeScript and Go atproto libraries) and the
shared interop test vectors.

All patterns are ASCII-only on purpose (no `\\d`, `\\w`, which match non-ASCII digits and letters in
Python) and are applied with `fullmatch`, since `$` would also accept a trailing newline.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from indexer.atproto.syntax import (
    is_at_identifier,
    is_at_uri,
    is_cid,
    is_datetime,
    is_did,
    is_handle,
    is_nsid,
    is_record_key,
    is_tid,
)

__all__ = ["FORMATS", "is_language", "is_uri"]

# --- uri --------------------------------------------------------------------------------------------------
# RFC 3986 scheme, then a non-empty remainder without whitespace or control characters. Non-ASCII is
# tolerated (IRI-style), as the TypeScript reference does. Max 8 KB.
_URI_ASCII = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*:[!-~]+").fullmatch  # same rule, cheaper class
_URI = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*:[^\s\x00-\x1f\x7f]+").fullmatch
_URI_MAX = 8192


def is_uri(value: str) -> bool:
    if len(value) > _URI_MAX:
        return False
    if value.isascii():
        return _URI_ASCII(value) is not None
    return _URI(value) is not None and _utf8_len_at_most(value, _URI_MAX)


def _utf8_len_at_most(value: str, limit: int) -> bool:
    try:
        return len(value.encode()) <= limit
    except UnicodeEncodeError:  # lone surrogate: not representable in the data model
        return False


# --- language ---------------------------------------------------------------------------------------------
# BCP 47 (RFC 5646) well-formedness. The primary language subtag must be lower case, as the atproto interop
# vectors require; later subtags are case-insensitive.
_LANG_IRREGULAR = frozenset(
    s.lower()
    for s in (
        "en-GB-oed", "i-ami", "i-bnn", "i-default", "i-enochian", "i-hak", "i-klingon", "i-lux",
        "i-mingo", "i-navajo", "i-pwn", "i-tao", "i-tay", "i-tsu", "sgn-BE-FR", "sgn-BE-NL", "sgn-CH-DE",
    )
)  # fmt: skip
_LANGTAG = re.compile(
    r"[a-z]{2,3}(?:-[a-zA-Z]{3}){0,3}"  # language, extlang
    r"(?:-[a-zA-Z]{4})?"  # script
    r"(?:-(?:[a-zA-Z]{2}|[0-9]{3}))?"  # region
    r"(?:-(?:[a-zA-Z0-9]{5,8}|[0-9][a-zA-Z0-9]{3}))*"  # variants
    r"(?:-[0-9a-wyzA-WYZ](?:-[a-zA-Z0-9]{2,8})+)*"  # extensions
    r"(?:-[xX](?:-[a-zA-Z0-9]{1,8})+)?"  # private use
    r"|[xX](?:-[a-zA-Z0-9]{1,8})+"  # private use only
).fullmatch
_LANG_MAX = 128


def is_language(value: str) -> bool:
    if len(value) > _LANG_MAX:
        return False
    if _LANGTAG(value) is None:
        return value.lower() in _LANG_IRREGULAR and value[0].islower()
    return value.count("-") < 2 or _no_repeated_subtags(value)


def _no_repeated_subtags(value: str) -> bool:
    """RFC 5646 §2.2.5 and §2.2.6: a variant or an extension singleton may not appear twice."""
    parts = value.lower().split("-")
    if parts[0] == "x":
        return True
    seen_variants: set[str] = set()
    seen_singletons: set[str] = set()
    in_extension = False
    for part in parts[1:]:
        if part == "x":
            break
        if len(part) == 1:
            if part in seen_singletons:
                return False
            seen_singletons.add(part)
            in_extension = True
        elif not in_extension and (len(part) >= 5 or (len(part) == 4 and part[0].isdigit())):
            if part in seen_variants:
                return False
            seen_variants.add(part)
    return True


FORMATS: dict[str, Callable[[str], bool]] = {
    "at-identifier": is_at_identifier,
    "at-uri": is_at_uri,
    "cid": is_cid,
    "datetime": is_datetime,
    "did": is_did,
    "handle": is_handle,
    "language": is_language,
    "nsid": is_nsid,
    "record-key": is_record_key,
    "tid": is_tid,
    "uri": is_uri,
}
