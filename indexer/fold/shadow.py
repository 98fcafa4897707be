"""The shadow tables of a parallel `rebuild`: a copy of each index table in schema `plyr_rebuild`, loaded by
several connections while the API keeps reading the old tables, then swapped in under the old names.

Contract:
- A shadow table is its table as the migrations left it: columns, defaults, check and not-null constraints,
  storage parameters, and its primary key, unique and exclusion constraints under their own names. Its unique
  indexes exist before the load (ON CONFLICT infers its targets from them); its plain indexes (`indexes`, under
  their own names) are for the caller to build after the load, one sort each, and then to analyse the table, so
  the planner never meets a swapped-in table without statistics.
- `swap` runs in the transaction that holds the fold lock, once every shadow table is loaded: it takes every
  old table at once, drops it and moves its shadow in, then gives the new table the old one's triggers, grants
  and owner. Every name a migration or a query refers to (table, index, constraint, trigger) is the same after
  as before; readers wait only for the swap itself, and see the old index or the new one, never a mix. Dropping
  a table fires no trigger, so `swap` announces the change itself (indexer/db/notify.py).
- A failed rebuild leaves nothing but the schema `plyr_rebuild` (which `create` drops first), and the old index
  untouched.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

from psycopg import errors

from indexer.db.notify import INDEX_CHANGED
from indexer.fold.apply import Connection

log = logging.getLogger(__name__)

SCHEMA = "plyr_rebuild"

# Count deltas of the counted collections, each projected on its own connection (whose `fold_deltas` is private
# to it), gathered for the one statement that applies them to the tracks.
COUNT_DELTAS = f"{SCHEMA}.count_deltas"

# Readers hold their tables only for one statement, but one may be long: the swap waits this long for its locks,
# then lets readers through and tries again.
_LOCK_TIMEOUT = "2s"
_LOCK_ATTEMPTS = 30


@dataclass(frozen=True)
class TableDef:
    """What a table carries beyond its columns, read from the catalog before the rebuild. Identifiers in SQL are
    quoted by the database itself (`quote_ident`), as its own definitions (pg_get_indexdef, ...) quote them."""

    name: str  # as the fold names it (`tracks`)
    schema: str  # quoted
    ident: str  # the table's name, quoted
    options: tuple[str, ...]
    owner: str | None  # quoted, when it is not the role that rebuilds
    constraints: tuple[tuple[str, str], ...] = ()  # (quoted name, definition): primary key, unique, exclusion
    unique_indexes: tuple[str, ...] = ()  # DDL of the unique indexes no constraint owns, on the shadow table
    indexes: tuple[tuple[str, str], ...] = ()  # (name, DDL on the shadow table) of the plain indexes
    triggers: tuple[str, ...] = ()  # DDL, on the table's own name (it holds it again after the swap)
    grants: tuple[str, ...] = ()

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.ident}"

    @property
    def shadow(self) -> str:
        return f"{SCHEMA}.{self.ident}"


_TABLE = """
SELECT quote_ident(n.nspname), quote_ident(c.relname), coalesce(c.reloptions, '{}'),
       CASE WHEN pg_get_userbyid(c.relowner) <> current_user THEN quote_ident(pg_get_userbyid(c.relowner)) END,
       c.oid
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass(%s)
"""
_CONSTRAINTS = """
SELECT quote_ident(conname), pg_get_constraintdef(oid) FROM pg_constraint
WHERE conrelid = %s AND contype IN ('p', 'u', 'x') ORDER BY conname
"""
_INDEXES = """
SELECT c.relname, pg_get_indexdef(i.indexrelid), i.indisunique FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = %s AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
ORDER BY c.relname
"""
_TRIGGERS = "SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = %s AND NOT tgisinternal ORDER BY tgname"
_GRANTS = """
SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END,
       a.privilege_type, a.is_grantable
