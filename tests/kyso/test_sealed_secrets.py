"""TOTP secrets sealed by the access-secrets key on the HSM (SoftHSM, both databases): no
row of ``access_users`` holds a secret in clear, whoever made the account (the demo, the
command line, the HTTP API); the demo accounts still sign in with the codes of their fixed
secrets; a sealed secret copied to another account's row does not open there; a legacy
clear secret is sealed on its first use or by ``seal_clear_secrets``."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, update

from audit.events import Action, AuditEvent
from audit.store import audit_entries
from hsm import BlockingSessionPool, HsmUnavailableError
from kyso import cli, db
from kyso.access import factors
from kyso.access.model import InvalidLoginError, Role
from kyso.access.store import MAX_LOGIN_FAILURES, SEALED_PREFIX, AccessStore, SealerMissingError
from kyso.access.tokens import HsmSealer, ensure_secrets_key, ensure_token_key
from kyso.demo import DEMO_PASSWORD, DEMO_TOTP_SECRETS, create_demo
from kyso.pki_service import make_authority
from kyso.settings import Settings
from kyso.tables import access_users
from tests.conftest import make_token
from tests.kyso.identities import SETUP, as_system_admin
from tests.kyso.test_documents_http import audit_events, started
from tests.kyso.test_documents_http import settings as settings

PASSWORD = "một mật khẩu dài 2026"
_BASE32 = re.compile(r"[A-Z2-7]{16,}=*")


def stored_secrets(engine: Engine) -> dict[str, str]:
    with engine.connect() as connection:
        rows = connection.execute(select(access_users.c.username, access_users.c.totp_secret))
        return {row.username: row.totp_secret for row in rows}


def assert_none_clear(engine: Engine, clear: list[str]) -> None:
    stored = stored_secrets(engine)
    assert stored
    for username, value in stored.items():
        assert value.startswith(SEALED_PREFIX), username
        assert not _BASE32.search(value.removeprefix(SEALED_PREFIX)), username
        assert not any(secret in value for secret in clear), username


def login(client: object, username: str, password: str, secret: str) -> int:
    answer = client.post(  # type: ignore[attr-defined]
        "/api/v1/auth/login",
        json={"username": username, "password": password, "otp": factors.totp_now(secret)},
    )
    client.cookies.clear()  # type: ignore[attr-defined]
    return int(answer.status_code)


def test_no_clear_secret_whoever_made_the_account(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = db.make_engine(settings.sqlalchemy_url)
    try:
        db.upgrade(engine)
        with BlockingSessionPool(settings.hsm_config()) as pool:
            # What `kyso init --demo` does.
            ensure_token_key(pool)
            ensure_secrets_key(pool)
            authority = make_authority(settings, engine, pool)
            authority.ensure_hierarchy(SETUP)
            create_demo(authority, SETUP, tmp_path / "demo.json", sealer=HsmSealer(pool))
        # `kyso users add`: the store the command line builds.
        monkeypatch.setattr(cli.state, "settings", settings)
        with cli.open_access() as access:
            _, cli_secret = access.store.add_user(
                username="cli.admin",
                role=Role.SYSTEM_ADMIN,
                unit_id=None,
                password=PASSWORD,
                actor=SETUP,
            )
        with started(settings) as client:
            as_system_admin(client)
            made = client.post(
                "/api/v1/users",
                json={
                    "username": "http.admin",
                    "role": "system-admin",
                    "unit_id": None,
                    "password": PASSWORD,
                },
            )
            assert made.status_code == 201, made.text
            http_secret = made.json()["second_factor"]["totp_secret"]
            client.cookies.clear()
            client.headers.clear()

            assert_none_clear(engine, [*DEMO_TOTP_SECRETS.values(), cli_secret, http_secret])
            for username, secret in DEMO_TOTP_SECRETS.items():
                assert login(client, username, DEMO_PASSWORD, secret) == 200, username
            assert login(client, "cli.admin", PASSWORD, cli_secret) == 200
            assert login(client, "http.admin", PASSWORD, http_secret) == 200
            # The code is checked: a wrong one (another account's secret) is refused.
            assert login(client, "http.admin", PASSWORD, cli_secret) == 401
        events = audit_events(settings)
        assert not any(
            secret in str(event)
            for event in events
            for secret in (cli_secret, http_secret, *DEMO_TOTP_SECRETS.values())
        )
    finally:
        engine.dispose()


@pytest.fixture
def sealed(engine: Engine, pool: BlockingSessionPool) -> AccessStore:
    """A store as the service builds it; the token has the key (tests/kyso/conftest.py)."""
    return AccessStore(engine, sealer=HsmSealer(pool))


def add(store: AccessStore, username: str) -> str:
    _, secret = store.add_user(
        username=username, role=Role.SYSTEM_ADMIN, unit_id=None, password=PASSWORD, actor=SETUP
    )
    return secret


def failures(engine: Engine, username: str) -> int:
    with engine.connect() as connection:
        return int(
            connection.execute(
                select(access_users.c.failed_logins).where(access_users.c.username == username)
            ).scalar_one()
        )


def refusals(engine: Engine) -> list[dict[str, object]]:
    """The details of every failed sign-in, oldest first, as the audit log admitted them."""
    with engine.connect() as connection:
        leaves = connection.execute(select(audit_entries.c.leaf).order_by(audit_entries.c.id))
        events = [AuditEvent.from_leaf(bytes(leaf)) for leaf in leaves.scalars()]
    return [dict(e.details) for e in events if e.action is Action.LOGIN_FAILED]


def test_a_secret_copied_to_another_account_does_not_open(
    sealed: AccessStore, engine: Engine
) -> None:
    secret_a = add(sealed, "account.a")
    add(sealed, "account.b")
    stored = stored_secrets(engine)
    with engine.begin() as connection:
        connection.execute(
            update(access_users)
            .where(access_users.c.username == "account.b")
            .values(totp_secret=stored["account.a"])
        )
    user_b = sealed.user("account.b")
    assert not sealed.use_code(user_b.id, factors.totp_now(secret_a))
    with pytest.raises(InvalidLoginError):
        sealed.authenticate("account.b", PASSWORD, factors.totp_now(secret_a), kind="web")
    assert failures(engine, "account.b") == 1
    assert refusals(engine)[-1]["reason"] == "sealed_secret"
    # The row it came from still opens where it belongs.
    user_a = sealed.authenticate("account.a", PASSWORD, factors.totp_now(secret_a), kind="web")
    assert user_a.username == "account.a"


def test_a_changed_sealed_secret_is_refused(sealed: AccessStore, engine: Engine) -> None:
    secret = add(sealed, "account.a")
    value = stored_secrets(engine)["account.a"]
    for broken in (value[:-4] + ("AAAA" if value[-4:] != "AAAA" else "BBBB"), "v1:not base64!"):
        with engine.begin() as connection:
            connection.execute(
                update(access_users)
                .where(access_users.c.username == "account.a")
                .values(totp_secret=broken)
            )
        with pytest.raises(InvalidLoginError):
            sealed.authenticate("account.a", PASSWORD, factors.totp_now(secret), kind="web")


def test_a_clear_secret_is_sealed_on_use(
    sealed: AccessStore, engine: Engine, pool: BlockingSessionPool
) -> None:
    legacy = AccessStore(engine)  # a store from before sealing: clear secrets
    secret_a = add(legacy, "legacy.a")
    secret_b = add(legacy, "legacy.b")
    assert stored_secrets(engine) == {"legacy.a": secret_a, "legacy.b": secret_b}

    user = sealed.authenticate("legacy.a", PASSWORD, factors.totp_now(secret_a), kind="web")
    assert stored_secrets(engine)["legacy.a"].startswith(SEALED_PREFIX)
    # The next code of the same secret still works, from the sealed form.
    later = factors.totp_now(secret_a, at=time.time() + factors.TOTP_STEP)
    assert sealed.use_code(user.id, later)

    assert sealed.use_code(sealed.user("legacy.b").id, factors.totp_now(secret_b))
    assert_none_clear(engine, [secret_a, secret_b])

    # A store without a sealer cannot check a sealed secret, and says so.
    with pytest.raises(SealerMissingError):
        legacy.authenticate("legacy.b", PASSWORD, "123456", kind="web")


def test_seal_clear_secrets_is_idempotent(sealed: AccessStore, engine: Engine) -> None:
    legacy = AccessStore(engine)
    secrets = {name: add(legacy, name) for name in ("legacy.a", "legacy.b", "legacy.c")}
    add(sealed, "already.sealed")
    assert sealed.seal_clear_secrets() == 3
    assert sealed.seal_clear_secrets() == 0
    assert_none_clear(engine, list(secrets.values()))
    for name, secret in secrets.items():
        assert sealed.authenticate(name, PASSWORD, factors.totp_now(secret), kind="web")
    with pytest.raises(SealerMissingError):
        legacy.seal_clear_secrets()


def test_without_the_key_or_the_token_sign_in_fails_uncounted(
    engine: Engine, softhsm_dir: Path, tmp_path: Path
) -> None:
    with BlockingSessionPool(make_token(softhsm_dir, tmp_path).config()) as pool:
        store = AccessStore(engine, sealer=HsmSealer(pool))  # before `kyso init`
        with pytest.raises(SealerMissingError, match="kyso init"):
            add(store, "no.key")
        assert stored_secrets(engine) == {}
        _, created = ensure_secrets_key(pool)
        assert created
        secret = add(store, "account.a")
        pool.close()  # the token is gone
        for _ in range(MAX_LOGIN_FAILURES + 1):
            with pytest.raises(HsmUnavailableError):
                store.authenticate("account.a", PASSWORD, factors.totp_now(secret), kind="web")
    assert failures(engine, "account.a") == 0
