"""Validate records against their Lexicon schema.

The lexicon documents are compiled once, at load time, into nested closures: one per field, capturing only
the constraints that field has. Validating a record then runs those closures over the record's JSON data
model form (what Jetstream delivers: blobs as `{"$type": "blob", "ref": {"$link": ...}, ...}`, CID links
as `{"$link": ...}`, bytes as `{"$bytes": ...}`).

On the valid path nothing is built except regex match objects and the UTF-8 encoding of non-ASCII strings
that carry a length limit. A failing check returns an `_Err` whose path is filled in while the call stack
unwinds, so the path and the message are only built for invalid data.

Semantics follow https://atproto.com/specs/lexicon:
- objects are open: properties not in the schema are accepted (forward compatibility);
- unions are open unless `closed: true`: a `$type` not listed is accepted without further checks;
- `knownValues` is advisory, any string is accepted;
- string `maxLength`/`minLength` count UTF-8 bytes, `maxGraphemes`/`minGraphemes` extended grapheme
  clusters; array `maxLength`/`minLength` count items; bytes `maxLength`/`minLength` count decoded bytes;
- integers are 64-bit signed; booleans are not integers. A JSON number with a zero fraction (`180.0`) is
  the integer 180, as the interop data-model vectors have it; any other fraction is refused;
- a CID link (`{"$link": ...}`, a blob's `ref`) must decode as a CIDv1 (`links.is_link`);
- a blob has exactly its four keys, a non-empty `mimeType` and a positive `size`; a legacy blob exactly
  `cid` and `mimeType`, its CID decodable;
- a union member names a main def by its bare NSID; the `#main` spelling is refused.

Where this departs from the reference implementation (`@atproto/lexicon`), the written spec is followed;
each such case is listed, with its reason, in docs/lexicon-conformance.md.
"""

from __future__ import annotations

import re
import reprlib
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import msgspec
import regex

from indexer.atproto.lexicon.formats import FORMATS
from indexer.atproto.lexicon.links import is_legacy_cid, is_link
from indexer.atproto.lexicon.loader import Document, LexiconError, load_documents
from indexer.atproto.syntax import is_cid, is_nsid, is_record_key, is_tid

__all__ = ["Invalid", "Validator"]


class Invalid(msgspec.Struct, frozen=True):
    """Why a record was rejected: the first problem found."""

    collection: str
    path: str  # "title", "features[2].did", "$type", "rkey"; "" for the record as a whole
    rule: str  # "maxLength", "required", "format:datetime", "type", "$type", "key", ...
    message: str  # a human sentence about the value at `path`

    def __str__(self) -> str:
        if self.path:
            return f"{self.collection}: {self.path}: {self.message} ({self.rule})"
        return f"{self.collection}: {self.message} ({self.rule})"


class _Err:
    """Internal failure report. `path` collects segments innermost first while the checks return."""

    __slots__ = ("message", "path", "rule")

    def __init__(self, rule: str, message: str) -> None:
        self.rule = rule
        self.message = message
        self.path: list[str] = []

    def at(self, segment: str) -> _Err:
        self.path.append(segment)
        return self


Check = Callable[[Any], "_Err | None"]

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_NO_CONST = object()
_BASE64 = re.compile(r"[A-Za-z0-9+/]*").fullmatch


def _join(segments: list[str]) -> str:
    out = ""
    for seg in reversed(segments):
        if seg.startswith("["):
            out += seg
        elif out:
            out = f"{out}.{seg}"
        else:
            out = seg
    return out


# A bounded repr: the offending value of a hostile record can be megabytes (or a huge int, whose full repr
# raises past 4300 digits); only its first characters end up in the message anyway.
class _ShortRepr(reprlib.Repr):
    def repr_int(self, x: int, level: int) -> str:
        return f"<integer of {x.bit_length()} bits>" if x.bit_length() > 128 else repr(x)


_SHORT_REPR = _ShortRepr()
_SHORT_REPR.maxlevel = 2
_SHORT_REPR.maxstring = _SHORT_REPR.maxother = 80
_SHORT_REPR.maxlong = 40
for _attr in ("maxlist", "maxtuple", "maxdict", "maxset", "maxfrozenset", "maxdeque", "maxarray"):
    setattr(_SHORT_REPR, _attr, 4)