FROM pg_class c, aclexplode(c.relacl) a WHERE c.oid = %s AND a.grantee <> c.relowner ORDER BY 1, 2
"""


# Objects outside the index tables that name them (an operator's view, a foreign key): a table cannot be dropped
# under them, so the swap would fail; found before anything is built.
_DEPENDENTS = """
SELECT DISTINCT r.ev_class::regclass::text, d.refobjid::regclass::text
FROM pg_depend d JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND r.oid = d.objid
WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = ANY(%(tables)s::regclass[]) AND r.ev_class <> d.refobjid
UNION
SELECT conrelid::regclass::text, confrelid::regclass::text FROM pg_constraint
WHERE contype = 'f' AND confrelid = ANY(%(tables)s::regclass[])
ORDER BY 1, 2
"""


class DependentObjects(RuntimeError):
    """Something outside the index depends on one of its tables, which the swap replaces."""


def _on_shadow(ddl: str, table: TableDef) -> str:
    """An index definition of `table` (pg_get_indexdef) made to build the same index on its shadow."""
    target = f" ON {table.qualified} USING "
    if ddl.count(target) != 1:
        raise RuntimeError(f"unexpected index definition on {table.qualified}: {ddl}")
    return ddl.replace(target, f" ON {table.shadow} USING ")


async def describe(conn: Connection, tables: Sequence[str]) -> tuple[TableDef, ...]:
    """Each table as the shadow must copy it; DependentObjects if something else depends on one of them."""
    defs: list[TableDef] = []
    for name in tables:
        row = await (await conn.execute(_TABLE, (name,))).fetchone()
        if row is None:
            raise RuntimeError(f"table {name} does not exist: run `plyr-appview migrate` first")
        options = tuple(str(o) for o in row[2]) if isinstance(row[2], list) else ()
        base = TableDef(name, str(row[0]), str(row[1]), options, None if row[3] is None else str(row[3]))
        oid = row[4]
        constraints = [(str(n), str(d)) for n, d in await (await conn.execute(_CONSTRAINTS, (oid,))).fetchall()]
        indexes = await (await conn.execute(_INDEXES, (oid,))).fetchall()
        triggers = [str(d) for (d,) in await (await conn.execute(_TRIGGERS, (oid,))).fetchall()]
        grants = [
            f"GRANT {priv} ON {base.qualified} TO {grantee}{' WITH GRANT OPTION' if grantable else ''}"
            for grantee, priv, grantable in await (await conn.execute(_GRANTS, (oid,))).fetchall()
        ]
        defs.append(
            replace(
                base,
                constraints=tuple(constraints),
                unique_indexes=tuple(_on_shadow(str(ddl), base) for _, ddl, unique in indexes if unique),
                indexes=tuple((str(name), _on_shadow(str(ddl), base)) for name, ddl, unique in indexes if not unique),
                triggers=tuple(triggers),
                grants=tuple(grants),
            )
        )
    dependents = await (await conn.execute(_DEPENDENTS, {"tables": list(tables)})).fetchall()
    if dependents:
        named = ", ".join(f"{dependent} depends on {table}" for dependent, table in dependents)
        raise DependentObjects(named)
    return tuple(defs)


async def create(conn: Connection, tables: Sequence[TableDef]) -> None:
    """The empty shadow tables, with their constraints and unique indexes (autocommit: every connection of the
    rebuild loads them)."""
    await drop(conn)
    await conn.execute(f"CREATE SCHEMA {SCHEMA}")
    for t in tables:
        options = f" WITH ({', '.join(t.options)})" if t.options else ""
        await conn.execute(f"CREATE TABLE {t.shadow} (LIKE {t.qualified} INCLUDING ALL EXCLUDING INDEXES){options}")
        for name, definition in t.constraints:
            await conn.execute(f"ALTER TABLE {t.shadow} ADD CONSTRAINT {name} {definition}")
        for ddl in t.unique_indexes:
            await conn.execute(ddl)
    await conn.execute(f"CREATE UNLOGGED TABLE {COUNT_DELTAS} (uri text, likes int, comments int, plays int)")


async def drop(conn: Connection) -> None:
    await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")


async def _lock_all(conn: Connection, tables: Sequence[TableDef]) -> None:
    names = ", ".join(t.qualified for t in tables)
    for attempt in range(1, _LOCK_ATTEMPTS + 1):
        try:
            async with conn.transaction():  # a savepoint: a timed-out attempt leaves the rebuild's transaction
                await conn.execute(f"SET LOCAL lock_timeout = '{_LOCK_TIMEOUT}'")
                await conn.execute(f"LOCK TABLE {names} IN ACCESS EXCLUSIVE MODE")
                await conn.execute("SET LOCAL lock_timeout = 0")
            return
        except (errors.LockNotAvailable, errors.DeadlockDetected) as exc:
            if attempt == _LOCK_ATTEMPTS:
                raise
            log.info("rebuild swap waits for readers", extra={"attempt": attempt, "error": type(exc).__name__})
            await asyncio.sleep(0.1 * attempt)


async def swap(conn: Connection, tables: Sequence[TableDef]) -> None:
    """Put every loaded shadow table in its table's place, in the caller's transaction (see the contract)."""
    await _lock_all(conn, tables)
    for t in tables:
        await conn.execute(f"DROP TABLE {t.qualified}")
        await conn.execute(f"ALTER TABLE {t.shadow} SET SCHEMA {t.schema}")
        for ddl in t.triggers:
            await conn.execute(ddl)
        for grant in t.grants:
            await conn.execute(grant)
        if t.owner is not None:
            await conn.execute(f"ALTER TABLE {t.qualified} OWNER TO {t.owner}")
    await drop(conn)
    await conn.execute("SELECT pg_notify(%s, '')", (INDEX_CHANGED,))
