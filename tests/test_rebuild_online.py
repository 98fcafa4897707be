"""The online `rebuild` loads shadow tables on several connections and swaps them in (indexer/fold/shadow.py): the
tables it swaps in carry every name, trigger, grant and storage option the migrations gave the old ones; readers
see the old index until the swap; a rebuild that fails anywhere, in a task or in the swap, leaves the old index
as it was and no shadow schema behind, and one that could not swap does not start; and the page cache hears of
the swap."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import subprocess
import sys
from typing import Any

import psycopg
import pytest

from indexer.atproto.lexicon import Validator
from indexer.db import locks
from indexer.db.notify import INDEX_CHANGED, TABLES
from indexer.db.schema import FOLD_STATE, PROJECTIONS
from indexer.fold import shadow, sql
from indexer.fold.rebuild import rebuild
from indexer.fold.shadow import SCHEMA
from indexer.fold.writer import BatchWriter
from indexer.status import status
from tests.helpers import ingest, rows, rows_exec
from tests.test_rebuild_setbased import events, snapshot

_TABLES = list(FOLD_STATE + PROJECTIONS)

# What the migrations gave each index table, by name: a swapped-in table must carry all of it.
_CATALOG = {
    "indexes": "SELECT c.relname, i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i"
    " JOIN pg_class c ON c.oid = i.indrelid WHERE c.relname = ANY(%s) ORDER BY 1, 2",
    "constraints": "SELECT c.relname, k.conname, pg_get_constraintdef(k.oid) FROM pg_constraint k"
    " JOIN pg_class c ON c.oid = k.conrelid WHERE c.relname = ANY(%s) ORDER BY 1, 2",
    "triggers": "SELECT c.relname, t.tgname, pg_get_triggerdef(t.oid) FROM pg_trigger t"
    " JOIN pg_class c ON c.oid = t.tgrelid WHERE c.relname = ANY(%s) AND NOT t.tgisinternal ORDER BY 1, 2",
    "tables": "SELECT c.relname, n.nspname, c.reloptions::text, c.relacl::text, pg_get_userbyid(c.relowner),"
    " c.relpersistence FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE c.relname = ANY(%s) AND c.relkind = 'r' ORDER BY 1",
    "columns": "SELECT c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,"
    " pg_get_expr(d.adbin, d.adrelid), a.attcollation::regcollation::text FROM pg_attribute a"
    " JOIN pg_class c ON c.oid = a.attrelid LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum"
    " WHERE c.relname = ANY(%s) AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped ORDER BY 1, 2",
}


async def catalog(db_url: str) -> dict[str, list[tuple[Any, ...]]]:
    return {name: await rows(db_url, query, _TABLES) for name, query in _CATALOG.items()}


async def cli(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`plyr-appview --database-url DB ARGS...` as an operator runs it, with none of our variables set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PLYR_APPVIEW_", "DATABASE_"))}
    command = [sys.executable, "-m", "appview.cli", "--database-url", db_url, *args]
    return await asyncio.to_thread(subprocess.run, command, env=env, capture_output=True, text=True, timeout=120)


async def shadow_schema_exists(db_url: str) -> bool:
    return bool(await rows(db_url, "SELECT 1 FROM pg_namespace WHERE nspname = %s", SCHEMA))


async def test_swapped_in_tables_carry_every_name_trigger_grant_and_option(db_url: str, validator: Validator) -> None:
    role = f"reader_{secrets.token_hex(4)}"
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute(f"CREATE ROLE {role}")
        await conn.execute(f"GRANT SELECT ON tracks, likes TO {role}")
    try:
        await ingest(db_url, validator, events(300, 8))
        before = await catalog(db_url)
        live = await snapshot(db_url)
        assert len(before["indexes"]) > 20 and {t for t, _, _ in before["triggers"]} == set(_TABLES) & set(TABLES)
        assert any(role in str(acl) for _, _, _, acl, _, _ in before["tables"])
        assert any("fillfactor" in str(options) for _, _, options, _, _, _ in before["tables"])
        old_oid = (await rows(db_url, "SELECT 'tracks'::regclass::oid"))[0][0]

        assert await rebuild(db_url, workers=2) > 250

        assert (await rows(db_url, "SELECT 'tracks'::regclass::oid"))[0][0] != old_oid  # a new table, swapped in
        assert await catalog(db_url) == before
        assert await snapshot(db_url) == live
        assert not await shadow_schema_exists(db_url)
        # Analysed before the swap: the planner knows the new tables at once.
        analysed = await rows(
            db_url, "SELECT count(DISTINCT tablename) FROM pg_stats WHERE tablename IN ('tracks', 'likes', 'records')"
        )
        assert analysed == [(3,)]
        # With the server's statistics target (100 buckets), not the rebuild's working one (10).
        bounds = await rows(
            db_url,
            "SELECT cardinality(histogram_bounds::text::text[]) FROM pg_stats"
            " WHERE tablename = 'tracks' AND attname = 'sort_at'",
        )
        assert bounds and bounds[0][0] > 11, bounds
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            await conn.execute(f"SET ROLE {role}")
            assert (await (await conn.execute("SELECT count(*) FROM tracks")).fetchone()) == (len(live[1]["tracks"]),)
    finally:
        async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
            await conn.execute(f"DROP OWNED BY {role}")
            await conn.execute(f"DROP ROLE {role}")


@pytest.mark.parametrize("workers", [1, 3])
async def test_any_number_of_workers_builds_the_same_index(db_url: str, validator: Validator, workers: int) -> None:
    await ingest(db_url, validator, events(400, 12), events(300, 13))
    live = await snapshot(db_url)
    await rebuild(db_url, workers=workers)
    assert await snapshot(db_url) == live


async def test_the_swap_is_announced_and_the_new_tables_announce_their_changes(
    db_url: str, validator: Validator
) -> None:
    items = events(200, 21)
    await ingest(db_url, validator, items[:100])
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as listener:
        await listener.execute(f"LISTEN {INDEX_CHANGED}")

        async def heard() -> int:
            seen = 0
            async for _ in listener.notifies(timeout=1.0):
                seen += 1
            return seen

        await rebuild(db_url)
        assert await heard() >= 1  # the swap: dropping a table fires no trigger
        await ingest(db_url, validator, items[100:])
        assert await heard() >= 1  # the swapped-in tables have their triggers


async def test_a_failed_task_leaves_the_old_index_and_no_shadow(
    db_url: str, validator: Validator, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = events(300, 30)
    await ingest(db_url, validator, items[:200])
    before = await snapshot(db_url)
    monkeypatch.setattr(sql, "APPLY_COUNTS", ("SELECT 1 / 0",))
    with pytest.raises(psycopg.errors.DivisionByZero):  # the failure itself, not a group of them
        await rebuild(db_url, workers=2)
    assert await snapshot(db_url) == before
    assert not await shadow_schema_exists(db_url)
    monkeypatch.undo()
    # The fold lock was released: live ingest goes on, and a rebuild agrees with it.
    await ingest(db_url, validator, items[200:])
    live = await snapshot(db_url)
    await rebuild(db_url)
    assert await snapshot(db_url) == live


async def test_a_swap_failing_half_way_leaves_the_old_index(
    db_url: str, validator: Validator, monkeypatch: pytest.MonkeyPatch
) -> None:
    await ingest(db_url, validator, events(200, 32))
    before, tables = await snapshot(db_url), await catalog(db_url)
    describe = shadow.describe

    async def broken_last_trigger(conn: Any, names: Any) -> tuple[shadow.TableDef, ...]:
        defs = await describe(conn, names)
        last = defs[-1]
        broken = f"CREATE TRIGGER broken AFTER INSERT ON {last.qualified} EXECUTE FUNCTION no_such_function()"
        return (*defs[:-1], dataclasses.replace(last, triggers=(*last.triggers, broken)))

    monkeypatch.setattr(shadow, "describe", broken_last_trigger)
    with pytest.raises(psycopg.errors.UndefinedFunction):  # after every other table was swapped
        await rebuild(db_url)
    assert await snapshot(db_url) == before
    assert await catalog(db_url) == tables
    assert not await shadow_schema_exists(db_url)


async def test_what_depends_on_an_index_table_stops_the_rebuild_first_and_the_cli_says_why(
    db_url: str, validator: Validator
) -> None:
    await ingest(db_url, validator, events(200, 31))
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute("CREATE VIEW operator_titles AS SELECT did, title FROM tracks")
    before = await snapshot(db_url)
    done = await cli(db_url, "rebuild", "--no-progress")
    err = done.stderr.strip().splitlines()
    assert done.returncode == 1 and done.stdout == ""
    assert len(err) == 1 and "operator_titles" in err[0] and "rebuild --offline" in err[0], done.stderr
    assert await snapshot(db_url) == before
    assert not await shadow_schema_exists(db_url)
    assert (await rows(db_url, "SELECT count(*) FROM operator_titles"))[0][0] == len(before[1]["tracks"])


async def test_readers_see_the_old_index_until_the_swap_which_waits_for_them(db_url: str, validator: Validator) -> None:
    items = events(300, 40)
    await ingest(db_url, validator, items)
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        # The index drifted from the log (what a rebuild is for): the old tables hold a row the log does not.
        await conn.execute("UPDATE tracks SET title = 'drifted' WHERE uri = (SELECT min(uri) FROM tracks)")
    async with await psycopg.AsyncConnection.connect(db_url) as reader:
        # A reader in the middle of a long read holds the tables the swap must take.
        assert (await (await reader.execute("SELECT count(*) FROM tracks WHERE title = 'drifted'")).fetchone()) == (1,)
        running = asyncio.create_task(rebuild(db_url))
        for _ in range(200):
            waiting = await rows(
                db_url,
                "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                " WHERE NOT l.granted AND l.mode = 'AccessExclusiveLock' AND c.relname = 'tracks'",
            )
            if waiting[0][0]:
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the rebuild never reached the swap")
        await asyncio.sleep(2.5)  # past one lock timeout: the swap lets readers through and tries again
        assert not running.done()
        again = await (await reader.execute("SELECT count(*) FROM tracks WHERE title = 'drifted'")).fetchone()
        assert again == (1,)
        await reader.commit()
        await asyncio.wait_for(running, 30)
    assert (await rows(db_url, "SELECT count(*) FROM tracks WHERE title = 'drifted'"))[0][0] == 0


async def test_a_live_writer_waits_for_the_rebuild_and_folds_into_the_swapped_in_tables(
    db_factory: Any, validator: Validator
) -> None:
    """The writer's long-lived connection (its temp tables, its prepared statements) outlives the tables it was
    folding into: its next batch waits for the swap, then lands in the new tables as in an index never rebuilt."""
    items = events(900, 50)
    first, second, third = items[:300], items[300:600], items[600:]
    rebuilt, reference = db_factory(), db_factory()
    await ingest(reference, validator, first, second, third)
    async with BatchWriter(rebuilt, validator=validator) as writer:
        await writer.write(list(first))
        async with await psycopg.AsyncConnection.connect(rebuilt) as holder:
            # The rebuild is made to wait at its swap (a reader holds `tracks`), so the writer's batch comes
            # while the rebuild holds the fold lock.
            await holder.execute("SELECT count(*) FROM tracks")
            running = asyncio.create_task(rebuild(rebuilt))
            for _ in range(200):
                if await rows(rebuilt, "SELECT 1 FROM pg_namespace WHERE nspname = %s", SCHEMA):
                    break
                await asyncio.sleep(0.02)
            folding = asyncio.create_task(writer.write(list(second)))
            await asyncio.sleep(0.5)
            assert not folding.done()  # waiting for the fold lock
            await holder.commit()
            await asyncio.wait_for(running, 30)
            await asyncio.wait_for(folding, 30)
        await writer.write(list(third))
    # Receive times differ between the two databases: the state hash is what the index shows.
    assert (await snapshot(rebuilt))[0] == (await snapshot(reference))[0]
    # And row for row, what the live fold left is what the log gives.
    folded = await snapshot(rebuilt)
    await rebuild(rebuilt, online=False)
    assert await snapshot(rebuilt) == folded


async def test_status_tells_a_running_rebuild_from_one_left_behind(db_url: str, validator: Validator) -> None:
    await ingest(db_url, validator, events(100, 60))
    assert (await status(db_url))["rebuild"] is None
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        # What a rebuild killed outright (SIGKILL, no cleanup) leaves: its schema with part of a table loaded.
        await conn.execute(f"CREATE SCHEMA {SCHEMA}")
        await conn.execute(f"CREATE TABLE {SCHEMA}.tracks AS SELECT * FROM tracks")
    left = (await status(db_url))["rebuild"]
    assert left["running"] is False and left["shadow_bytes"] > 0 and "next rebuild drops it" in left["note"]
    shown = await cli(db_url, "status")
    assert shown.returncode == 0, shown.stderr
    assert f"rebuild: schema {SCHEMA}," in shown.stdout and "killed" in shown.stdout
    async with await psycopg.AsyncConnection.connect(db_url) as holder:
        await holder.execute(locks.LOCK_FOLD_EXCLUSIVE)  # as a running rebuild holds it
        assert (await status(db_url))["rebuild"]["running"] is True
    live = await snapshot(db_url)
    await rebuild(db_url)
    assert (await status(db_url))["rebuild"] is None
    assert await snapshot(db_url) == live


async def test_a_swap_that_never_gets_the_tables_gives_up_and_changes_nothing(
    db_url: str, validator: Validator, monkeypatch: pytest.MonkeyPatch
) -> None:
    await ingest(db_url, validator, events(150, 70))
    before = await snapshot(db_url)
    monkeypatch.setattr(shadow, "_LOCK_ATTEMPTS", 2)
    monkeypatch.setattr(shadow, "_LOCK_TIMEOUT", "200ms")
    async with await psycopg.AsyncConnection.connect(db_url) as holder:
        await holder.execute("SELECT count(*) FROM likes")  # an open transaction, never ended
        with pytest.raises(psycopg.errors.LockNotAvailable):
            await rebuild(db_url)
        assert not await shadow_schema_exists(db_url)
    assert await snapshot(db_url) == before


async def test_a_rebuild_stopped_while_it_waits_for_another_leaves_that_ones_shadow(db_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(db_url) as other:
        # Another rebuild, loading: it holds the fold lock and its shadow schema exists.
        await other.execute(locks.LOCK_FOLD_EXCLUSIVE)
        await rows_exec(db_url, f"CREATE SCHEMA {SCHEMA}")
        waiting = asyncio.create_task(rebuild(db_url))
        await asyncio.sleep(0.5)
        assert not waiting.done()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert await shadow_schema_exists(db_url)
