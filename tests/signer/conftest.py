"""Fixtures of the signer tests: SQLite only for now (the pipeline reads the database only
through the PKI, whose own tests run on both engines)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'kyso-test.db'}"