def _show(value: object, limit: int = 64) -> str:
    text = _SHORT_REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _graphemes_at_least(count: int) -> Callable[[str], object]:
    # Matches only if the string has at least `count` grapheme clusters; stops reading after that many.
    pattern: Callable[[str], object] = regex.compile(rf"\X{{{count}}}").match
    return pattern


def _utf8_len(value: str) -> int:
    """UTF-8 length, or -1 when the string holds a lone surrogate (not valid in the data model). Strings
    decoded by Python's json module can carry those; msgspec rejects them."""
    if value.isascii():
        return len(value)
    try:
        return len(value.encode())
    except UnicodeEncodeError:
        return -1


# --- leaf types -------------------------------------------------------------------------------------------


def _string(d: Document, where: str) -> Check:
    const = d.get("const", _NO_CONST)
    if const is not _NO_CONST and not isinstance(const, str):
        raise LexiconError(f"{where}: string const must be a string")
    enum = _opt_list(d, "enum", str, where)
    enum_set = frozenset(enum) if enum is not None else None
    max_bytes = _opt_int(d, "maxLength", where)
    min_bytes = _opt_int(d, "minLength", where)
    max_g = _opt_int(d, "maxGraphemes", where)
    min_g = _opt_int(d, "minGraphemes", where)
    fmt_name = d.get("format")
    fmt: Callable[[str], bool] | None = None
    if fmt_name is not None:
        if fmt_name not in FORMATS:
            raise LexiconError(f"{where}: unknown string format {fmt_name!r}")
        fmt = FORMATS[fmt_name]
    fmt_rule = f"format:{fmt_name}"

    hi = sys.maxsize if max_bytes is None else max_bytes
    lo = 0 if min_bytes is None else min_bytes
    g_hi = sys.maxsize if max_g is None else max_g
    g_lo = 0 if min_g is None else min_g
    too_many_g = _graphemes_at_least(g_hi + 1) if max_g is not None else None
    enough_g = _graphemes_at_least(g_lo) if g_lo > 0 else None
    has_value_rules = const is not _NO_CONST or enum_set is not None

    plain = not has_value_rules and hi == sys.maxsize and lo == 0 and g_hi == sys.maxsize and enough_g is None
    if fmt is not None and plain:
        # The common "format only" string. Every format pattern is ASCII-only except uri, whose check
        # rejects lone surrogates itself, so a value that passes needs no UTF-8 check.
        format_check = fmt

        def check_format(v: Any) -> _Err | None:
            if not isinstance(v, str):
                return _Err("type", "must be a string")
            if format_check(v):
                return None
            return _Err(fmt_rule, f"must be a valid {fmt_name}, got {_show(v)}")

        return check_format

    def check(v: Any) -> _Err | None:
        if not isinstance(v, str):
            return _Err("type", "must be a string")
        if has_value_rules:
            if const is not _NO_CONST and v != const:
                return _Err("const", f"must be {const!r}, got {_show(v)}")
            if enum_set is not None and v not in enum_set:
                return _Err("enum", f"must be one of {_show(enum, 120)}, got {_show(v)}")
        # Each code point is at least one byte: an over-long string is rejected without encoding it.
        n = len(v) if v.isascii() or len(v) > hi else _utf8_len(v)
        if n < 0:
            return _Err("utf8", "must be valid Unicode (contains a lone surrogate)")
        if n > hi:
            return _Err("maxLength", f"must be at most {hi} bytes")
        if n < lo:
            return _Err("minLength", f"must be at least {lo} bytes")
        # A string has at most as many grapheme clusters as code points: count only when that bound
        # does not already settle it.
        if len(v) > g_hi and too_many_g is not None and too_many_g(v) is not None:
            return _Err("maxGraphemes", f"must be at most {g_hi} graphemes")
        if enough_g is not None and (len(v) < g_lo or enough_g(v) is None):
            return _Err("minGraphemes", f"must be at least {g_lo} graphemes")
        if fmt is not None and not fmt(v):
            return _Err(fmt_rule, f"must be a valid {fmt_name}, got {_show(v)}")
        return None

    return check


