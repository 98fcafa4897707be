"""The zstd dictionaries Jetstream compresses its frames with, shipped inside the package.

Both ids are also written in every compressed frame's header, which is how a frame made with another
dictionary is told apart from a corrupt one (see `parse.Decompressor`)."""

from __future__ import annotations

import functools
from importlib import resources

import zstandard

V1_DICT_ID = 1612007021
V2_DICT_ID = 20260811

_FILES = {V1_DICT_ID: "jetstream_v1.zdict", V2_DICT_ID: "jetstream_v2_20260811.zdict"}


def dict_bytes(dict_id: int) -> bytes:
    try:
        name = _FILES[dict_id]
    except KeyError:
        raise KeyError(f"no bundled Jetstream zstd dictionary with id {dict_id}") from None
    return resources.files(__package__).joinpath(name).read_bytes()


@functools.cache
def load_dict(dict_id: int) -> zstandard.ZstdCompressionDict:
    """The dictionary with that id, parsed once per process (a `ZstdCompressionDict` is immutable and may be
    shared by many decompressors)."""
    d = zstandard.ZstdCompressionDict(dict_bytes(dict_id))
    if d.dict_id() != dict_id:
        raise ValueError(f"bundled dictionary {_FILES[dict_id]} has id {d.dict_id()}, expected {dict_id}")
    return d


def load_v1_dict() -> zstandard.ZstdCompressionDict:
    return load_dict(V1_DICT_ID)


def load_v2_dict() -> zstandard.ZstdCompressionDict:
    return load_dict(V2_DICT_ID)
