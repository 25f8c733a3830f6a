"""Accounts, sessions and service clients (``kyso.access.store``), on SQLite and PostgreSQL:
passwords and TOTP codes are checked, each code once; wrong tries lock an account after
five; every refusal reads the same; client secrets rotate with a grace period and a
revocation ends them; every change is an audit event."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select

from audit.events import Action
from audit.store import audit_entries
from kyso.access import factors
from kyso.access.model import (
    AccessConflictError,
    AccessNotFoundError,
    InvalidAccessInputError,
    InvalidClientError,
    InvalidLoginError,
    Role,
    Scope,
)
from kyso.access.store import MAX_LOGIN_FAILURES, AccessStore
from kyso.db import upgrade
from kyso.tables import access_clients, access_users
from pki.store import UnitKind
from tests.pki.test_authority import ADMIN, make_authority

PASSWORD = "một mật khẩu dài 2026"


@pytest.fixture
def migrated(engine: Engine) -> Engine:
    upgrade(engine)
    return engine


@pytest.fixture
def store(migrated: Engine) -> AccessStore:
    return AccessStore(migrated)


@pytest.fixture
def unit_id(migrated: Engine, pool: object) -> int:
    authority = make_authority(migrated, pool)  # type: ignore[arg-type]
    unit = authority.add_unit(
        kind=UnitKind.MINISTRY,
        code="BCA",
        name="Bộ Công an",
        province="Hà Nội",
        locality="Hà Nội",
        parent_id=None,
        actor=ADMIN,
    )
    return unit.id


def actions(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        leaves = connection.execute(select(audit_entries.c.leaf).order_by(audit_entries.c.id))
        return [json.loads(leaf)["action"] for (leaf,) in leaves]


def test_a_person_signs_in_with_password_and_a_code_used_once(
    store: AccessStore, migrated: Engine, unit_id: int
) -> None:
    user, secret = store.add_user(
        username="anh.nv", role=Role.UNIT_ADMIN, unit_id=unit_id, password=PASSWORD, actor=ADMIN
    )
    now = factors.totp_now(secret)
    signed_in = store.authenticate("anh.nv", PASSWORD, now, kind="web")
    assert signed_in.id == user.id
    assert signed_in.role is Role.UNIT_ADMIN
    # the same code again: refused (a replayed code), and counted
    with pytest.raises(InvalidLoginError):
        store.authenticate("anh.nv", PASSWORD, now, kind="web")
    # a CSC sign-in takes no code (the second factor comes at signature activation)
    assert store.authenticate("anh.nv", PASSWORD, None, kind="csc").id == user.id
    with pytest.raises(InvalidLoginError):
        store.authenticate("anh.nv", PASSWORD, None, kind="web")
    with migrated.connect() as connection:
        stored = {r.password_hash for r in connection.execute(select(access_users))}
    assert all(h.startswith("$argon2id$") for h in stored)
    assert not any(PASSWORD in h for h in stored)
    assert {"user.changed", "login.succeeded", "login.failed"} <= set(actions(migrated))


def test_every_refusal_reads_the_same_and_five_wrong_tries_lock(
    store: AccessStore, unit_id: int
) -> None:
    _, secret = store.add_user(
        username="ngoc.ttb", role=Role.AUDITOR, unit_id=unit_id, password=PASSWORD, actor=ADMIN
    )
    messages = set()
    for username, password in (("nobody", PASSWORD), ("ngoc.ttb", "sai mật khẩu rồi"), ("", "")):
        with pytest.raises(InvalidLoginError) as caught:
            store.authenticate(username, password, factors.totp_now(secret), kind="web")
        messages.add(caught.value.message)
    assert len(messages) == 1
    for _ in range(MAX_LOGIN_FAILURES - 1):
        with pytest.raises(InvalidLoginError):
            store.authenticate("ngoc.ttb", "sai mật khẩu rồi", None, kind="csc")
    assert store.user("ngoc.ttb").locked
    # locked: even the right password is refused, with the same message
    with pytest.raises(InvalidLoginError) as caught:
        store.authenticate("ngoc.ttb", PASSWORD, None, kind="csc")
    assert caught.value.message in messages
    store.unlock("ngoc.ttb", ADMIN)
    assert store.authenticate("ngoc.ttb", PASSWORD, None, kind="csc").username == "ngoc.ttb"


def test_accounts_are_checked_when_made(store: AccessStore, unit_id: int) -> None:
    with pytest.raises(InvalidAccessInputError):
        store.add_user(
            username="x", role=Role.OFFICER, unit_id=unit_id, password=PASSWORD, actor=ADMIN
        )
    with pytest.raises(InvalidAccessInputError):  # a unit-scoped role needs its unit
        store.add_user(
            username="clerk1", role=Role.CLERK, unit_id=None, password=PASSWORD, actor=ADMIN
        )
    with pytest.raises(InvalidAccessInputError):  # and a system admin has none
        store.add_user(
            username="root1",
            role=Role.SYSTEM_ADMIN,
            unit_id=unit_id,
            password=PASSWORD,
            actor=ADMIN,
        )
    with pytest.raises(InvalidAccessInputError):
        store.add_user(
            username="short", role=Role.SYSTEM_ADMIN, unit_id=None, password="ngắn", actor=ADMIN
        )
    with pytest.raises(AccessNotFoundError):
        store.add_user(
            username="ghost", role=Role.AUDITOR, unit_id=999_999, password=PASSWORD, actor=ADMIN
        )
    store.add_user(
        username="root1", role=Role.SYSTEM_ADMIN, unit_id=None, password=PASSWORD, actor=ADMIN
    )
    with pytest.raises(AccessConflictError):
        store.add_user(
            username="root1", role=Role.SYSTEM_ADMIN, unit_id=None, password=PASSWORD, actor=ADMIN
        )


def test_sessions_end_when_signed_out_expired_or_the_account_is_disabled(
    migrated: Engine, unit_id: int
) -> None:
    clock = [datetime.now(UTC)]
    store = AccessStore(migrated, clock=lambda: clock[0])
    user, _ = store.add_user(
        username="dung.lh", role=Role.AUDITOR, unit_id=unit_id, password=PASSWORD, actor=ADMIN
    )
    opened = store.open_session(user, kind="web")
    live = store.session(opened.secret, kind="web")
    assert live is not None
    assert live.principal().second_factor
    assert factors.digests_match(live.csrf_hash, opened.csrf)
    assert store.session(opened.secret + "x", kind="web") is None
    assert store.session(opened.secret, kind="csc") is None  # not a CSC session
    assert store.end_session(opened.secret, ADMIN)
    assert store.session(opened.secret, kind="web") is None
    later = store.open_session(user, kind="csc")
    assert store.session(later.secret, kind="csc") is not None
    assert store.session(later.secret, kind="web") is None  # no second factor: never web
    clock[0] += timedelta(hours=2)  # a CSC session lasts one hour
    assert store.session(later.secret, kind="csc") is None
    clock[0] = datetime.now(UTC)
    web = store.open_session(user, kind="web")
    store.disable("dung.lh", ADMIN)
    assert store.session(web.secret, kind="web") is None


def test_client_secrets_rotate_with_grace_and_revocation_is_immediate(
    migrated: Engine,
) -> None:
    clock = [datetime.now(UTC)]
    store = AccessStore(migrated, clock=lambda: clock[0])
    client, secret = store.add_client(
        name="Cổng dịch vụ công",
        scopes=frozenset({Scope.SIGN, Scope.VERIFY}),
        unit_id=None,
        actor=ADMIN,
    )
    assert store.authenticate_client(client.client_id, secret).scopes == {Scope.SIGN, Scope.VERIFY}
    for wrong in (secret + "x", "", "x" * 600):
        with pytest.raises(InvalidClientError):
            store.authenticate_client(client.client_id, wrong)
    with pytest.raises(InvalidClientError):
        store.authenticate_client("kyso-unknown", secret)
    new = store.rotate_client(client.client_id, ADMIN, grace=timedelta(hours=1))
    assert store.authenticate_client(client.client_id, new)
    assert store.authenticate_client(client.client_id, secret)  # within the grace period
    clock[0] += timedelta(hours=2)
    with pytest.raises(InvalidClientError):
        store.authenticate_client(client.client_id, secret)
    store.revoke_client(client.client_id, ADMIN)
    with pytest.raises(InvalidClientError):
        store.authenticate_client(client.client_id, new)
    assert store.client(client.client_id) is None
    with migrated.connect() as connection:
        stored = connection.execute(select(access_clients)).one()
    assert secret not in str(tuple(stored))
    assert new not in str(tuple(stored))
    assert actions(migrated).count("client.changed") == 3


def test_a_totp_code_is_valid_one_step_either_side() -> None:
    secret = factors.new_totp_secret()
    now = time.time()
    current = factors.totp_now(secret, now)
    step = int(now) // factors.TOTP_STEP
    assert factors.match_totp(secret, current, after_step=None, at=now) == step
    assert factors.match_totp(secret, factors.totp_now(secret, now - 30), after_step=None, at=now)
    assert (
        factors.match_totp(secret, factors.totp_now(secret, now - 90), after_step=None, at=now)
        is None
    )
    assert factors.match_totp(secret, current, after_step=step, at=now) is None
    assert factors.match_totp(secret, "12345", after_step=None, at=now) is None
    assert Action.USER_CHANGED.value == "user.changed"