def _integer(d: Document, where: str) -> Check:
    const = d.get("const", _NO_CONST)
    if const is not _NO_CONST and type(const) is not int:
        raise LexiconError(f"{where}: integer const must be an integer")
    enum = _opt_list(d, "enum", int, where)
    enum_set = frozenset(enum) if enum is not None else None
    minimum = _opt_int(d, "minimum", where)
    maximum = _opt_int(d, "maximum", where)
    lo = _INT64_MIN if minimum is None else max(minimum, _INT64_MIN)
    hi = _INT64_MAX if maximum is None else min(maximum, _INT64_MAX)
    has_value_rules = const is not _NO_CONST or enum_set is not None

    def out_of_range(v: int) -> _Err:
        if minimum is not None and v < minimum:
            return _Err("minimum", f"must be at least {minimum}, got {_show(v)}")
        if maximum is not None and v > maximum:
            return _Err("maximum", f"must be at most {maximum}, got {_show(v)}")
        return _Err("type", "must be a 64-bit signed integer")

    def check(v: Any) -> _Err | None:
        # `type(...) is int` rather than isinstance: bool is a subclass of int.
        if type(v) is not int:
            v = _integral(v)
            if v is None:
                return _Err("type", "must be an integer")
        if v < lo or v > hi:
            return out_of_range(v)
        if has_value_rules:
            if const is not _NO_CONST and v != const:
                return _Err("const", f"must be {const}, got {_show(v)}")
            if enum_set is not None and v not in enum_set:
                return _Err("enum", f"must be one of {_show(enum, 120)}, got {_show(v)}")
        return None

    return check


def _integral(v: Any) -> int | None:
    """A JSON number written with a zero fraction (`180.0`, `1e3`) is an integer in the data model; msgspec
    hands it over as a float. Anything else is not an integer."""
    if type(v) is float and v.is_integer():
        return int(v)
    return None


def _boolean(d: Document, where: str) -> Check:
    const = d.get("const", _NO_CONST)
    if const is not _NO_CONST and type(const) is not bool:
        raise LexiconError(f"{where}: boolean const must be a boolean")

    def check(v: Any) -> _Err | None:
        if type(v) is not bool:
            return _Err("type", "must be a boolean")
        if const is not _NO_CONST and v is not const:
            return _Err("const", f"must be {str(const).lower()}")
        return None

    return check


def _token(full_name: str) -> Check:
    # A reference to a token def is satisfied by the token's own name.
    def check(v: Any) -> _Err | None:
        if not isinstance(v, str) or v != full_name:
            return _Err("const", f"must be {full_name!r}")
        return None

    return check


def _cid_link(d: Document, where: str) -> Check:
    def check(v: Any) -> _Err | None:
        if not isinstance(v, dict) or len(v) != 1:
            return _Err("type", 'must be a CID link ({"$link": cid})')
        link = v.get("$link")
        if not isinstance(link, str):
            return _Err("type", 'must be a CID link ({"$link": cid})')
        if not is_link(link):
            return _Err("format:cid", f"must be a CID, got {_show(link)}").at("$link")
        return None

    return check


def _bytes(d: Document, where: str) -> Check:
    max_len = _opt_int(d, "maxLength", where)
    min_len = _opt_int(d, "minLength", where)
    hi = sys.maxsize if max_len is None else max_len
    lo = 0 if min_len is None else min_len

    def check(v: Any) -> _Err | None:
        if not isinstance(v, dict) or len(v) != 1:
            return _Err("type", 'must be a bytes object ({"$bytes": base64})')
        data = v.get("$bytes")
        if not isinstance(data, str):
            return _Err("type", 'must be a bytes object ({"$bytes": base64})')
        # The data model uses unpadded standard base64; padding is tolerated when it is well-formed.
        body = data.rstrip("=")
        pad = len(data) - len(body)
        if pad > 2 or (pad and len(data) % 4) or len(body) % 4 == 1 or _BASE64(body) is None:
            return _Err("format:base64", "must be base64-encoded").at("$bytes")
        n = len(body) * 3 // 4
        if n > hi:
            return _Err("maxLength", f"must be at most {hi} bytes")
        if n < lo:
            return _Err("minLength", f"must be at least {lo} bytes")
        return None

    return check


