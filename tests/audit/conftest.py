"""Shared fixtures of the audit tests: a software note signer and a deterministic event
factory (the migrated ``engine`` comes from tests/conftest.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from audit import Action, Actor, AuditEvent, Outcome
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
def signer() -> SoftwareSigner:
    return SoftwareSigner.ed25519(ORIGIN)
