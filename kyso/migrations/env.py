"""Alembic environment: the engine is handed in by :func:`kyso.db.upgrade`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from audit.store import metadata as audit_metadata
from kyso.errors import StorageError
from kyso.tables import metadata as kyso_metadata
from pki.store import metadata as pki_metadata
from signer.store import metadata as signer_metadata

engine = context.config.attributes["engine"]


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=[kyso_metadata, audit_metadata, pki_metadata, signer_metadata],
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if engine.dialect.name == "sqlite":
    with engine.connect() as raw:
        # pysqlite commits before DDL on its own, so a failing migration would leave half a
        # schema (a copied table, say); in autocommit mode the BEGIN here is the only one
        # and every statement up to COMMIT is one transaction. Batch mode alters a table by
        # copying it and dropping the original, which enforced foreign keys pointing at it
        # forbid; they are switched off (only possible outside a transaction) and checked
        # before the commit instead.
        connection = raw.execution_options(isolation_level="AUTOCOMMIT")
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        try:
            connection.exec_driver_sql("BEGIN")
            try:
                run(connection)
                broken = connection.execute(text("PRAGMA foreign_key_check")).first()
                if broken is not None:
                    table, row, parent, _ = broken
                    raise StorageError(
                        f"database migration failed: it would break a foreign key ({table} "
                        f"row {row} names a missing {parent} row); nothing was changed"
                    )
            except BaseException:
                connection.exec_driver_sql("ROLLBACK")
                raise
            connection.exec_driver_sql("COMMIT")
        finally:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
else:
    with engine.begin() as connection:
        run(connection)