def _blob(d: Document, where: str) -> Check:
    accept = _opt_list(d, "accept", str, where)
    max_size = _opt_int(d, "maxSize", where)
    exact: frozenset[str] = frozenset()
    prefixes: tuple[str, ...] = ()
    accept_all = accept is None
    if accept is not None:
        patterns = [a.strip().lower() for a in accept]
        accept_all = "*/*" in patterns or "*" in patterns
        exact = frozenset(p for p in patterns if not p.endswith("/*"))
        prefixes = tuple(p[:-1] for p in patterns if p.endswith("/*"))
    accept_text = ", ".join(accept or ())

    def mime_ok(mime: str) -> bool:
        if mime in exact or mime.startswith(prefixes):
            return True
        # MIME types are case-insensitive and may carry parameters; normalize only when the raw value
        # did not already match.
        base = mime.split(";", 1)[0].strip().lower()
        return base in exact or base.startswith(prefixes)

    bad_shape = 'must be a blob ({"$type": "blob", "ref": {"$link": cid}, "mimeType": str, "size": int})'

    def check(v: Any) -> _Err | None:
        if not isinstance(v, dict):
            return _Err("type", bad_shape)
        kind = v.get("$type")
        size: int | None
        if kind == "blob":
            ref = v.get("ref")
            if not isinstance(ref, dict) or len(ref) != 1 or not isinstance(ref.get("$link"), str):
                return _Err("type", 'must be a CID link ({"$link": cid})').at("ref")
            if not is_link(ref["$link"]):
                return _Err("format:cid", f"must be a CID, got {_show(ref['$link'])}").at("$link").at("ref")
            raw_size = v.get("size")
            size = raw_size if type(raw_size) is int else _integral(raw_size)
            # The data model: "size (integer, required, positive, non-zero)".
            if size is None or size <= 0 or size > _INT64_MAX:
                return _Err("type", "must be a positive integer").at("size")
        elif kind is None and "cid" in v:
            # Legacy blob form, still found in old records: a CID string and a MIME type, no size.
            cid = v.get("cid")
            if not isinstance(cid, str) or not is_cid(cid) or not is_legacy_cid(cid):
                return _Err("format:cid", f"must be a CID, got {_show(cid)}").at("cid")
            size = None
        else:
            return _Err("type", bad_shape)
        mime = v.get("mimeType")
        if not isinstance(mime, str) or not mime:
            return _Err("type", "must be a non-empty string").at("mimeType")
        # Exactly those keys (four, or two for the legacy form), as both reference implementations read a blob.
        if len(v) != (2 if size is None else 4):
            return _Err("type", "must have no keys besides $type, ref, mimeType and size (cid, mimeType if legacy)")
        if not accept_all and not mime_ok(mime):
            return _Err("accept", f"must match one of {accept_text}, got {_show(mime)}").at("mimeType")
        if max_size is not None and size is not None and size > max_size:
            return _Err("maxSize", f"must be at most {max_size} bytes, got {size}").at("size")
        return None

    return check


def _unknown(d: Document, where: str) -> Check:
    def check(v: Any) -> _Err | None:
        if not isinstance(v, dict):
            return _Err("type", "must be an object")
        # Bytes, CID links and blobs have their own lexicon types; "unknown" means a plain data object.
        if len(v) == 1 and ("$bytes" in v or "$link" in v):
            return _Err("type", "must be an object, not bytes or a CID link")
        kind = v.get("$type")
        if kind is not None and (not isinstance(kind, str) or not kind):
            return _Err("type", "must be a non-empty string").at("$type")
        if kind == "blob":
            return _Err("type", "must be an object, not a blob")
        return None

    return check


# --- schema helpers ---------------------------------------------------------------------------------------


def _opt_int(d: Document, key: str, where: str) -> int | None:
    value = d.get(key)
    if value is not None and type(value) is not int:
        raise LexiconError(f"{where}: {key} must be an integer")
    return value


def _opt_list(d: Document, key: str, item_type: type, where: str) -> list[Any] | None:
    value = d.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(type(x) is item_type for x in value):
        raise LexiconError(f"{where}: {key} must be a list of {item_type.__name__}")
    return value


def _str_list(d: Document, key: str, where: str) -> list[str]:
    value = _opt_list(d, key, str, where)
    return [] if value is None else value


# --- compiler ---------------------------------------------------------------------------------------------


