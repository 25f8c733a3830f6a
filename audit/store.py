"""Tables of the stored audit log, and the DDL that makes them append-only.

Five tables on their own :data:`metadata` (the composition root's Alembic environment
combines it with its own):

* ``audit_entries`` — admitted events (canonical leaf bytes and their leaf hash), written in
  the caller's transaction so that an event exists exactly when the action it records does;
* ``audit_pending`` — admitted entries the sequencer has not placed in the tree yet. The only
  table that allows DELETE: the sequencer removes what it sequenced. Ids from a PostgreSQL
  sequence can commit out of order, so an id watermark would skip late commits; this queue
  does not;
* ``audit_leaves`` — gap-free tree indices ``0..n-1`` (level 0 of the tree);
* ``audit_nodes`` — the hash of every complete, aligned subtree of level 1 and above, so a
  proof costs O(log n) reads (see :mod:`audit.merkle`);
* ``audit_checkpoints`` — every signed checkpoint note.

``audit_entries``, ``audit_leaves``, ``audit_nodes`` and ``audit_checkpoints`` are
append-only at the database level: triggers reject UPDATE and DELETE (and TRUNCATE on
PostgreSQL) whoever asks. A superuser or the table owner can still drop the triggers; the
signed checkpoints and :func:`audit.verify.verify_export` are what catch that.

PostgreSQL roles
----------------

Run migrations as the owner of the schema and the service as a separate role that cannot
alter tables or triggers (see :data:`POSTGRES_RUNTIME_ROLE_SQL`)::

    CREATE ROLE kyso_app LOGIN PASSWORD '...';
    GRANT USAGE ON SCHEMA public TO kyso_app;
    GRANT SELECT, INSERT ON audit_entries, audit_leaves, audit_nodes, audit_checkpoints
        TO kyso_app;
    GRANT SELECT, INSERT, DELETE ON audit_pending TO kyso_app;
    GRANT USAGE ON SEQUENCE audit_entries_id_seq TO kyso_app;

No UPDATE, DELETE or TRUNCATE on the append-only tables, and no ownership: only the owner
may drop a trigger, so the runtime role cannot switch the protection off.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    Table,
    Text,
    text,
)

APPEND_ONLY_TABLES = ("audit_entries", "audit_leaves", "audit_nodes", "audit_checkpoints")
"""Tables whose rows can never be updated or deleted once written."""

APPEND_ONLY_MESSAGE = "audit tables are append-only"
"""The text of the error the triggers raise; tests and operators can match on it."""

POSTGRES_RUNTIME_ROLE_SQL = """\
-- Migrations run as the schema owner; the service connects as kyso_app.
CREATE ROLE kyso_app LOGIN PASSWORD 'change-me';
GRANT USAGE ON SCHEMA public TO kyso_app;
-- Append-only audit tables: read and insert, never update, delete or truncate.
GRANT SELECT, INSERT ON audit_entries, audit_leaves, audit_nodes, audit_checkpoints
    TO kyso_app;
-- The sequencer's queue: the only audit table rows are deleted from.
GRANT SELECT, INSERT, DELETE ON audit_pending TO kyso_app;
-- Entry ids come from the sequence behind audit_entries.id.
GRANT USAGE ON SEQUENCE audit_entries_id_seq TO kyso_app;
-- kyso_app owns nothing, so it can neither drop the append-only triggers nor alter tables.
"""
"""SQL to paste into deployment docs: the PostgreSQL runtime role of the service."""

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Constraint names for every table of the one schema (the composition root's too)."""

metadata = MetaData(naming_convention=NAMING_CONVENTION)
"""Metadata of the audit tables only; Alembic combines it with the composition root's."""

# SQLite only autoincrements an INTEGER PRIMARY KEY (the rowid alias), not a BIGINT one.
_Id = BigInteger().with_variant(Integer(), "sqlite")

audit_entries = Table(
    "audit_entries",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("leaf", LargeBinary, nullable=False, comment="canonical (RFC 8785) event JSON"),
    Column("leaf_hash", LargeBinary(32), nullable=False, comment="SHA-256(0x00 || leaf)"),
    comment="Admitted audit events; append-only.",
)

audit_pending = Table(
    "audit_pending",
    metadata,
    Column(
        "entry_id",
        _Id,
        ForeignKey("audit_entries.id"),
        primary_key=True,
        autoincrement=False,
    ),
    comment="Admitted entries not yet sequenced; the sequencer deletes what it places.",
)

audit_leaves = Table(
    "audit_leaves",
    metadata,
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("entry_id", _Id, ForeignKey("audit_entries.id"), nullable=False, unique=True),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    Index("ix_audit_leaves_leaf_hash", "leaf_hash"),
    comment="Tree indices 0..n-1 without gaps; level 0 of the Merkle tree; append-only.",
)

