"""ATProto identifier syntax: DID, handle, NSID, TID, record key, AT-URI, CID and datetime.

This module is the one definition of these syntaxes for the whole indexer: the Jetstream parser, the relay
firehose decoder, the lexicon validator and the fold all call these checks, so an identifier is accepted by
every source or by none. Specs: https://atproto.com/specs/did, /handle, /nsid, /tid, /record-key,
/at-uri-format, /data-model (CIDs) and /lexicon#datetime. The shared interop vectors
(tests/interop/syntax/) are the test of record.

Each check takes a `str` and returns a bool; none raises on any string, including non-ASCII and lone
surrogates. They are syntax checks only: a syntactically valid DID or handle may still fail to resolve.

Where the written spec leaves an edge case open, the checks follow the reference implementations (the
TypeScript and Go atproto libraries) and the interop vectors. Where those two implementations disagree, the
more permissive one is followed: records one of them accepted may already be on the network and must be
indexed.

These run once or more per event on every source, so each is one precompiled `fullmatch` plus at most a
length comparison. All patterns are ASCII-only on purpose (no `\\d`, `\\w`, which match non-ASCII digits and
letters in Python) and are applied with `fullmatch`, since `$` would also accept a trailing newline.
"""

from __future__ import annotations

import re

__all__ = [
    "is_at_identifier",
    "is_at_uri",
    "is_base32_cid",
    "is_cid",
    "is_datetime",
    "is_did",
    "is_handle",
    "is_nsid",
    "is_record_key",
    "is_tid",
]

# --- tid ------------------------------------------------------------------------------------------------
# 13 chars of base32-sortable; the first char is limited so that the top bit of the 64-bit value stays 0.
_TID = re.compile(r"[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}").fullmatch


def is_tid(value: str) -> bool:
    return _TID(value) is not None


# --- record-key -----------------------------------------------------------------------------------------
_RECORD_KEY = re.compile(r"[a-zA-Z0-9_~.:-]{1,512}").fullmatch


def is_record_key(value: str) -> bool:
    # "." and ".." would be path traversal in at:// URIs and HTTP paths.
    return _RECORD_KEY(value) is not None and value != "." and value != ".."


# --- did --------------------------------------------------------------------------------------------------
# Same character set as the reference implementations; they do not require "%" to be followed by two hex
# digits, so neither do we. Method-specific rules (did:plc, did:web) are the resolver's business.
_DID_PATTERN = r"did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]"
_DID = re.compile(_DID_PATTERN).fullmatch
_DID_MAX = 2048


def is_did(value: str) -> bool:
    return len(value) <= _DID_MAX and _DID(value) is not None


# --- handle -----------------------------------------------------------------------------------------------
# DNS hostname rules (RFC 1035/1123): labels of 1-63 chars, no leading or trailing hyphen, at least two
# labels, and a TLD that does not start with a digit (which also rules out IPv4 addresses). Disallowed TLDs
# (.local, .arpa, ...) are syntactically valid; refusing them is up to resolution.
_HANDLE_PATTERN = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
_HANDLE = re.compile(_HANDLE_PATTERN).fullmatch
_HANDLE_MAX = 253


def is_handle(value: str) -> bool:
    return len(value) <= _HANDLE_MAX and _HANDLE(value) is not None


def is_at_identifier(value: str) -> bool:
    """A DID or a handle (the authority of an AT-URI, the `actor` of most queries)."""
    if value.startswith("did:"):
        return is_did(value)
    return is_handle(value)


# --- nsid -------------------------------------------------------------------------------------------------
# Reversed domain authority (hostname rules, first label starts with a letter, at least two labels) followed
# by a name segment made of letters and digits only, starting with a letter: three segments at least, so
# "a.b" is not an NSID.
_NSID_PATTERN = (
    r"[a-zA-Z](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
    r"(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)+"
    r"\.[a-zA-Z][a-zA-Z0-9]{0,62}"
)
_NSID = re.compile(_NSID_PATTERN).fullmatch
# 253 for the domain authority, a dot, 63 for the name. The 253 limit on the authority alone is not
# enforced separately: the interop vectors accept a longer one as long as the total fits.
_NSID_MAX = 317


def is_nsid(value: str) -> bool:
    return len(value) <= _NSID_MAX and _NSID(value) is not None


# --- cid --------------------------------------------------------------------------------------------------
# The Lexicon `cid` format only asks for a syntax check: a multibase-encoded CIDv1 in any base. CIDv0
# ("Qm...", bare base58) is not allowed in atproto.
_CID = re.compile(r"[a-zA-Z0-9+=]{8,256}").fullmatch