class _Compiler:
    """Turns lexicon defs into checks. Each named def is compiled once and shared by every place that
    references it; a recursive def goes through a forwarding closure until its own check exists."""

    def __init__(self, documents: Mapping[str, Document]) -> None:
        self._documents = documents
        self._by_ref: dict[str, Check] = {}

    def resolve(self, ref: object, nsid: str, where: str) -> tuple[str, str]:
        if not isinstance(ref, str) or not ref:
            raise LexiconError(f"{where}: invalid ref {ref!r}")
        if ref.startswith("#"):
            return nsid, ref[1:]
        base, _, name = ref.partition("#")
        return base, name or "main"

    def named(self, nsid: str, name: str, where: str) -> Check:
        key = f"{nsid}#{name}"
        found = self._by_ref.get(key)
        if found is not None:
            return found
        doc = self._documents.get(nsid)
        if doc is None:
            raise LexiconError(f"{where}: reference to unknown lexicon {nsid!r}")
        definition = doc["defs"].get(name)
        if definition is None:
            raise LexiconError(f"{where}: reference to unknown def {key!r}")
        cell: list[Check] = []

        def forward(v: Any) -> _Err | None:
            return cell[0](v)

        self._by_ref[key] = forward
        if definition.get("type") == "token":
            check = _token(nsid if name == "main" else key)
        elif definition.get("type") == "record":
            check = self.field(definition.get("record"), nsid, key)
        else:
            check = self.field(definition, nsid, key)
        cell.append(check)
        self._by_ref[key] = check
        return check

    def field(self, d: Any, nsid: str, where: str) -> Check:
        if not isinstance(d, dict):
            raise LexiconError(f"{where}: a schema must be an object")
        kind = d.get("type")
        if not isinstance(kind, str):
            raise LexiconError(f"{where}: missing or invalid 'type'")
        if kind == "object":
            return self.object(d, nsid, where)
        if kind == "array":
            return self.array(d, nsid, where)
        if kind == "ref":
            return self.named(*self.resolve(d.get("ref"), nsid, where), where)
        if kind == "union":
            return self.union(d, nsid, where)
        leaf = _LEAVES.get(kind)
        if leaf is None:
            raise LexiconError(f"{where}: unsupported type {kind!r}")
        return leaf(d, where)

    def object(self, d: Document, nsid: str, where: str) -> Check:
        properties = d.get("properties", {})
        if not isinstance(properties, dict):
            raise LexiconError(f"{where}: properties must be an object")
        required = tuple(_str_list(d, "required", where))
        nullable = frozenset(_str_list(d, "nullable", where))
        props = tuple((name, self.field(schema, nsid, f"{where}.{name}")) for name, schema in properties.items())

        def check(v: Any) -> _Err | None:
            if not isinstance(v, dict):
                return _Err("type", "must be an object")
            for name in required:
                if name not in v:
                    return _Err("required", "is required").at(name)
            for name, prop in props:
                x = v.get(name)
                if x is None:
                    # Absent, or an explicit null (allowed only for "nullable" properties).
                    if name in v and name not in nullable:
                        return _Err("type", "must not be null").at(name)
                    continue
                err = prop(x)
                if err is not None:
                    return err.at(name)
            return None

        return check

    def array(self, d: Document, nsid: str, where: str) -> Check:
        item = self.field(d.get("items"), nsid, f"{where}[]")
        max_len = _opt_int(d, "maxLength", where)
        min_len = _opt_int(d, "minLength", where)
        hi = sys.maxsize if max_len is None else max_len
        lo = 0 if min_len is None else min_len

        def check(v: Any) -> _Err | None:
            if not isinstance(v, list):
                return _Err("type", "must be an array")
            n = len(v)
            if n > hi:
                return _Err("maxLength", f"must have at most {hi} items")
            if n < lo:
                return _Err("minLength", f"must have at least {lo} items")
            for i, x in enumerate(v):
                err = item(x)
                if err is not None:
                    return err.at(f"[{i}]")
            return None

        return check

    def union(self, d: Document, nsid: str, where: str) -> Check:
        refs = _opt_list(d, "refs", str, where)
        if refs is None:
            raise LexiconError(f"{where}: union without refs")
        closed = d.get("closed", False) is True
        table: dict[str, Check] = {}
        for ref in refs:
            target, name = self.resolve(ref, nsid, where)
            member = self.named(target, name, where)
            # "$type" names a main def by its bare NSID only: the spec calls the "#main" spelling invalid in
            # data (the reference accepts it; docs/lexicon-conformance.md).
            table[target if name == "main" else f"{target}#{name}"] = member
        listed = ", ".join(refs)

        def check(v: Any) -> _Err | None:
            if not isinstance(v, dict):
                return _Err("type", "must be an object")
            kind = v.get("$type")
            if not isinstance(kind, str):
                if kind is None:
                    return _Err("required", "is required in a union member").at("$type")
                return _Err("type", "must be a string").at("$type")
            member = table.get(kind)
            if member is None:
                if closed:
                    return _Err("closed", f"must be one of {listed}, got {_show(kind)}").at("$type")
                return None
            return member(v)

        return check


