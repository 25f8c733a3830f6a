"""Engine set-up and Alembic migrations, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Connection, Engine, insert, inspect, select, text

from kyso import db
from kyso.errors import StorageError
from kyso.tables import hsm_keys

HSM_KEYS_COLUMNS = {"key_id", "token_serial", "label", "spec", "public_key", "created_at"}


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = db.make_engine(database_url)
    yield engine
    engine.dispose()


def _tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def _row(key_id: str = "ab" * 20, label: str = "Nguyễn Văn An") -> dict[str, object]:
    return {
        "key_id": key_id,
        "token_serial": "0123456789abcdef",
        "label": label,
        "spec": "ec-p256",
        "public_key": b"\x30\x59" + bytes(89),
        "created_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    }


def test_head_revision_exists():
    assert db.head_revision()


def test_upgrade_to_head_creates_tables(engine: Engine):
    assert db.current_revision(engine) is None
    db.upgrade(engine)

    assert db.current_revision(engine) == db.head_revision()
    assert {"hsm_keys", "alembic_version"} <= _tables(engine)
    columns = {c["name"]: c for c in inspect(engine).get_columns("hsm_keys")}
    assert set(columns) == HSM_KEYS_COLUMNS
    assert not any(c["nullable"] for c in columns.values())
    assert inspect(engine).get_pk_constraint("hsm_keys")["constrained_columns"] == ["key_id"]


def test_hsm_keys_round_trip(engine: Engine):
    db.upgrade(engine)
    with engine.begin() as connection:
        connection.execute(insert(hsm_keys).values(**_row()))
    with engine.connect() as connection:
        row = connection.execute(select(hsm_keys)).one()
    assert row.label == "Nguyễn Văn An"
    assert row.public_key == b"\x30\x59" + bytes(89)
    assert row.spec == "ec-p256"


def test_upgrade_is_idempotent(engine: Engine):
    db.upgrade(engine)
    with engine.begin() as connection:
        connection.execute(insert(hsm_keys).values(**_row()))

    db.upgrade(engine)
    db.upgrade(engine, "head")

    assert db.current_revision(engine) == db.head_revision()
    with engine.connect() as connection:
        assert connection.execute(select(hsm_keys.c.label)).scalars().all() == ["Nguyễn Văn An"]


def test_downgrade_to_base_and_upgrade_again(engine: Engine):
    db.upgrade(engine)
    db.downgrade(engine, "base")

    assert db.current_revision(engine) is None
    assert "hsm_keys" not in _tables(engine)

    db.upgrade(engine)
    assert db.current_revision(engine) == db.head_revision()
    assert "hsm_keys" in _tables(engine)
    with engine.begin() as connection:
        connection.execute(insert(hsm_keys).values(**_row()))


def test_check_passes_at_head(engine: Engine):
    db.upgrade(engine)
    detail = db.check(engine)
    assert engine.dialect.name in detail
    assert str(db.head_revision()) in detail


def test_check_fails_on_an_empty_database(engine: Engine):
    with pytest.raises(StorageError, match=r"schema at revision None, expected .*kyso db upgrade"):
        db.check(engine)


def test_check_fails_when_behind(engine: Engine):
    db.upgrade(engine)
    db.downgrade(engine, "base")
    with pytest.raises(StorageError, match="expected") as info:
        db.check(engine)
    assert info.value.code == "kyso.storage"


@pytest.mark.parametrize(
    ("operation", "match"),
    [
        (db.check, "database unreachable"),
        (db.upgrade, "database migration failed"),
    ],
)
def test_unreachable_database_is_a_storage_error(operation, match):
    engine = db.make_engine("postgresql+psycopg://kyso:s3cret-pw@127.0.0.1:1/kyso")
    try:
        with pytest.raises(StorageError, match=match) as info:
            operation(engine)
    finally:
        engine.dispose()
    assert "s3cret-pw" not in info.value.message


def test_sqlite_pragmas_on_every_new_connection(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'nested' / 'dir' / 'kyso.db'}")
    try:
        for _ in range(2):
            with engine.connect() as connection:
                assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
                assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            # Force the next connect() to open a brand-new DBAPI connection.
            engine.dispose()
    finally:
        engine.dispose()
    assert (tmp_path / "nested" / "dir" / "kyso.db").is_file()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql+psycopg://kyso:s3cret@db.example:5432/kyso",
            "postgresql+psycopg://kyso:***@db.example:5432/kyso",
        ),
        ("postgresql+psycopg://kyso@db.example/kyso", "postgresql+psycopg://kyso@db.example/kyso"),
        ("sqlite:////var/lib/kyso/kyso.db", "sqlite:////var/lib/kyso/kyso.db"),
    ],
)
def test_describe_url_masks_the_password(url, expected):
    assert db.describe_url(url) == expected
    assert "s3cret" not in db.describe_url(url)


NOW = "2026-11-01 00:00:00"


def _credential(connection: Connection, credential_id: int, unit_id: int) -> None:
    connection.exec_driver_sql(
        "INSERT INTO pki_credentials (id, kind, status, unit_id, person_id, key_id, key_spec, "
        f"external, replaces_id, created_at) VALUES ({credential_id}, 'seal', 'active', "
        f"{unit_id}, NULL, 'ab', 'ec-p256', false, NULL, '{NOW}')"
    )


def test_upgrade_keeps_the_data_of_an_older_schema(engine: Engine):
    """A database made by an earlier release, with rows that foreign keys tie together, is
    upgraded in place: SQLite's table copies (batch mode) must not trip over them."""
    db.upgrade(engine, "0004")
    with engine.begin() as connection:
        connection.exec_driver_sql(
            "INSERT INTO pki_units (id, parent_id, kind, code, name, province, locality, "
            f"created_at) VALUES (1, NULL, 'ministry', 'BCA', 'Bộ Công an', 'Hà Nội', "
            f"'Hà Nội', '{NOW}')"
        )
        _credential(connection, 1, 1)
        connection.execute(
            text(
                "INSERT INTO pki_certificates (id, credential_id, serial, issuer_key_id, "
                "subject, not_before, not_after, der, status, created_at) VALUES (1, 1, '01', "
                f"'cd', 'CN=x', '{NOW}', '{NOW}', :der, 'good', '{NOW}')"
            ),
            {"der": b"\x30\x00"},
        )
    db.upgrade(engine)
    assert db.current_revision(engine) == db.head_revision()
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM pki_certificates").scalar() == 1
        assert connection.exec_driver_sql("SELECT pin_failures FROM pki_credentials").scalar() == 0
    assert not any(name.startswith("_alembic_tmp") for name in _tables(engine))


def test_a_failing_sqlite_migration_leaves_the_schema_as_it_was(engine: Engine):
    """Every migration step runs in one transaction, DDL included: a failure (here the
    foreign-key check on a row that had lost its unit) leaves no half-copied table."""
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL runs DDL transactionally by itself")
    db.upgrade(engine, "0004")
    before = _tables(engine)
    with engine.connect() as raw:
        connection = raw.execution_options(isolation_level="AUTOCOMMIT")
        connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
        _credential(connection, 7, 99)  # unit 99 does not exist
    with pytest.raises(StorageError, match="foreign key"):
        db.upgrade(engine)
    assert db.current_revision(engine) == "0004"
    assert _tables(engine) == before
