"""The demo's sign-in accounts and service client, on SoftHSM and both databases: one
account of every role, each signing in with what ``demo.json`` says (the demo password and
a code of its TOTP secret); the portal client authenticating with its secret; and a second
run that creates nothing and writes the same file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, delete

from hsm import BlockingSessionPool
from kyso.access import factors
from kyso.access.model import InvalidLoginError, Role, Scope
from kyso.access.store import AccessStore
from kyso.demo import (
    DEMO_CLIENT_NAME,
    DEMO_PASSWORD,
    DEMO_TOTP_SECRETS,
    PEOPLE,
    create_demo,
)
from kyso.tables import access_clients, access_users
from pki.authority import Authority
from tests.pki.test_authority import ADMIN, make_authority

PUBLIC_URL = "http://127.0.0.1:8000"
"""What ``make_authority`` configures as the public URL."""


@pytest.fixture
def authority(engine: Engine, pool: BlockingSessionPool) -> Authority:
    return make_authority(engine, pool)


def run_demo(authority: Authority, path: Path) -> tuple[str, dict[str, Any]]:
    outcome = create_demo(authority, ADMIN, path)
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return outcome, data


def unit_ids(authority: Authority) -> dict[str, int]:
    return {unit.code: unit.id for unit in authority.units()}


def test_the_demo_has_an_account_of_every_role(
    authority: Authority, engine: Engine, tmp_path: Path
) -> None:
    outcome, demo = run_demo(authority, tmp_path / "demo.json")
    assert outcome == "created"
    access = AccessStore(engine)
    users = {user.username: user for user in access.users()}
    assert set(users) == set(DEMO_TOTP_SECRETS)
    assert {user.role for user in users.values()} == set(Role)

    units = unit_ids(authority)
    people = {person.email: person for person in authority.people()}
    for code, persons in PEOPLE.items():
        for role, _, _, _, email in persons:
            user = users[email.partition("@")[0]]
            assert (user.role.value, user.unit_id) == (role.value, units[code])
            assert user.person_id == people[email].id
    for username, role, unit in (
        ("admin.hcm", Role.UNIT_ADMIN, units["CAT-HCM"]),
        ("auditor.hcm", Role.AUDITOR, units["CAT-HCM"]),
        ("sysadmin", Role.SYSTEM_ADMIN, None),
    ):
        assert (users[username].role, users[username].unit_id, users[username].person_id) == (
            role,
            unit,
            None,
        )

    # demo.json lists them all, and what it says is what signs in.
    assert {(a["username"], a["role"], a["unit"]) for a in demo["accounts"]} == {
        (u.username, u.role.value, None if u.unit_id is None else _code(authority, u.unit_id))
        for u in users.values()
    }
    for account in demo["accounts"]:
        assert account["password"] == DEMO_PASSWORD
        secret = account["totp_secret"]
        assert len(secret) == 32
        assert account["totp_uri"].startswith("otpauth://totp/")
        assert f"secret={secret}" in account["totp_uri"]
        signed_in = access.authenticate(
            account["username"], account["password"], factors.totp_now(secret), kind="web"
        )
        assert signed_in.id == users[account["username"]].id
    # The check above is real: a wrong code is refused.
    with pytest.raises(InvalidLoginError):
        access.authenticate("sysadmin", DEMO_PASSWORD, "000000", kind="web")


def _code(authority: Authority, unit_id: int) -> str:
    return authority.unit(unit_id).code


def test_the_demo_client_authenticates_with_its_secret(
    authority: Authority, engine: Engine, tmp_path: Path
) -> None:
    _, demo = run_demo(authority, tmp_path / "demo.json")
    described = demo["service_client"]
    assert described["token_url"] == f"{PUBLIC_URL}/oauth/token"
    assert described["scopes"] == "documents:read seal sign verify"
    access = AccessStore(engine)
    client = access.authenticate_client(described["client_id"], described["client_secret"])
    assert client.name == DEMO_CLIENT_NAME
    assert client.unit_id == unit_ids(authority)["CAT-HCM"]
    assert client.scopes == {Scope.SIGN, Scope.SEAL, Scope.VERIFY, Scope.DOCUMENTS_READ}
    assert [c.client_id for c in access.clients()] == [described["client_id"]]
    # It seals automatically with CAP-SG's seal, bound to it.
    (seal,) = described["seal_credential_ids"]
    assert authority.credential(seal).unit_id == unit_ids(authority)["CAP-SG"]


def test_a_second_run_creates_nothing_and_writes_the_same_file(
    authority: Authority, engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "demo.json"
    _, first = run_demo(authority, path)
    access = AccessStore(engine)
    users, clients = access.users(), access.clients()
    outcome, second = run_demo(authority, path)
    assert outcome == "present"
    assert access.users() == users
    assert access.clients() == clients
    assert second == first
    # The keys demo.json had before the accounts are still there.
    assert {"demo", "warning", "public_url", "ca", "units", "signing_pins"} <= set(second)


def test_a_rerun_restores_missing_accounts_and_a_revoked_client(
    authority: Authority, engine: Engine, tmp_path: Path
) -> None:
    """A demo made before there were accounts gets them; a revoked demo client, useless to
    the demo, is replaced by a live one."""
    path = tmp_path / "demo.json"
    _, first = run_demo(authority, path)
    access = AccessStore(engine)
    access.revoke_client(first["service_client"]["client_id"], ADMIN)
    with engine.begin() as connection:
        connection.execute(delete(access_users).where(access_users.c.username == "ngoc.ttb"))

    outcome, second = run_demo(authority, path)
    assert outcome == "created"
    assert {a["username"] for a in second["accounts"]} == set(DEMO_TOTP_SECRETS)
    access.authenticate(
        "ngoc.ttb", DEMO_PASSWORD, factors.totp_now(DEMO_TOTP_SECRETS["ngoc.ttb"]), kind="web"
    )
    replaced = second["service_client"]["client_id"]
    assert replaced != first["service_client"]["client_id"]
    access.authenticate_client(replaced, second["service_client"]["client_secret"])
    assert (
        second["service_client"]["seal_credential_ids"]
        == (first["service_client"]["seal_credential_ids"])
    )
    with engine.connect() as connection:
        assert len(connection.execute(access_clients.select()).all()) == 2