_LEAVES: dict[str, Callable[[Document, str], Check]] = {
    "string": _string,
    "integer": _integer,
    "boolean": _boolean,
    "blob": _blob,
    "bytes": _bytes,
    "cid-link": _cid_link,
    "unknown": _unknown,
}


def _key_rule(key: Any, where: str) -> tuple[Callable[[str], bool], str]:
    if key is None or key == "any":
        return is_record_key, "a valid record key"
    if key == "tid":
        return is_tid, "a TID"
    if key == "nsid":
        return is_nsid, "an NSID"
    if isinstance(key, str) and key.startswith("literal:"):
        literal = key.removeprefix("literal:")
        if not is_record_key(literal):
            raise LexiconError(f"{where}: invalid literal record key {literal!r}")
        return literal.__eq__, repr(literal)
    raise LexiconError(f"{where}: unsupported record key type {key!r}")


class _Record:
    __slots__ = ("body", "key_description", "key_ok")

    def __init__(self, body: Check, key_ok: Callable[[str], bool], key_description: str) -> None:
        self.body = body
        self.key_ok = key_ok
        self.key_description = key_description


class Validator:
    """Validates records of every record-type lexicon found in the loaded documents."""

    __slots__ = ("_records", "collections")

    collections: frozenset[str]

    def __init__(self, documents: Mapping[str, Document]) -> None:
        compiler = _Compiler(documents)
        records: dict[str, _Record] = {}
        for nsid, doc in documents.items():
            main = doc["defs"].get("main")
            if not isinstance(main, dict) or main.get("type") != "record":
                continue
            where = f"{nsid}#main"
            body = compiler.named(nsid, "main", where)
            key_ok, key_description = _key_rule(main.get("key"), where)
            records[nsid] = _Record(body, key_ok, key_description)
        self._records = records
        self.collections = frozenset(records)

    @classmethod
    def load(cls, directory: Path | None = None) -> Validator:
        """Compile every lexicon under `directory` (default: the project's `lexicons/`). Raises
        `LexiconError` if a document is malformed or references something missing."""
        return cls(load_documents(directory))

    def validate(self, collection: str, rkey: str, record: object) -> Invalid | None:
        """None if `record` is a valid `collection` record stored under `rkey`, else the first problem.
        Never raises."""
        try:
            return self._validate(collection, rkey, record)
        except RecursionError:
            return Invalid(_text(collection), "", "depth", "is nested too deeply to validate")
        except Exception as exc:  # a guarantee for callers on hostile input; tests assert it is never hit
            return Invalid(_text(collection), "", "internal", f"could not be validated: {type(exc).__name__}")

    def _validate(self, collection: str, rkey: str, record: object) -> Invalid | None:
        entry = self._records.get(collection) if isinstance(collection, str) else None
        if entry is None:
            return Invalid(_text(collection), "", "collection", "is not a known record collection")
        if not isinstance(rkey, str) or not entry.key_ok(rkey):
            return Invalid(collection, "rkey", "key", f"must be {entry.key_description}, got {_show(rkey)}")
        if not isinstance(record, dict):
            return Invalid(collection, "", "type", "record must be an object")
        kind = record.get("$type")
        if kind != collection or not isinstance(kind, str):
            return Invalid(collection, "$type", "$type", f"must be {collection!r}, got {_show(kind)}")
        err = entry.body(record)
        if err is None:
            return None
        return Invalid(collection, _join(err.path), err.rule, err.message)


def _text(value: object) -> str:
    return value if isinstance(value, str) else _show(value)
