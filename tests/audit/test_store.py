"""The audit tables: migration 0002 up and down, and append-only triggers on both engines."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import DBAPIError

from audit.log import AuditLog
from audit.store import APPEND_ONLY_TABLES, POSTGRES_RUNTIME_ROLE_SQL, drop_append_only_triggers
from kyso.db import downgrade, make_engine, upgrade
from tests.audit.conftest import ORIGIN, event
from tests.audit.signers import SoftwareSigner

AUDIT_TABLES = {*APPEND_ONLY_TABLES, "audit_pending"}


@pytest.fixture
def filled(engine: Engine) -> Engine:
    """A log with three sequenced entries (so a level-1 node) and a checkpoint, then two
    pending entries: the checkpoint's own event and one more."""
    log = AuditLog(engine=engine, origin=ORIGIN, signer=SoftwareSigner.ed25519(ORIGIN))
    with engine.begin() as connection:
        for i in range(3):
            AuditLog.append(connection, event(i))
    assert log.publish_checkpoint() is not None
    with engine.begin() as connection:
        AuditLog.append(connection, event(9))
    return engine


def test_migration_up_and_down(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        upgrade(engine)
        assert set(inspect(engine).get_table_names()) >= AUDIT_TABLES
        downgrade(engine, "0001")
        names = set(inspect(engine).get_table_names())
        assert not AUDIT_TABLES & names
        assert "hsm_keys" in names
        upgrade(engine)
        assert set(inspect(engine).get_table_names()) >= AUDIT_TABLES
    finally:
        engine.dispose()


@pytest.mark.parametrize("table", APPEND_ONLY_TABLES)
@pytest.mark.parametrize(
    ("statement", "where"),
    [("UPDATE {table} SET {column} = {column}", ""), ("DELETE FROM {table}", "")],
)
def test_append_only_tables_reject_update_and_delete(
    filled: Engine, table: str, statement: str, where: str
) -> None:
    column = {
        "audit_entries": "leaf",
        "audit_leaves": "leaf_hash",
        "audit_nodes": "hash",
        "audit_checkpoints": "note",
    }[table]
    with pytest.raises(DBAPIError, match="append-only"), filled.begin() as connection:
        connection.execute(text(statement.format(table=table, column=column) + where))
    with filled.connect() as connection:
        assert connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() > 0


@pytest.mark.postgres
@pytest.mark.parametrize("table", APPEND_ONLY_TABLES)
def test_append_only_tables_reject_truncate_on_postgresql(postgres_url: str, table: str) -> None:
    engine = make_engine(postgres_url)
    try:
        upgrade(engine)
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as connection:
            connection.execute(text(f"TRUNCATE {table} CASCADE"))
    finally:
        engine.dispose()


def test_pending_allows_delete(filled: Engine) -> None:
    with filled.begin() as connection:
        assert connection.execute(text("DELETE FROM audit_pending")).rowcount == 2


def test_dropping_the_triggers_lifts_the_protection(filled: Engine) -> None:
    # The attacker-with-owner-access scenario the signed checkpoints exist for.
    with filled.begin() as connection:
        drop_append_only_triggers(connection)
        connection.execute(text("UPDATE audit_nodes SET hash = hash"))


def test_runtime_role_text_grants_no_update_or_delete_on_append_only_tables() -> None:
    lines = [line for line in POSTGRES_RUNTIME_ROLE_SQL.splitlines() if "GRANT" in line]
    assert not any("UPDATE" in line or "TRUNCATE" in line for line in lines)
    assert any("DELETE ON audit_pending" in line for line in lines)
