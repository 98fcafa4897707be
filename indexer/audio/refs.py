"""Which stored audio objects records point at.

An uploaded object is addressed as `<our origin>/audio-files/<sha256>` (the `audioUrl` upload returns), the
origin being `PLYR_APPVIEW_PUBLIC_URL` (`Settings.public_origin`). The functions below take that origin, or a
bare `host[:port]`, read as `indexer.settings.public_origin` reads it (https, http on a loopback host).
Two readings of a track's audioUrl:
- *own*: exactly our origin (scheme, host and port; a default port may be written or not) and that path: the
  object must exist (playback, the ingest flag, the audit's dangling list);
- *reference*: that path on any host. Reference counts use this wider reading: a foreign host that happens to
  use the same path only makes us keep an object longer, never delete a live one.

The SQL expression below is indexed (migration 0005, `tracks_audio_sha256_idx`); queries must repeat it and its
predicate verbatim for the index to be used.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import psycopg

from indexer.settings import public_origin

AUDIO_FILES = "/audio-files/"
_SHA = re.compile(r"[0-9a-fA-F]{64}")
_DEFAULT_PORTS = {"http": 80, "https": 443}

# The referenced digest of a track row, and the predicate of the partial index on it.
# (The 64 characters after the first `/audio-files/`; anything that is not a digest matches no object.)
REF_SHA = "lower(substr(audio_url, strpos(audio_url, '/audio-files/') + 13, 64))"
REF_PREDICATE = "audio_url LIKE '%/audio-files/%'"

# (With parameters, psycopg wants a literal % doubled.)
REFERENCED = f"SELECT EXISTS (SELECT 1 FROM tracks WHERE {REF_PREDICATE.replace('%', '%%')} AND {REF_SHA} = %s)"

ALL_REFERENCES = f"SELECT DISTINCT {REF_SHA} FROM tracks WHERE {REF_PREDICATE} AND {REF_SHA} IS NOT NULL"


def own_origin(own: str) -> str:
    """Our origin, `scheme://host[:port]` in lower case, from an origin or a bare `host[:port]`."""
    own = own.strip().rstrip("/").lower()
    return own if "://" in own else public_origin(own)


def audio_url(own: str, sha256: str) -> str:
    return f"{own_origin(own)}{AUDIO_FILES}{sha256}"


def _site(scheme: str, netloc: str) -> tuple[str, str]:
    """(scheme, netloc) with the scheme's default port dropped, so `https://h:443` and `https://h` compare equal."""
    scheme = scheme.lower()
    netloc = netloc.lower()
    port = _DEFAULT_PORTS.get(scheme)
    return scheme, netloc.removesuffix(f":{port}") if port else netloc


def own_sha256(url: str | None, own: str) -> str | None:
    """The digest of an audioUrl addressing our own stored audio, else None."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
        ours = urlsplit(own_origin(own))
    except ValueError:
        return None
    if _site(parts.scheme, parts.netloc) != _site(ours.scheme, ours.netloc):
        return None
    if not parts.path.startswith(AUDIO_FILES):
        return None
    sha = parts.path[len(AUDIO_FILES) :]
    return sha.lower() if _SHA.fullmatch(sha) else None


def mentions_own(url: object, own: str) -> bool:
    """Cheap pre-check on raw record values: could this be one of our URLs? (False positives are fine.)"""
    if not isinstance(url, str) or AUDIO_FILES not in url:
        return False
    hostname = urlsplit(own_origin(own)).hostname or ""
    return f"//{hostname}" in url.lower()


# After the fold of a batch: of the tracks in it whose audioUrl is ours (found in Python, `own_sha256`), those
# now projected with that very URL whose object was never stored. Digests come parsed from Python: a regular
# expression in SQL costs tens of microseconds a row.
FLAG_MISSING = """
INSERT INTO audio_flags (did, rkey, sha256, reason)
SELECT c.did, c.rkey, c.sha256, 'missing_object'
FROM unnest(%(dids)s::text[], %(rkeys)s::text[], %(urls)s::text[], %(shas)s::text[]) AS c(did, rkey, url, sha256)
JOIN tracks t ON t.did = c.did AND t.rkey = c.rkey COLLATE "C" AND t.audio_url = c.url
WHERE NOT EXISTS (SELECT 1 FROM audio_objects o WHERE o.sha256 = c.sha256)
ON CONFLICT DO NOTHING
RETURNING did, rkey, sha256
"""

OwnAudio = tuple[str, str, str, str]  # did, rkey, audioUrl, sha256


async def flag_missing(cur: psycopg.AsyncCursor[tuple[object, ...]], own: list[OwnAudio]) -> list[tuple[str, str, str]]:
    """Flag the tracks among `own` whose object is missing; the flags added."""
    dids, rkeys, urls, shas = (list(col) for col in zip(*own, strict=True))
    await cur.execute(FLAG_MISSING, {"dids": dids, "rkeys": rkeys, "urls": urls, "shas": shas})
    return [(str(d), str(r), str(s)) for d, r, s in await cur.fetchall()]


async def referenced(conn: psycopg.AsyncConnection[tuple[object, ...]], sha256: str) -> bool:
    cur = await conn.execute(REFERENCED, (sha256,))
    row = await cur.fetchone()
    return bool(row and row[0])
