"""Engine set-up and Alembic migrations, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, insert, inspect, select

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