audit_nodes = Table(
    "audit_nodes",
    metadata,
    Column("level", SmallInteger, nullable=False, autoincrement=False),
    Column("idx", BigInteger, nullable=False, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
    PrimaryKeyConstraint("level", "idx"),
    comment="Hash of every complete aligned subtree of level >= 1; append-only.",
)

audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("root_hash", LargeBinary(32), nullable=False),
    Column("note", Text, nullable=False, comment="the signed checkpoint note"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    comment="Signed checkpoints, one per published tree size; append-only.",
)


# -- append-only triggers ------------------------------------------------------------------

_PG_FUNCTION = "audit_append_only"


def aware(moment: datetime) -> datetime:
    """A time read back from a timezone-aware column: SQLite hands back naive datetimes, and
    Kyso stores UTC only."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _sqlite_trigger_names(table: str) -> tuple[str, str]:
    return f"{table}_no_update", f"{table}_no_delete"


def _pg_trigger_names(table: str) -> tuple[str, str]:
    return f"{table}_append_only", f"{table}_no_truncate"


def append_only_ddl(dialect: str) -> list[str]:
    """Statements that make :data:`APPEND_ONLY_TABLES` append-only on ``dialect``."""
    statements: list[str] = []
    if dialect == "sqlite":
        for table in APPEND_ONLY_TABLES:
            no_update, no_delete = _sqlite_trigger_names(table)
            for name, op in ((no_update, "UPDATE"), (no_delete, "DELETE")):
                statements.append(
                    f"CREATE TRIGGER {name} BEFORE {op} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END"
                )
        return statements
    if dialect == "postgresql":
        statements.append(
            f"CREATE OR REPLACE FUNCTION {_PG_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$ "
            f"BEGIN RAISE EXCEPTION '{APPEND_ONLY_MESSAGE} (% on %)', TG_OP, TG_TABLE_NAME "
            "USING ERRCODE = 'insufficient_privilege'; END $$"
        )
        for table in APPEND_ONLY_TABLES:
            rows, truncate = _pg_trigger_names(table)
            statements.append(
                f"CREATE TRIGGER {rows} BEFORE UPDATE OR DELETE ON {table} "
                f"FOR EACH ROW EXECUTE FUNCTION {_PG_FUNCTION}()"
            )
            # TRUNCATE fires no row triggers; it needs its own statement-level one.
            statements.append(
                f"CREATE TRIGGER {truncate} BEFORE TRUNCATE ON {table} "
                f"FOR EACH STATEMENT EXECUTE FUNCTION {_PG_FUNCTION}()"
            )
        return statements
    raise ValueError(f"no append-only triggers for the {dialect!r} dialect")


def drop_append_only_ddl(dialect: str) -> list[str]:
    """Statements that remove what :func:`append_only_ddl` created (downgrade, tests)."""
    statements: list[str] = []
    if dialect == "sqlite":
        for table in APPEND_ONLY_TABLES:
            statements.extend(f"DROP TRIGGER IF EXISTS {n}" for n in _sqlite_trigger_names(table))
        return statements
    if dialect == "postgresql":
        for table in APPEND_ONLY_TABLES:
            statements.extend(
                f"DROP TRIGGER IF EXISTS {n} ON {table}" for n in _pg_trigger_names(table)
            )
        statements.append(f"DROP FUNCTION IF EXISTS {_PG_FUNCTION}()")
        return statements
    raise ValueError(f"no append-only triggers for the {dialect!r} dialect")


_PG_ENQUEUE_FUNCTION = "kyso_audit_enqueue"
_ENQUEUE_TRIGGER = "audit_entries_enqueue"


def enqueue_ddl(dialect: str) -> list[str]:
    """A trigger that queues every new entry for the sequencer.

    Admission is then a single INSERT: the queue row is written by the database in the
    same transaction, which saves a statement (and on PostgreSQL a round trip) per event.
    """
    if dialect == "sqlite":
        return [
            "CREATE TRIGGER audit_entries_enqueue AFTER INSERT ON audit_entries "
            "BEGIN INSERT INTO audit_pending (entry_id) VALUES (NEW.id); END"
        ]
    if dialect == "postgresql":
        return [
            "CREATE OR REPLACE FUNCTION kyso_audit_enqueue() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN "
            "INSERT INTO audit_pending (entry_id) VALUES (NEW.id); RETURN NULL; END $$",
            f"CREATE TRIGGER {_ENQUEUE_TRIGGER} AFTER INSERT ON audit_entries "
            f"FOR EACH ROW EXECUTE FUNCTION {_PG_ENQUEUE_FUNCTION}()",
        ]
    raise ValueError(f"no enqueue trigger for the {dialect!r} dialect")


def drop_enqueue_ddl(dialect: str) -> list[str]:
    if dialect == "sqlite":
        return [f"DROP TRIGGER IF EXISTS {_ENQUEUE_TRIGGER}"]
    if dialect == "postgresql":
        return [
            f"DROP TRIGGER IF EXISTS {_ENQUEUE_TRIGGER} ON audit_entries",
            f"DROP FUNCTION IF EXISTS {_PG_ENQUEUE_FUNCTION}()",
        ]
    raise ValueError(f"no enqueue trigger for the {dialect!r} dialect")


def create_append_only_triggers(connection: Connection) -> None:
    """Install the append-only triggers through ``connection`` (in its transaction)."""
    for statement in append_only_ddl(connection.dialect.name):
        connection.execute(text(statement))


def drop_append_only_triggers(connection: Connection) -> None:
    """Remove the append-only triggers; what an attacker with owner access would do."""
    for statement in drop_append_only_ddl(connection.dialect.name):
        connection.execute(text(statement))
