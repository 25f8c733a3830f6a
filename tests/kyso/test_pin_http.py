"""Signing PINs over HTTP on both databases: the routes that set and unlock a PIN (an
administrator sets and unlocks; the holder may change their own), and the PIN check of
signature activation (``POST /api/v1/credentials/{id}/authorize``, which every signing
route's inline PIN goes through too), with the credential's policy set to ``pin`` (the
one-time code is tested in test_signing_activation_http.py). No answer holds a PIN, not
even a 422 for a malformed body."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from audit.events import Action, AuditEvent
from audit.store import audit_entries
from kyso import db
from kyso.access.activation import ActivationPolicy
from kyso.access.model import Role
from kyso.app import create_app
from kyso.routers.auth import CSRF_HEADER
from kyso.settings import Settings
from pki.authority import Authority
from pki.store import PersonRole
from tests.kyso.identities import SETUP, as_system_admin, sign_in_as
from tests.kyso.test_pki_http import ADMIN, _no_server_error, enrol_officer, error_code

# The fixtures, used by name.
from tests.kyso.test_pki_http import hierarchy as hierarchy
from tests.kyso.test_pki_http import settings as settings

PIN = "493817"
NEW_PIN = "Kh0a-Ky-S0"
WRONG = "000001"


@contextmanager
def started(settings: Settings, **options: Any) -> Iterator[TestClient]:
    with TestClient(create_app(settings), **options) as client:
        client.event_hooks = {"response": [_no_server_error]}
        yield client


def pin_only(client: TestClient, credential: dict[str, Any]) -> str:
    """``credential`` is activated by its PIN alone; the path that activates it."""
    activation = client.app.state.runtime.activation  # type: ignore[attr-defined]
    activation.set_policy(credential["id"], ActivationPolicy.PIN, SETUP)
    return f"/api/v1/credentials/{credential['id']}/authorize"


def activate(client: TestClient, path: str, **body: Any) -> Any:
    return client.post(path, json={"documents": ["01JTESTDOCUMENT"], **body})


@pytest.fixture
def client(settings: Settings, hierarchy: None) -> Iterator[TestClient]:
    with started(settings) as running:
        yield running


def authority_of(client: TestClient) -> Authority:
    authority: Authority = client.app.state.runtime.pki.authority  # type: ignore[attr-defined]
    return authority


def as_holder(client: TestClient, credential: dict[str, Any], username: str = "tuyet.nta") -> str:
    """``client`` signs in as the officer who holds ``credential`` (an account made for
    them); returns the audit actor id."""
    person = authority_of(client).person(credential["person_id"])
    sign_in_as(client, Role.OFFICER, unit_id=person.unit_id, person_id=person.id, username=username)
    return f"user:{username}"


def pin_events(settings: Settings) -> list[AuditEvent]:
    engine = db.make_engine(settings.sqlalchemy_url)
    try:
        with engine.connect() as connection:
            leaves = (
                connection.execute(select(audit_entries.c.leaf).order_by(audit_entries.c.id))
                .scalars()
                .all()
            )
    finally:
        engine.dispose()
    return [
        event
        for event in (AuditEvent.from_leaf(bytes(leaf)) for leaf in leaves)
        if event.action.value.startswith("pin.")
    ]


def test_set_check_lock_and_unlock_over_http(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    as_system_admin(client)
    admin = "user:test-sysadmin"
    credential = enrol_officer(client, tmp_path)
    path = f"/api/v1/credentials/{credential['id']}/pin"
    assert credential["pin"] == {"set": False, "failures": 0, "locked_at": None}
    sign = pin_only(client, credential)

    officer = as_holder(client, credential)
    not_set = activate(client, sign, pin=PIN)
    assert (not_set.status_code, error_code(not_set)) == (409, "pki.pin_not_set")
    as_system_admin(client)
    set_pin = client.put(path, json={"pin": PIN})
    assert set_pin.status_code == 200, set_pin.text
    assert set_pin.json()["pin"] == {"set": True, "failures": 0, "locked_at": None}

    as_holder(client, credential)
    assert activate(client, sign, pin=PIN).json()["credential_id"] == credential["id"]
    missing = activate(client, sign)
    assert (missing.status_code, error_code(missing)) == (400, "pki.pin_required")
    for remaining in (4, 3, 2, 1):
        wrong = activate(client, sign, pin=WRONG)
        assert (wrong.status_code, error_code(wrong)) == (403, "pki.pin_invalid")
        assert f"{remaining} tr" in wrong.json()["error"]["message"]
    fifth = activate(client, sign, pin=WRONG)
    assert (fifth.status_code, error_code(fifth)) == (423, "pki.pin_locked")
    refused = activate(client, sign, pin=PIN)
    assert (refused.status_code, error_code(refused)) == (423, "pki.pin_locked")
    shown = client.get(f"/api/v1/credentials/{credential['id']}").json()
    assert shown["pin"]["failures"] == 5
    assert shown["pin"]["locked_at"] is not None
    # Locked: neither the holder nor an administrator can set it over the lock.
    changed = client.put(path, json={"pin": NEW_PIN})
    assert (changed.status_code, error_code(changed)) == (423, "pki.pin_locked")
    as_system_admin(client)
    replaced_over_lock = client.put(path, json={"pin": NEW_PIN})
    assert (replaced_over_lock.status_code, error_code(replaced_over_lock)) == (
        423,
        "pki.pin_locked",
    )

    unlocked = client.post(f"{path}/unlock")
    assert unlocked.status_code == 200, unlocked.text
    assert unlocked.json()["pin"] == {"set": True, "failures": 0, "locked_at": None}
    as_holder(client, credential)
    assert activate(client, sign, pin=PIN).status_code == 200
    as_system_admin(client)
    replaced = client.post(f"{path}/unlock", json={"new_pin": NEW_PIN})
    assert replaced.status_code == 200, replaced.text
    as_holder(client, credential)
    old = activate(client, sign, pin=PIN)
    assert (old.status_code, error_code(old)) == (403, "pki.pin_invalid")
    assert activate(client, sign, pin=NEW_PIN).status_code == 200

    # The PIN comes first (and counts); a suspended credential then cannot sign.
    as_system_admin(client)
    assert client.post(f"/api/v1/credentials/{credential['id']}/suspend").status_code == 200
    as_holder(client, credential)
    suspended = activate(client, sign, pin=NEW_PIN)
    assert (suspended.status_code, error_code(suspended)) == (409, "pki.credential_unusable")

    actions = [(e.action, e.outcome.code, e.actor.id) for e in pin_events(settings)]
    assert actions == [
        (Action.PIN_SET, None, admin),
        *[(Action.PIN_FAILED, "pki.pin_invalid", officer)] * 5,
        (Action.PIN_LOCKED, None, officer),
        (Action.PIN_FAILED, "pki.pin_locked", officer),
        (Action.PIN_UNLOCKED, None, admin),
        (Action.PIN_UNLOCKED, None, admin),
        (Action.PIN_FAILED, "pki.pin_invalid", officer),
    ]


def test_the_holder_changes_their_own_pin(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    as_system_admin(client)
    credential = enrol_officer(client, tmp_path)
    path = f"/api/v1/credentials/{credential['id']}/pin"
    assert client.put(path, json={"pin": PIN}).status_code == 200
    officer = as_holder(client, credential)
    changed = client.put(path, json={"pin": NEW_PIN})
    assert changed.status_code == 200, changed.text
    old = activate(client, pin_only(client, credential), pin=PIN)
    assert (old.status_code, error_code(old)) == (403, "pki.pin_invalid")
    assert [(e.action, e.actor.id) for e in pin_events(settings)] == [
        (Action.PIN_SET, "user:test-sysadmin"),
        (Action.PIN_SET, officer),
        (Action.PIN_FAILED, officer),
    ]


def test_bad_pins_are_refused_without_echo(client: TestClient, tmp_path: Path) -> None:
    as_system_admin(client)
    credential = enrol_officer(client, tmp_path)
    path = f"/api/v1/credentials/{credential['id']}/pin"
    weak = client.put(path, json={"pin": "123456"})
    assert (weak.status_code, error_code(weak)) == (422, "pki.pin_policy")
    assert "123456" not in weak.text
    for body in (
        {"pin": 493817},
        {"PIN": "493817"},
        {"pin": "493817", "extra": "493817"},
        {"pin": "493817" * 50},
    ):
        malformed = client.put(path, json=body)
        assert malformed.status_code == 422, body
        assert "493817" not in malformed.text, malformed.text
    unlock = client.post(f"{path}/unlock", json={"new_pin": 493817})
    assert unlock.status_code == 422
    assert "493817" not in unlock.text
    root = client.put("/api/v1/credentials/1/pin", json={"pin": PIN})
    assert (root.status_code, error_code(root)) == (422, "pki.invalid")
    unknown = client.put("/api/v1/credentials/987654/pin", json={"pin": PIN})
    assert (unknown.status_code, error_code(unknown)) == (404, "pki.not_found")


def test_pin_administration_refuses_callers_not_signed_in_or_not_allowed(
    client: TestClient, tmp_path: Path
) -> None:
    as_system_admin(client)
    credential = enrol_officer(client, tmp_path)
    path = f"/api/v1/credentials/{credential['id']}/pin"
    assert client.put(path, json={"pin": PIN}).status_code == 200
    client.cookies.clear()
    client.headers.pop(CSRF_HEADER)
    for method, target, body in (("PUT", path, {"pin": NEW_PIN}), ("POST", f"{path}/unlock", None)):
        answer = client.request(method, target, json=body)
        assert (answer.status_code, error_code(answer)) == (401, "access.invalid_token"), target

    # The holder may change their PIN but never unlock it; another officer of the same
    # commune may do neither; an auditor changes nothing.
    commune = authority_of(client).person(credential["person_id"]).unit_id
    colleague = authority_of(client).add_person(
        unit_id=commune,
        role=PersonRole.OFFICER,
        full_name="Trần Văn Bình",
        position="Phó Trưởng Công an phường",
        cccd="079190005678",
        email="binh.tv@btn.hcm.gov.vn",
        actor=ADMIN,
    )
    refusals: list[tuple[Callable[[], object], str, str, dict[str, str] | None]] = [
        (lambda: as_holder(client, credential), "POST", f"{path}/unlock", None),
        (
            lambda: sign_in_as(client, Role.OFFICER, unit_id=commune, person_id=colleague.id),
            "PUT",
            path,
            {"pin": NEW_PIN},
        ),
        (
            lambda: sign_in_as(client, Role.OFFICER, unit_id=commune, person_id=colleague.id),
            "POST",
            f"{path}/unlock",
            None,
        ),
        (
            lambda: sign_in_as(client, Role.AUDITOR, unit_id=commune),
            "PUT",
            path,
            {"pin": NEW_PIN},
        ),
    ]
    for who, method, target, body in refusals:
        who()
        answer = client.request(method, target, json=body)
        assert (answer.status_code, error_code(answer)) == (403, "access.forbidden"), target
        assert NEW_PIN not in answer.text
    as_holder(client, credential)
    assert activate(client, pin_only(client, credential), pin=PIN).status_code == 200
