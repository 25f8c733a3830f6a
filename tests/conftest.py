"""Shared fixtures: a throwaway SoftHSM2 token directory, fresh tokens, and databases.

``SOFTHSM2_CONF`` must point at the throwaway directory before the module is loaded,
so it is set when this file is imported, ahead of every test module.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

_SOFTHSM_DIR = Path(tempfile.mkdtemp(prefix="kyso-test-softhsm-"))
(_SOFTHSM_DIR / "tokens").mkdir(mode=0o700)
(_SOFTHSM_DIR / "softhsm2.conf").write_text(
    f"directories.tokendir = {_SOFTHSM_DIR / 'tokens'}\n"
    "objectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"
)
os.environ["SOFTHSM2_CONF"] = str(_SOFTHSM_DIR / "softhsm2.conf")

from sqlalchemy import Engine  # noqa: E402

from hsm import BlockingSessionPool, HsmConfig, PinSource  # noqa: E402
from hsm.provision import provision_token  # noqa: E402


@dataclass(frozen=True)
class TestToken:
    """A freshly initialised SoftHSM2 token and how to reach it."""

    __test__ = False

    label: str
    serial: str
    so_pin: str
    user_pin: str
    pin_file: Path
    softhsm_dir: Path

    def config(self, **overrides: object) -> HsmConfig:
        values: dict[str, object] = {
            "token_label": self.label,
            "pin": PinSource(file=self.pin_file),
            "pool_size": 4,
            "acquire_timeout": 5.0,
            "retry_interval": 0.0,
        }
        values.update(overrides)
        return HsmConfig(**values)  # type: ignore[arg-type]

    def token_dir(self) -> Path:
        """The SoftHSM2 directory that holds this token's objects."""
        for child in (self.softhsm_dir / "tokens").iterdir():
            obj = child / "token.object"
            if obj.is_file() and self.serial.encode() in obj.read_bytes():
                return child
        raise LookupError(self.label)


@pytest.fixture(scope="session")
def softhsm_dir() -> Iterator[Path]:
    yield _SOFTHSM_DIR
    shutil.rmtree(_SOFTHSM_DIR, ignore_errors=True)


def make_token(softhsm_dir: Path, tmp_path: Path, label: str | None = None) -> TestToken:
    label = label or f"test-{secrets.token_hex(4)}"
    so_pin, user_pin = secrets.token_hex(8), secrets.token_hex(8)
    info, created = provision_token(label=label, so_pin=so_pin, user_pin=user_pin)
    assert created
    pin_file = tmp_path / f"{secrets.token_hex(4)}.pin"
    pin_file.write_text(user_pin + "\n")
    pin_file.chmod(0o600)
    return TestToken(label, info.serial, so_pin, user_pin, pin_file, softhsm_dir)


@pytest.fixture
def token(softhsm_dir: Path, tmp_path: Path) -> TestToken:
    """A new token with a random label, SO PIN and user PIN (PIN in a 0600 file)."""
    return make_token(softhsm_dir, tmp_path)


@pytest.fixture
def pool(token: TestToken) -> Iterator[BlockingSessionPool]:
    """An open blocking pool on a fresh token."""
    with BlockingSessionPool(token.config()) as opened:
        yield opened


# -- databases ------------------------------------------------------------------------

POSTGRES_URL_ENV = "KYSO_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """URL of a fresh PostgreSQL database for this test run, dropped at the end.

    The server comes from ``KYSO_TEST_POSTGRES_URL``. An unreachable server fails the
    PostgreSQL tests (it does not skip them): the suite must run against both engines.
    """
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.pool import NullPool

    server = make_url(os.environ.get(POSTGRES_URL_ENV) or DEFAULT_POSTGRES_URL)
    name = f"kyso_test_{secrets.token_hex(6)}"
    admin = create_engine(
        server,
        isolation_level="AUTOCOMMIT",
        poolclass=NullPool,
        connect_args={"connect_timeout": 10},
    )
    reason = None
    try:
        with admin.connect() as connection:
            connection.execute(
                text(f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8'")
            )
    except SQLAlchemyError as ex:
        reason = str(getattr(ex, "orig", None) or ex).strip().splitlines()[0]
    if reason is not None:
        admin.dispose()
        # Outside the except block so the report is this one line, not a chained traceback.
        pytest.fail(
            f"PostgreSQL test server unusable at {server.render_as_string(hide_password=True)}: "
            f"{reason}. Start it (pg_ctlcluster 15 main start) or point {POSTGRES_URL_ENV} at "
            "a server where this user may CREATE DATABASE.",
            pytrace=False,
        )
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_url(postgres_database: str) -> str:
    """The run's PostgreSQL database with an empty ``public`` schema for this test."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(postgres_database, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with engine.connect() as connection:
            # A connection leaked by an earlier test would block DROP SCHEMA.
            connection.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
            connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
    finally:
        engine.dispose()
    return postgres_database


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres),
    ]
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database, once on SQLite (a file in ``tmp_path``) and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'kyso-test.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """A database at the latest migration, on each engine."""
    from kyso.db import make_engine, upgrade

    migrated = make_engine(database_url)
    upgrade(migrated)
    yield migrated
    migrated.dispose()
