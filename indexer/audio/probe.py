"""Is an uploaded file really audio of the type its uploader declared? Answered by mutagen, from the bytes.

mutagen first guesses the format from the file's magic numbers (RIFF/WAVE, fLaC, OggS, ftyp, FORM/AIFF, ID3 or
an MPEG frame header); a format without reliable magic (MPEG audio, ADTS AAC) is then parsed outright, which
requires real frames to be found. The declared Content-Type must name the format found: a FLAC sent as
audio/mpeg is refused rather than relabelled, since a player trusts the type it is given.
"""

from __future__ import annotations

import math
from pathlib import Path

import msgspec
import mutagen
from mutagen.aac import AAC
from mutagen.aiff import AIFF
from mutagen.flac import FLAC
from mutagen.mp3 import MP3
from mutagen.mp4 import MP4
from mutagen.oggflac import OggFLAC
from mutagen.oggopus import OggOpus
from mutagen.oggspeex import OggSpeex
from mutagen.oggvorbis import OggVorbis
from mutagen.wave import WAVE


class Kind(msgspec.Struct, frozen=True):
    mime_type: str  # the canonical type we store and serve
    file_type: str  # the record's `fileType` (an extension)
    formats: tuple[type[mutagen.FileType], ...]


_MP3 = Kind("audio/mpeg", "mp3", (MP3,))
_WAV = Kind("audio/wav", "wav", (WAVE,))
_FLAC = Kind("audio/flac", "flac", (FLAC,))
_OGG = Kind("audio/ogg", "ogg", (OggVorbis, OggOpus, OggFLAC, OggSpeex))
_OPUS = Kind("audio/ogg", "opus", (OggOpus,))
_MP4 = Kind("audio/mp4", "m4a", (MP4,))
_AAC = Kind("audio/aac", "aac", (AAC,))
_AIFF = Kind("audio/aiff", "aiff", (AIFF,))

KINDS: dict[str, Kind] = {
    "audio/mpeg": _MP3,
    "audio/mp3": _MP3,
    "audio/mpeg3": _MP3,
    "audio/x-mpeg": _MP3,
    "audio/wav": _WAV,
    "audio/wave": _WAV,
    "audio/x-wav": _WAV,
    "audio/vnd.wave": _WAV,
    "audio/flac": _FLAC,
    "audio/x-flac": _FLAC,
    "audio/ogg": _OGG,
    "audio/vorbis": _OGG,
    "audio/opus": _OPUS,
    "audio/mp4": _MP4,
    "audio/m4a": _MP4,
    "audio/x-m4a": _MP4,
    "audio/aac": _AAC,
    "audio/aacp": _AAC,
    "audio/aiff": _AIFF,
    "audio/x-aiff": _AIFF,
}


class InvalidAudio(Exception):
    pass


class Probed(msgspec.Struct, frozen=True):
    mime_type: str
    file_type: str
    # Whole seconds, rounded: the track lexicon's `duration` is an integer number of seconds.
    duration: int


def media_type(content_type: str | None) -> str:
    """`audio/MPEG; charset=x` → `audio/mpeg`."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def kind_of(content_type: str | None) -> Kind:
    declared = media_type(content_type)
    if not declared.startswith("audio/"):
        raise InvalidAudio(f"Content-Type must be audio/*, got {declared[:100] or 'nothing'!r}")
    kind = KINDS.get(declared)
    if kind is None:
        known = ", ".join(sorted(KINDS))
        raise InvalidAudio(f"unsupported audio type {declared[:100]!r}; supported: {known}")
    return kind


def _name(found: mutagen.FileType) -> str:
    return type(found).__name__


def probe(path: Path, content_type: str | None) -> Probed:
    """Blocking (it reads the file): call it in a thread."""
    kind = kind_of(content_type)
    try:
        found: mutagen.FileType | None = mutagen.File(path)
    except Exception:  # hostile bytes may trip any parser; a file no parser accepts is simply not audio
        found = None
    if found is None:
        # Formats without magic numbers: only a real parse tells.
        for fmt in (f for f in kind.formats if f in (MP3, AAC)):
            try:
                found = fmt(path)
                break
            except Exception:
                continue
    if found is None:
        raise InvalidAudio(f"the bytes are not audio of any known format (declared {media_type(content_type)})")
    if not isinstance(found, kind.formats):
        raise InvalidAudio(
            f"declared {media_type(content_type)} but the bytes are {_name(found)} audio ({', '.join(found.mime[:1])})"
        )
    length = getattr(found.info, "length", None)
    if not isinstance(length, (int, float)) or not math.isfinite(length) or length <= 0:
        raise InvalidAudio(f"{_name(found)} file with no playable audio (duration {length!r})")
    file_type = kind.file_type
    if kind is _OGG and isinstance(found, OggOpus):
        file_type = "opus"
    return Probed(mime_type=kind.mime_type, file_type=file_type, duration=int(length + 0.5))
