"""Database engine and schema migrations (SQLite for the embedded default, PostgreSQL in
production). Tables are declared in :mod:`kyso.tables`; Alembic owns the schema."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from kyso.errors import StorageError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def make_engine(url: str, *, background_wal_checkpoints: bool = False) -> Engine:
    """An engine with the per-backend settings Kyso relies on.

    ``background_wal_checkpoints`` (SQLite, the long-running service): commits never copy
    the write-ahead log back into the database themselves; :func:`checkpoint_wal`, called
    periodically from a background task, does. Otherwise the commit that crosses SQLite's
    threshold (1,000 pages) pays for the copy and its fsyncs — a 100–200 ms stall that was
    the p99 of a signing request."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        if background_wal_checkpoints:
            event.listen(engine, "connect", _no_autocheckpoint)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers proceed while one writer commits; foreign keys are off by default.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # FULL: a commit is on disk when it returns, so an audit event that was committed
    # before a signed document was handed out survives a power loss too.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def _no_autocheckpoint(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()


def checkpoint_wal(engine: Engine) -> None:
    """Copy what the write-ahead log holds back into the SQLite database, without waiting
    for readers or writers (PASSIVE); a no-op on other databases."""
    if engine.dialect.name != "sqlite":
        return
    with engine.connect() as connection:
        connection.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")


def _alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (idempotent)."""
    try:
        command.upgrade(_alembic_config(engine), revision)
    except SQLAlchemyError as ex:
        raise StorageError(f"database migration failed: {_describe(ex)}") from ex


def downgrade(engine: Engine, revision: str) -> None:
    try:
        command.downgrade(_alembic_config(engine), revision)
    except SQLAlchemyError as ex:
        raise StorageError(f"database downgrade failed: {_describe(ex)}") from ex


@functools.cache
def head_revision() -> str | None:
    return ScriptDirectory.from_config(
        _alembic_config(create_engine("sqlite://"))
    ).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def check(engine: Engine) -> str:
    """Readiness: the database answers and its schema is at the head revision."""
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
            current = MigrationContext.configure(connection).get_current_revision()
    except SQLAlchemyError as ex:
        raise StorageError(f"database unreachable: {_describe(ex)}") from ex
    head = head_revision()
    if current != head:
        raise StorageError(f"schema at revision {current}, expected {head}; run 'kyso db upgrade'")
    return f"{engine.dialect.name}, schema {current}"


def _describe(ex: SQLAlchemyError) -> str:
    # The first line of the DBAPI message, without the SQL statement or parameters.
    original = getattr(ex, "orig", None) or ex
    return str(original).splitlines()[0] if str(original) else type(ex).__name__


def describe_url(url: str) -> str:
    """The URL with any password masked, for logs and CLI output."""
    return make_url(url).render_as_string(hide_password=True)
