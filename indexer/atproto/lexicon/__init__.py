"""Lexicon-driven validation of `fm.plyr.*` records (and any other record lexicon under `lexicons/`)."""

from indexer.atproto.lexicon.formats import (
    FORMATS,
    is_at_identifier,
    is_at_uri,
    is_cid,
    is_datetime,
    is_did,
    is_handle,
    is_language,
    is_nsid,
    is_record_key,
    is_tid,
    is_uri,
)
from indexer.atproto.lexicon.loader import LexiconError, default_directory, load_documents
from indexer.atproto.lexicon.validator import Invalid, Validator

__all__ = [
    "FORMATS",
    "Invalid",
    "LexiconError",
    "Validator",
    "default_directory",
    "is_at_identifier",
    "is_at_uri",
    "is_cid",
    "is_datetime",
    "is_did",
    "is_handle",
    "is_language",
    "is_nsid",
    "is_record_key",
    "is_tid",
    "is_uri",
    "load_documents",
]
