"""Lexicon-driven validation of `fm.plyr.*` records (and any other record lexicon under `lexicons/`).

The identifier syntaxes that Lexicon string formats name (did, nsid, at-uri, ...) live in
`indexer.atproto.syntax`."""

from indexer.atproto.lexicon.formats import FORMATS, is_language, is_uri
from indexer.atproto.lexicon.loader import LexiconError, default_directory, load_documents
from indexer.atproto.lexicon.validator import Invalid, Validator

__all__ = [
    "FORMATS",
    "Invalid",
    "LexiconError",
    "Validator",
    "default_directory",
    "is_language",
    "is_uri",
    "load_documents",
]
