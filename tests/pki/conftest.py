"""Fixtures of the PKI tests: a migrated database on each engine."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from kyso.db import make_engine, upgrade


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """A database at the latest migration (SQLite and PostgreSQL)."""
    engine = make_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()