def is_cid(value: str) -> bool:
    return _CID(value) is not None and not value.startswith("Qm")


# The string form of a CID that the data model prescribes for `$link` and that every source emits for a
# record's CID: multibase base32 (RFC 4648 alphabet, lower case, "b" prefix), within the `is_cid` length
# bounds. The relay firehose carries CIDs as bytes and they are printed this way; a CID string in another
# base would not compare equal to the same CID from there.
_BASE32_CID = re.compile(r"b[a-z2-7]{7,255}").fullmatch


def is_base32_cid(value: str) -> bool:
    return _BASE32_CID(value) is not None


# --- at-uri -----------------------------------------------------------------------------------------------
# Lexicon "at-uri" is the restricted form: at://AUTHORITY[/COLLECTION[/RKEY]], no trailing slash, no query.
# The TypeScript reference also accepts a JSON-pointer fragment ("#/..."), so we do too.
_AT_URI_FRAGMENT = r"(?:#/[a-zA-Z0-9._~:@!$&%')(*+,;=\[\]/\\-]*)?"
_AT_URI = re.compile(
    r"at://(?P<authority>[a-zA-Z0-9._:%-]+)"
    r"(?:/(?P<collection>[a-zA-Z0-9.-]+)(?:/(?P<rkey>[a-zA-Z0-9_~.:-]+))?)?" + _AT_URI_FRAGMENT
).fullmatch
# The same grammar as one pattern, with the component patterns inlined. It cannot express the component
# length limits, which only matter once the URI is longer than "at://" plus the shortest of them (a
# 253-char handle); below that it is exact, and it is what strongRefs on every like and list item hit.
_AT_URI_SHORT = re.compile(
    rf"at://(?:{_DID_PATTERN}|{_HANDLE_PATTERN})"
    rf"(?:/{_NSID_PATTERN}(?:/(?!\.\.?(?:#|\Z))[a-zA-Z0-9_~.:-]+)?)?" + _AT_URI_FRAGMENT
).fullmatch
_AT_URI_SHORT_MAX = len("at://") + _HANDLE_MAX
_AT_URI_MAX = 8192


def is_at_uri(value: str) -> bool:
    if len(value) <= _AT_URI_SHORT_MAX:
        return _AT_URI_SHORT(value) is not None
    if len(value) > _AT_URI_MAX:
        return False
    m = _AT_URI(value)
    if m is None:
        return False
    authority, collection, rkey = m.group("authority", "collection", "rkey")
    if not is_at_identifier(authority):
        return False
    if collection is not None and not is_nsid(collection):
        return False
    return rkey is None or is_record_key(rkey)


# --- datetime ---------------------------------------------------------------------------------------------
# The intersection of RFC 3339 and ISO 8601: "T" and "Z" upper case, whole seconds required, any number of
# fractional digits, a mandatory timezone ("Z" or +hh:mm / -hh:mm; "-00:00" is forbidden by ISO 8601).
# The calendar is checked by the pattern itself (days per month, Feb 29 only in leap years) so that a valid
# value costs one regex match and nothing else. Leap seconds (":60") are rejected like the reference
# implementations do.
_LEAP_YEAR = r"(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)"
_MONTH_DAY = (
    r"(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])"
    r"|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)"
    r"|02-(?:0[1-9]|1[0-9]|2[0-8]))"
)
_HHMM = r"(?:[01][0-9]|2[0-3]):[0-5][0-9]"
_DATETIME = re.compile(
    rf"(?:[0-9]{{4}}-{_MONTH_DAY}|{_LEAP_YEAR}-02-29)"
    rf"T{_HHMM}:[0-5][0-9](?:\.[0-9]+)?"
    rf"(?:Z|\+{_HHMM}|-(?!00:00){_HHMM})"
).fullmatch
_DATETIME_MAX = 64


def is_datetime(value: str) -> bool:
    if len(value) > _DATETIME_MAX or _DATETIME(value) is None:
        return False
    if value.startswith("0000-01-01T") and value[-6] == "+":
        # A positive offset on the first day of year 0 can normalize to a negative (BCE) instant.
        local = int(value[11:13]) * 3600 + int(value[14:16]) * 60 + int(value[17:19])
        offset = int(value[-5:-3]) * 3600 + int(value[-2:]) * 60
        return local >= offset
    return True
