"""The commands, by name. Each is a module of this package exposing a `Command`, imported only when that command
runs (`Entry.load`): `plyr-appview status` does not pay for the API server's imports, nor `--help` for any."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from appview.cli.command import Command


@dataclass(frozen=True)
class Entry:
    name: str
    help: str
    # The module under appview/cli/commands/ and its `Command`.
    module: str
    attribute: str = "COMMAND"

    def load(self) -> Command:
        command = getattr(importlib.import_module(f"{__name__}.{self.module}"), self.attribute)
        assert isinstance(command, Command)
        return command


ENTRIES: tuple[Entry, ...] = (
    Entry("up", "migrate, then index and serve (the main job)", "up"),
    Entry("migrate", "apply database migrations", "migrate"),
    Entry("index", "follow Jetstream (or a raw firehose) and index fm.plyr.* and teal.fm play events", "index"),
    Entry(
        "backfill",
        "fetch whole repos (getRepo) and fold their fm.plyr.* and teal.fm play records",
        "backfill",
        "BACKFILL",
    ),
    Entry("resync", "fetch the repos marked for resync (rev gaps, #sync, OutdatedCursor, ...)", "backfill", "RESYNC"),
    Entry("reconcile", "compare known repos with their PDS and resync those behind", "reconcile"),
    Entry("serve", "run the XRPC API alone", "serve"),
    Entry("replay", "ingest a capture file (Jetstream JSON lines or raw frames, .zst or not)", "replay"),
    Entry("capture", "record what a source sends to a file", "capture"),
    Entry("rebuild", "derive the fold state and projections again from the whole event log", "rebuild"),
    Entry("status", "counts, cursors, live sources, rejections and the state hash; --check: is ingest up", "status"),
    Entry("convert", "convert a raw firehose frame capture to Jetstream v1 JSON lines", "convert"),
    Entry("audit-audio", "uploaded audio: dangling references and orphaned objects (JSON)", "audit_audio"),
    Entry("takedown", "take an account, record or audio object down (or --undo, --list)", "takedown"),
)
