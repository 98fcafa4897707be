"""Find and read Lexicon documents (https://atproto.com/specs/lexicon) from a directory tree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from indexer.atproto.syntax import is_nsid

__all__ = ["LexiconError", "default_directory", "load_documents"]

Document = dict[str, Any]


class LexiconError(Exception):
    """A lexicon document is unreadable, malformed or references something that does not exist. Raised at
    load time only; validating a record never raises."""


def default_directory() -> Path:
    """The `lexicons/` directory of a source checkout, else the copy the wheel build puts inside the
    package."""
    here = Path(__file__).resolve()
    checkout = here.parents[3] / "lexicons"
    if checkout.is_dir():
        return checkout
    return here.parents[2] / "_lexicons"


def load_documents(directory: Path | None = None) -> dict[str, Document]:
    """Every `*.json` lexicon under `directory` (recursively), indexed by its `id`."""
    root = default_directory() if directory is None else Path(directory)
    if not root.is_dir():
        raise LexiconError(f"lexicon directory not found: {root}")
    documents: dict[str, Document] = {}
    origin: dict[str, Path] = {}
    for path in sorted(root.rglob("*.json")):
        doc = _read(path)
        nsid = doc["id"]
        if nsid in documents:
            raise LexiconError(f"{path}: duplicate lexicon id {nsid!r} (also in {origin[nsid]})")
        documents[nsid] = doc
        origin[nsid] = path
    if not documents:
        raise LexiconError(f"no lexicon documents under {root}")
    return documents


def _read(path: Path) -> Document:
    try:
        doc = msgspec.json.decode(path.read_bytes())
    except (OSError, msgspec.DecodeError) as exc:
        raise LexiconError(f"{path}: cannot read lexicon: {exc}") from exc
    if not isinstance(doc, dict):
        raise LexiconError(f"{path}: a lexicon document must be a JSON object")
    if doc.get("lexicon") != 1:
        raise LexiconError(f"{path}: unsupported lexicon version {doc.get('lexicon')!r}")
    if not isinstance(doc.get("id"), str) or not is_nsid(doc["id"]):
        raise LexiconError(f"{path}: 'id' must be an NSID, got {doc.get('id')!r}")
    defs = doc.get("defs")
    if not isinstance(defs, dict) or not all(isinstance(d, dict) for d in defs.values()):
        raise LexiconError(f"{path}: 'defs' must be an object of objects")
    return doc
