"""Deterministic record generator for the differential test against the reference validator.

Driven by the lexicon documents themselves: for every record collection it builds valid records (optional
fields present or not, values drawn across each field's constraints) and, for most of them, applies exactly
one mutation aimed at one constraint of one field: type, required, null, string length in bytes and
graphemes, each string format (valid and invalid values from the interop syntax vectors), integer bounds and
integral floats, array length, blob shape, CID, size, MIME type and legacy form, union `$type`, unknown extra
fields, the record `$type` and its key. A mutation that probes a documented departure from the reference
names its rule (docs/lexicon-conformance.md), so the test can tell an expected disagreement from a bug.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SYNTAX = ROOT / "tests" / "interop" / "syntax"

RAW_CID = "bafkreibme22gw2h7y2h7tg2fhqotaqjucnbc24deqo72b6mkl2egezxhvy"
CBOR_CID = "bafyreihfsh4wnrq3rwtdg3wjkt2g5hgsxcqyzxybmaq4qu6avtwocrmmgm"
CIDV0 = "QmbWqxBEKC3P8tqsKc98xmWNzrzDtRLMiMPL8wBuTGsMnR"
UNDECODABLE_CID = "bafkreibme22gw2h7y2h7tg2fhqotaqjucnbc24deqo72b6mkl2egezxhv"  # one character short
TEXT_POOL = "abc xyz ÄÖü ñ ça 夜の散歩 🌙 👩‍👩‍👧 é\u0301 —\n"
COMMON_FORMATS = {
    "at-identifier": ["alice.example.com", "did:plc:z72i7hdynmk6r22z27h6tvur"],
    "at-uri": ["at://did:plc:z72i7hdynmk6r22z27h6tvur/fm.plyr.track/3m5zsy4ryqc2a"],
    "cid": [CBOR_CID, RAW_CID],
    "datetime": ["2025-11-20T18:04:11.512Z", "2024-02-29T00:00:00Z", "2025-01-01T12:30:00.000+02:00"],
    "did": ["did:plc:z72i7hdynmk6r22z27h6tvur", "did:web:music.example.com"],
    "handle": ["mara.bsky.social", "nightjar.example.com"],
    "language": ["en", "pt-BR"],
    "nsid": ["fm.plyr.track"],
    "record-key": ["self", "3m5zsy4ryqc2a"],
    "tid": ["3m5zsy4ryqc2a", "3m5ztkmxxgk2s"],
    "uri": ["https://pub.example.com/audio/8f14e45f.mp3", "https://example.com/cover.jpg?size=large"],
}
FORMAT_NAMES = {
    "at-identifier": "atidentifier", "at-uri": "aturi", "cid": "cid", "datetime": "datetime", "did": "did",
    "handle": "handle", "language": "language", "nsid": "nsid", "record-key": "recordkey", "tid": "tid",
    "uri": "uri",
}  # fmt: skip


def _vectors(name: str, kind: str) -> list[str]:
    path = SYNTAX / f"{name}_syntax_{kind}.txt"
    lines = path.read_text(encoding="utf-8").split("\n")
    return [line for line in lines if line and not line.startswith("#")]


@dataclass(frozen=True)
class Case:
    collection: str
    rkey: str
    record: Any
    mutation: str  # "" for an untouched valid record
    rule: str | None  # the documented departure this mutation probes, if any


class Generator:
    def __init__(self, documents: dict[str, dict[str, Any]], seed: int = 20251120) -> None:
        self.docs = documents
        self.rng = random.Random(seed)
        self.valid_formats = {f: _vectors(n, "valid") for f, n in FORMAT_NAMES.items()}
        self.invalid_formats = {f: _vectors(n, "invalid") for f, n in FORMAT_NAMES.items()}

    # --- schema helpers ---------------------------------------------------------------------------------

    def resolve(self, ref: str, nsid: str) -> tuple[str, dict[str, Any]]:
        if ref.startswith("#"):
            target, name = nsid, ref[1:]
        else:
            target, _, name = ref.partition("#")
            name = name or "main"
        d = self.docs[target]["defs"][name]
        return target, d

    def collections(self) -> list[str]:
        return sorted(n for n, d in self.docs.items() if d["defs"].get("main", {}).get("type") == "record")

    # --- valid values -----------------------------------------------------------------------------------

    def text(self, lo: int, hi: int, g_hi: int | None) -> str:
        r = self.rng
        n = r.randint(max(lo, 1), max(lo, 1) + r.choice([0, 3, 20]))
        s = "".join(r.choice(TEXT_POOL) for _ in range(n))
        while len(s.encode()) > hi or (g_hi is not None and len(s) > g_hi):
            s = s[:-1]
        while len(s.encode()) < lo:
            s += "a"
        return s

    def value(self, d: dict[str, Any], nsid: str, depth: int = 0) -> Any:
        r = self.rng
        kind = d["type"]
        if kind == "ref":
            target, sub = self.resolve(d["ref"], nsid)
            return self.value(sub, target, depth + 1)
        if kind == "union":
            ref = r.choice(d["refs"])
            target, sub = self.resolve(ref, nsid)
            name = f"{nsid}{ref}" if ref.startswith("#") else ref.removesuffix("#main")
            obj = self.value(sub, target, depth + 1)
            return {"$type": name, **obj}
        if kind == "object":
            out: dict[str, Any] = {}
            required = set(d.get("required", []))
            for name, sub in d.get("properties", {}).items():
                if name in required or r.random() < 0.6:
                    out[name] = self.value(sub, nsid, depth + 1)
            return out
        if kind == "string":
            if "format" in d:
                # Everyday values here; the interop vectors' corner cases are the format mutations' business.
                return r.choice(COMMON_FORMATS[d["format"]])
            if "const" in d:
                return d["const"]
            if "enum" in d:
                return r.choice(d["enum"])
            if "knownValues" in d and r.random() < 0.7:
                return r.choice(d["knownValues"])
            if d.get("minGraphemes"):
                return "ab c"[: r.randint(d["minGraphemes"], d.get("maxGraphemes", 4))]
            return self.text(d.get("minLength", 0), d.get("maxLength", 300), d.get("maxGraphemes"))
        if kind == "integer":
            if "enum" in d:
                return r.choice(d["enum"])
            lo = d.get("minimum", -1000)
            hi = d.get("maximum", 10**9)
            v = r.choice([lo, r.randint(lo, min(hi, lo + 10**6)), min(hi, 2**53)])
            return float(v) if r.random() < 0.15 and abs(v) < 2**53 else v
        if kind == "array":
            lo = d.get("minLength", 0)
            hi = min(d.get("maxLength", 5), lo + 4)
            return [self.value(d["items"], nsid, depth + 1) for _ in range(r.randint(lo, hi))]
        if kind == "blob":
            accept = d.get("accept", ["*/*"])
            mime = r.choice(accept).replace("*", r.choice(["mpeg", "flac", "ogg"]))
            if mime.startswith("mpeg/"):
                mime = "audio/mpeg"
            if r.random() < 0.1:
                return {"cid": RAW_CID, "mimeType": mime}
            size = r.randint(1, d.get("maxSize", 10**9))
            return {"$type": "blob", "ref": {"$link": RAW_CID}, "mimeType": mime, "size": size}
        if kind == "boolean":
            return r.random() < 0.5
        if kind == "cid-link":
            return {"$link": r.choice([CBOR_CID, RAW_CID])}
        if kind == "bytes":
            return {"$bytes": r.choice(["AAE", "AAECAw", "AAECAwQFBgc"])}
        if kind == "unknown":
            return r.choice([{}, {"a": 1, "b": ["x"]}, {"$type": "com.example.thing", "c": True}])
        raise ValueError(f"no generator for lexicon type {kind!r}")

    # --- mutations --------------------------------------------------------------------------------------

    def nodes(self, d: dict[str, Any], nsid: str, value: Any, path: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
        """(path, schema, nsid, parent object schema, property name) for every schema'd place in `value`."""
        kind = d["type"]
        if kind == "ref":
            target, sub = self.resolve(d["ref"], nsid)
            yield from self.nodes(sub, target, value, path)
            return
        yield (path, d, nsid)
        if kind == "union" and isinstance(value, dict):
            t = value.get("$type", "")
            target, _, name = t.partition("#")
            sub = self.docs.get(target, {}).get("defs", {}).get(name or "main")
            if sub is not None:
                yield from self.nodes(sub, target, value, path)
        elif kind == "object" and isinstance(value, dict):
            for name, sub in d.get("properties", {}).items():
                if name in value:
                    yield from self.nodes(sub, nsid, value[name], (*path, name))
        elif kind == "array" and isinstance(value, list):
            for i, item in enumerate(value):
                yield from self.nodes(d["items"], nsid, item, (*path, i))

    def mutations(self, d: dict[str, Any], nsid: str, current: Any) -> list[tuple[str, Any, str | None]]:
        """(name, new value, rule) candidates for one node; `_DELETE` removes it."""
        r = self.rng
        kind = d["type"]
        out: list[tuple[str, Any, str | None]] = [
            ("null", None, None),
            ("delete", _DELETE, None),
        ]
        # A value of another JSON type than the schema's (an array where `unknown` wants an object is the
        # one the reference lets through).
        others = [v for v in (True, "text", 7, [1], {"a": 1}, 1.5) if not _same_kind(kind, v)]
        wrong = r.choice(others)
        out.append(("wrong-type", wrong, "unknown-object" if kind == "unknown" and isinstance(wrong, list) else None))
        if kind == "string":
            hi = d.get("maxLength")
            if hi is not None:
                out.append(("maxLength+1", "é" * (hi // 2) + "ab"[: 1 + hi % 2], None))
                out.append(("maxLength", "a" * hi, None))
            if d.get("minLength"):
                out.append(("minLength-1", "a" * (d["minLength"] - 1), None))
            g = d.get("maxGraphemes")
            if g is not None:
                out.append(("maxGraphemes+1", "👩‍👩‍👧" * (g + 1), None))
                out.append(("maxGraphemes", "e\u0301" * g, None))
                out.append(("maxGraphemes-ascii", "x" * (g + 1), None))
            fmt = d.get("format")
            if fmt is not None:
                # The interop syntax vectors are the spec's word on each format; where the reference reads a
                # vector the other way, the documented rules below say so.
                out.append((f"format-invalid:{fmt}", r.choice(self.invalid_formats[fmt]), "format-vector-invalid"))
                out.append((f"format-valid:{fmt}", r.choice(self.valid_formats[fmt]), "format-vector-valid"))
            if "knownValues" in d or "enum" in d or "const" in d:
                out.append(("not-listed", "something-else", None))
            if d.get("minGraphemes"):
                out.append(("minGraphemes-1", "e\u0301" * (d["minGraphemes"] - 1), None))
        elif kind == "integer":
            lo = d.get("minimum")
            if lo is not None:
                out.append(("minimum-1", lo - 1, None))
                out.append(("minimum-float", float(lo), None))
            hi = d.get("maximum")
            if hi is not None:
                out.append(("maximum+1", hi + 1, None))
            out += [
                ("fraction", 2.5, None),
                ("integral-float", 180.0, None),
                ("big-float", 1e18, None),
                ("int64-overflow", 2**63, "int64-range"),
                ("int53+1", 2**53 + 1, None),
                ("bool", True, None),
                ("numeric-string", "180", None),
            ]
        elif kind == "array":
            hi = d.get("maxLength")
            if hi is not None and current:
                out.append(("maxLength+1", [current[0]] * (hi + 1), None))
                out.append(("maxLength", [current[0]] * hi, None))
            if current:
                out.append(("item-wrong-type", [*current[:-1], 12345], None))
            out.append(("empty", [], None))
        elif kind == "object":
            out.append(("extra-field", {**current, "extraField": r.choice(["x", 1, 2.5, {"$link": "x"}, None])}, None))
            out.append(("array-instead", [current], None))
        elif kind == "union":
            t = current.get("$type", "") if isinstance(current, dict) else ""
            if t and "#" not in t:
                out.append(("union-main-suffix", {**current, "$type": f"{t}#main"}, "union-main-suffix"))
            out += [
                ("union-no-type", {k: v for k, v in current.items() if k != "$type"}, None),
                ("union-open-other", {"$type": "com.example.other#thing", "x": 1}, None),
                ("union-bad-member", {"$type": current.get("$type", ""), "values": "nope"}, None),
            ]
        elif kind == "cid-link":
            out += [
                ("link-undecodable", {"$link": UNDECODABLE_CID}, None),
                ("link-garbage", {"$link": "."}, None),
                ("link-cidv0", {"$link": CIDV0}, "link-cidv1-base32"),
                ("link-extra-key", {"$link": RAW_CID, "x": 1}, None),
                ("link-string", RAW_CID, None),
                ("link-bytes", {"$bytes": "AAE"}, None),
            ]
        elif kind == "bytes":
            out += [
                ("bytes-bad-base64", {"$bytes": "A"}, None),
                ("bytes-padded", {"$bytes": "AAECAw=="}, None),
                ("bytes-too-long", {"$bytes": "AAECAwQFBgcI"}, None),
                ("bytes-empty", {"$bytes": ""}, None),
                ("bytes-extra-key", {"$bytes": "AAE", "x": 1}, None),
                ("bytes-link", {"$link": RAW_CID}, None),
            ]
        elif kind == "unknown":
            out += [
                ("unknown-string", "x", None),
                ("unknown-array", [{"a": 1}], "unknown-object"),
                ("unknown-link", {"$link": RAW_CID}, "unknown-not-compound"),
                ("unknown-bytes", {"$bytes": "AAE"}, "unknown-not-compound"),
                (
                    "unknown-blob",
                    {"$type": "blob", "ref": {"$link": RAW_CID}, "mimeType": "a/b", "size": 1},
                    "unknown-not-compound",
                ),
                ("unknown-empty-type", {"$type": ""}, "type-non-empty"),
            ]
        elif kind == "blob":
            # A type the field accepts (audio for tracks, images for a Bluesky avatar), so only the mutation differs.
            mime = d.get("accept", ["*/*"])[0].replace("*/*", "audio/mpeg").replace("/*", "/mpeg")
            good = {"$type": "blob", "ref": {"$link": RAW_CID}, "mimeType": mime, "size": 1000}
            max_size = d.get("maxSize", 10**9)
            out += [
                ("blob-extra-key", {**good, "extra": 1}, None),
                ("blob-missing-size", {k: v for k, v in good.items() if k != "size"}, None),
                ("blob-missing-ref", {k: v for k, v in good.items() if k != "ref"}, None),
                ("blob-ref-extra-key", {**good, "ref": {"$link": RAW_CID, "x": 1}}, None),
                ("blob-ref-string", {**good, "ref": RAW_CID}, None),
                ("blob-ref-undecodable", {**good, "ref": {"$link": UNDECODABLE_CID}}, None),
                ("blob-ref-garbage", {**good, "ref": {"$link": "not a cid"}}, None),
                ("blob-ref-cidv0", {**good, "ref": {"$link": CIDV0}}, "link-cidv1-base32"),
                ("blob-ref-dag-cbor", {**good, "ref": {"$link": CBOR_CID}}, None),
                ("blob-size-zero", {**good, "size": 0}, "blob-size-positive"),
                ("blob-size-negative", {**good, "size": -5}, "blob-size-positive"),
                ("blob-size-fraction", {**good, "size": 10.5}, "blob-size-positive"),
                ("blob-size-integral-float", {**good, "size": 12345.0}, None),
                ("blob-size-string", {**good, "size": "1000"}, None),
                ("blob-size-max", {**good, "size": max_size}, None),
                ("blob-size-max+1", {**good, "size": max_size + 1}, "blob-max-size" if "maxSize" in d else None),
                ("blob-mime-empty", {**good, "mimeType": ""}, "blob-mime-non-empty"),
                ("blob-mime-params", {**good, "mimeType": f"{mime}; codecs=x"}, None),
                ("blob-mime-other", {**good, "mimeType": "video/mp4"}, "blob-accept" if "accept" in d else None),
                ("blob-type-other", {**good, "$type": "blobby"}, None),
                ("legacy", {"cid": RAW_CID, "mimeType": mime}, None),
                ("legacy-bad-cid", {"cid": UNDECODABLE_CID, "mimeType": mime}, None),
                ("legacy-cidv0", {"cid": CIDV0, "mimeType": mime}, "link-cidv1-base32"),
                ("legacy-extra-key", {"cid": RAW_CID, "mimeType": mime, "size": 1}, None),
                ("legacy-no-mime", {"cid": RAW_CID}, None),
            ]
        return out

    def cases(self, per_collection: int) -> Iterator[Case]:
        r = self.rng
        for nsid in self.collections():
            main = self.docs[nsid]["defs"]["main"]
            key = main.get("key", "any")
            for _ in range(per_collection):
                rkey = key.removeprefix("literal:") if key.startswith("literal:") else r.choice(COMMON_FORMATS["tid"])
                record = {"$type": nsid, **self.value(main["record"], nsid)}
                if r.random() < 0.15:
                    yield Case(nsid, rkey, record, "", None)
                    continue
                roll = r.random()
                if roll < 0.03:
                    yield Case(nsid, r.choice(["..", "a/b", "3m5z", "self!", "x" * 600]), record, "rkey", None)
                    continue
                if roll < 0.06:
                    bad = r.choice([None, nsid + "#main", "fm.plyr.other", "", 5])
                    yield Case(nsid, rkey, {**record, "$type": bad}, "record-$type", None)
                    continue
                if roll < 0.09:
                    extra = r.choice([1.5, 2.0, "x", None, {"$type": "blob"}, [1, "a"], {"$bytes": "AAE"}])
                    yield Case(nsid, rkey, {**record, "someExtra": extra}, "record-extra", None)
                    continue
                # Uniform over (place, mutation) pairs, so a field with many constraints gets as many probes.
                choices = [
                    (path, mutation)
                    for path, schema, owner in list(self.nodes(main["record"], nsid, record, ()))[1:]
                    for mutation in self.mutations(schema, owner, _get(record, path))
                ]
                if not choices:  # a record whose fields are all optional and all left out this time
                    yield Case(nsid, rkey, record, "", None)
                    continue
                path, (name, new, rule) = r.choice(choices)
                yield Case(nsid, rkey, _set(record, path, new), f"{'.'.join(map(str, path))}:{name}", rule)


class _Delete:
    pass


_DELETE = _Delete()


def _same_kind(kind: str, value: Any) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return type(value) is int
    if kind == "boolean":
        return type(value) is bool
    if kind == "array":
        return isinstance(value, list)
    return kind in ("object", "unknown", "union") and isinstance(value, dict)


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        value = value[p]
    return value


def _set(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, list):
        out_list = list(value)
        item = _set(value[head], rest, new)
        if item is _DELETE:
            del out_list[head]
        else:
            out_list[head] = item
        return out_list
    out = dict(value)
    replaced = _set(value[head], rest, new)
    if replaced is _DELETE:
        del out[head]
    else:
        out[head] = replaced
    return out
