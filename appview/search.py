"""What every search method shares: the bound on the query's length, and how its text is escaped to be matched
literally by LIKE and by a regular expression."""

from __future__ import annotations

import re

MAX_QUERY = 256


def like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def regex_escape(text: str) -> str:
    # In a Postgres ARE a backslash before any non-alphanumeric character makes it literal.
    return re.sub(r"([^0-9A-Za-z\s])", r"\\\1", text)
