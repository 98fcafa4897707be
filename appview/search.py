"""What every search method shares: the bound on the query's length, how the query becomes search text, the
patterns its statements match that text with (escaped to be matched literally by LIKE and by a regular
expression), and the rank of a match of one text column."""

from __future__ import annotations

import re
from typing import Any

from appview.http import Position, XrpcError

MAX_QUERY = 256


def query_text(q: str) -> str:
    """The search text: lower-cased, whitespace collapsed."""
    text = " ".join(q.lower().split())
    if not text or "\x00" in text:
        raise XrpcError("InvalidRequest", "q must contain some text")
    return text


def patterns(text: str) -> dict[str, str]:
    """The statements' parameters for `text`: itself, and its prefix, substring and word-prefix patterns."""
    return {
        "q": text,
        "prefix": like_escape(text) + "%",
        "infix": "%" + like_escape(text) + "%",
        "word": r"\m" + regex_escape(text),
    }


def after_params(position: tuple[int, Position] | None) -> dict[str, Any]:
    """The parameters of a ranked keyset condition starting after `position` (none for a first page)."""
    if position is None:
        return {}
    rank, at = position
    return {"after_rank": rank, "after": at.sort_at, "after_cid": at.cid}


def matches(expr: str, trigram: bool) -> str:
    """Whether `expr` (lower-cased text) matches at any rank: a substring (which every better rank is), or,
    with pg_trgm, a similar word."""
    fuzzy = f" OR {expr} %% %(q)s OR %(q)s <%% {expr}" if trigram else ""
    return f"({expr} LIKE %(infix)s{fuzzy})"


def rank_of(expr: str) -> str:
    """The rank of a match of `expr` (0 exact, 1 prefix, 2 word prefix, 3 substring, 4 fuzzy); only called on rows
    `matches` found."""
    return (
        f"CASE WHEN {expr} = %(q)s THEN 0 WHEN {expr} LIKE %(prefix)s THEN 1 WHEN {expr} ~ %(word)s THEN 2"
        f" WHEN {expr} LIKE %(infix)s THEN 3 ELSE 4 END"
    )


def like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def regex_escape(text: str) -> str:
    # In a Postgres ARE a backslash before any non-alphanumeric character makes it literal.
    return re.sub(r"([^0-9A-Za-z\s])", r"\\\1", text)
