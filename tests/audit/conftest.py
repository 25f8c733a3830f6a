"""Shared fixtures of the audit tests: a migrated database (SQLite and PostgreSQL), a
software note signer, and a deterministic event factory."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from audit import Action, Actor, AuditEvent, Outcome
from kyso.db import make_engine, upgrade
from tests.audit.signers import SoftwareSigner

ORIGIN = "kyso.example.vn/audit"


def event(i: int, actor: str = "officer") -> AuditEvent:
    return AuditEvent(
        time=datetime(2025, 3, 1, tzinfo=UTC) + timedelta(seconds=i),
        action=Action.KEY_GENERATED,
        actor=Actor(id=f"{actor}-{i}", role="officer"),
        outcome=Outcome(success=True),
        details={"n": i},
    )


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """A database at the latest migration, on each engine."""
    engine = make_engine(database_url)
    upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def signer() -> SoftwareSigner:
    return SoftwareSigner.ed25519(ORIGIN)
