"""Differential test: our record validator against the reference, `@atproto/lexicon` (pinned in
tests/pds/package.json), on thousands of generated records (tests/lexicon_ref/generate.py) and on the atproto
interop vectors (tests/interop/lexicon/, tests/interop/data-model/).

The two must agree on every record, except where a documented rule says the written spec and the reference
part ways and we keep the spec. Those rules are the table in docs/lexicon-conformance.md; this test reads that
table, so the document and the test cannot drift: a disagreement must be probed by a mutation that names a
documented rule and go the documented way, and every documented rule must be seen disagreeing at least once.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import msgspec
import pytest

from indexer.atproto.lexicon import Validator, default_directory, load_documents
from tests.lexicon_ref.generate import Case, Generator
from tests.pds.server import node_modules

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "lexicon_ref" / "validate.js"
EXTRA = ROOT / "tests" / "lexicon_ref" / "lexicons"
INTEROP = ROOT / "tests" / "interop"
DOC = ROOT / "docs" / "lexicon-conformance.md"
PER_COLLECTION = 1500

_ROW = re.compile(r"^\| `([a-z0-9-]+)` \| (refuses|accepts) \| (refuses|accepts) \| .+\|$")


def _unavailable() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    if not (node_modules() / "@atproto" / "lexicon" / "package.json").is_file():
        return f"@atproto/lexicon is not installed in {node_modules()} (run tests/pds/install.sh)"
    return None


pytestmark = pytest.mark.skipif(_unavailable() is not None, reason=f"reference validator unavailable: {_unavailable()}")


def documented_rules() -> dict[str, tuple[bool, bool]]:
    """rule name -> (we accept, the reference accepts), from the table in docs/lexicon-conformance.md."""
    rules: dict[str, tuple[bool, bool]] = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = _ROW.match(line)
        if m:
            assert m.group(1) not in rules, f"rule {m.group(1)} listed twice"
            rules[m.group(1)] = (m.group(2) == "accepts", m.group(3) == "accepts")
    return rules


def reference(cases: list[tuple[str, str, Any]], *lexicon_dirs: Path) -> list[dict[str, Any]]:
    """Run the reference validator once over all cases."""
    stdin = b"".join(msgspec.json.encode({"collection": c, "rkey": k, "record": r}) + b"\n" for c, k, r in cases)
    proc = subprocess.run(
        ["node", str(SCRIPT), str(node_modules()), *map(str, lexicon_dirs)],
        input=stdin,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    out = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert len(out) == len(cases)
    return out


def test_the_document_lists_rules() -> None:
    rules = documented_rules()
    assert rules, "no rules found in docs/lexicon-conformance.md"
    assert all(ours != theirs for ours, theirs in rules.values()), "a documented rule must be a disagreement"


def _wire(record: Any) -> Any:
    # Through JSON text, as Jetstream delivers it: `180.0` reaches the validator as a float, as it would.
    return msgspec.json.decode(msgspec.json.encode(record))


def test_generated_records_agree_with_the_reference() -> None:
    documents = {**load_documents(default_directory()), **load_documents(EXTRA)}
    validator = Validator(documents)
    cases: list[Case] = list(Generator(documents).cases(PER_COLLECTION))
    assert len(cases) >= 5000
    theirs = reference([(c.collection, c.rkey, c.record) for c in cases], default_directory(), EXTRA)
    rules = documented_rules()
    seen: set[str] = set()
    unexplained: list[str] = []
    for case, ref in zip(cases, theirs, strict=True):
        ours = validator.validate(case.collection, case.rkey, _wire(case.record))
        if case.mutation == "":
            assert ours is None, f"generated valid record refused: {ours}\n{case.record}"
        if (ours is None) == ref["ok"]:
            continue
        rule = rules.get(case.rule or "")
        if rule is not None and rule == (ours is None, ref["ok"]):
            seen.add(case.rule or "")
            continue
        unexplained.append(
            f"{case.collection} {case.mutation} rule={case.rule}: ours={ours} reference={ref}\n"
            f"    {json.dumps(case.record)[:400]}"
        )
    assert not unexplained, f"{len(unexplained)} disagreements:\n" + "\n".join(unexplained[:40])
    missing = set(rules) - seen
    assert not missing, f"documented rules never seen disagreeing: {sorted(missing)}"


def test_interop_vectors_agree_with_the_reference() -> None:
    catalog = INTEROP / "lexicon" / "catalog"
    validator = Validator.load(catalog)
    rules = documented_rules()
    cases: list[tuple[str, str, str, Any, bool]] = []
    for name, should in (("record-data-valid.json", True), ("record-data-invalid.json", False)):
        for v in json.loads((INTEROP / "lexicon" / name).read_text(encoding="utf-8")):
            cases.append((v["name"], "example.lexicon.record", v["rkey"], v["data"], should))
    assert len(cases) > 50
    theirs = reference([(c, k, r) for _, c, k, r, _ in cases], catalog)
    problems: list[str] = []
    for (name, coll, rkey, record, should), ref in zip(cases, theirs, strict=True):
        ours = validator.validate(coll, rkey, _wire(record))
        if (ours is None) != should:
            problems.append(f"vector {name!r}: ours={ours}, expected valid={should}")
        if (ours is None) != ref["ok"]:
            rule = _VECTOR_RULES.get(name)
            if rule is None or rules.get(rule) != (ours is None, ref["ok"]):
                problems.append(f"vector {name!r}: ours={ours} reference={ref} (no documented rule)")
    assert not problems, "\n".join(problems)


# The interop record vectors on which the reference departs from them, and the rule that says so.
_VECTOR_RULES = {"blob too large": "blob-max-size", "blob wrong type": "blob-accept"}
