"""A service started before its audit key exists (or while the HSM cannot list it) starts
signing checkpoints once the key is there, without a restart."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from audit.note import NoteVerifier, open_checkpoint
from hsm import HsmUnavailableError, KeyInfo
from kyso.app import create_app
from kyso.audit_service import record_key_generated
from kyso.audit_signer import HsmNoteSigner, ensure_audit_key
from kyso.runtime import Runtime
from kyso.settings import Settings
from tests.conftest import TestToken
from tests.kyso.identities import as_system_admin

INTERVAL = 0.3
"""Checkpoint interval of these tests, in seconds."""


@pytest.fixture
def settings(token: TestToken, tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path,
        database_url=database_url,
        hsm_token_label=token.label,
        hsm_pin_file=token.pin_file,
        hsm_acquire_timeout=2,
        hsm_retry_interval=0,
        audit_sequence_interval=0.05,
        audit_checkpoint_interval=INTERVAL,
        audit_origin="kyso.test/audit",
    )


class Records(logging.Handler):
    """Keeps what ``kyso.audit`` logs (``create_app`` replaces the root handlers, so
    pytest's capture would not see it)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> str:
        return "\n".join(f"{r.getMessage()} {r.__dict__}" for r in self.records)


@pytest.fixture
def audit_logs() -> Iterator[Records]:
    logger = logging.getLogger("kyso.audit")
    handler = Records()
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_checkpoints_start_once_the_audit_key_appears(
    token: TestToken, settings: Settings, audit_logs: Records
) -> None:
    with TestClient(create_app(settings)) as client:
        runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
        assert runtime.audit is not None
        assert runtime.audit.signer is None
        listings: list[int] = []
        real_list_keys = runtime.hsm.list_keys

        async def flaky_list_keys() -> list[KeyInfo]:
            # The first look-up meets an HSM that does not answer; later ones get through.
            listings.append(1)
            if len(listings) == 1:
                raise HsmUnavailableError(f"token {token.label!r} is not present")
            return await real_list_keys()

        runtime.hsm.list_keys = flaky_list_keys  # type: ignore[method-assign]
        # The audit log's reader: making the account is the log's first event.
        as_system_admin(client)

        # No key yet: nothing is signed, no verifier key is served, the loop keeps looking.
        wait_for(lambda: len(listings) >= 3, "the checkpoint loop to look for the key again")
        assert client.get("/audit/checkpoint").status_code == 404
        missing = client.get("/audit/public-key")
        assert missing.status_code == 503
        assert missing.json()["error"]["code"] == "audit.unavailable"
        failures = [r for r in audit_logs.records if "key failed" in r.getMessage()]
        assert [(r.levelno, r.__dict__["code"]) for r in failures] == [
            (logging.ERROR, "hsm.unavailable")
        ]
        assert "trying again at the next checkpoint" in failures[0].getMessage()

        # `kyso init` on the running service's token: the key and its audit event.
        key, created = ensure_audit_key(runtime.hsm.blocking)
        assert created
        with runtime.engine.begin() as connection:
            record_key_generated(connection, key)

        wait_for(lambda: client.get("/audit/checkpoint").status_code == 200, "a checkpoint")
        note = client.get("/audit/checkpoint").text
        vkey = client.get("/audit/public-key")
        assert vkey.status_code == 200
        expected = HsmNoteSigner(runtime.hsm.blocking, key, settings.audit_origin).vkey()
        assert vkey.text.strip() == expected
        opened = open_checkpoint(note, [NoteVerifier.from_vkey(expected)], origin="kyso.test/audit")
        assert opened.checkpoint.size == 2
        entries = client.get("/audit/entries", params={"start": 0, "end": 2}).json()["entries"]
        assert '"action":"user.changed"' in entries[0]["leaf"]
        assert '"action":"key.generated"' in entries[1]["leaf"]
        # The one runtime object the routes read now holds the key; the log signs with it.
        current: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
        assert current.audit is runtime.audit
        assert current.audit_vkey == expected
        assert isinstance(runtime.audit.signer, HsmNoteSigner)
        found = [r for r in audit_logs.records if "checkpoints are on" in r.getMessage()]
        assert len(found) == 1
        assert found[0].__dict__["key_id"] == key.key_id.hex()
        looked = len(listings)
        time.sleep(3 * INTERVAL)
        assert len(listings) == looked  # found once, never looked up again

    assert token.user_pin not in audit_logs.text()
    assert token.so_pin not in audit_logs.text()


def test_without_a_key_shutdown_signs_nothing_and_logs_no_error(
    settings: Settings, audit_logs: Records
) -> None:
    with TestClient(create_app(settings)) as client:
        runtime: Runtime = client.app.state.runtime  # type: ignore[attr-defined]
        assert runtime.audit_vkey is None
        as_system_admin(client)  # its account is an event to sign, but there is no key
        time.sleep(3 * INTERVAL)
        assert client.get("/audit/checkpoint").status_code == 404
    errors = [r.getMessage() for r in audit_logs.records if r.levelno >= logging.ERROR]
    # The start-up notice only: no failed checkpoint at every interval or at shutdown.
    assert errors == [
        "no audit checkpoint key on the token; run 'kyso init'. "
        "Checkpoints are off until it is found."
    ]
