"""Accounts and service clients managed over HTTP (SQLite and PostgreSQL): unit admins in
their sub-tree, the system admin everywhere, nobody else; a secret (TOTP seed, client
secret) is given once and never shown again; lockout and unlock, disabling, password and
second-factor changes take effect on sign-in and on live sessions; rotated and revoked
clients behave at ``/oauth/token``; every change is audited, without its secret."""

from __future__ import annotations

import base64
from typing import Any

from fastapi.testclient import TestClient

from audit.events import Action
from kyso.access import factors
from kyso.access.model import Role, Scope
from kyso.demo import DEMO_PASSWORD, DEMO_TOTP_SECRETS
from kyso.routers.auth import SESSION_COOKIE
from kyso.settings import Settings
from tests.kyso.identities import as_service, as_system_admin, sign_in, sign_in_as, store_of
from tests.kyso.test_documents_http import Demo, audit_events, authority_of
from tests.kyso.test_documents_http import client as client
from tests.kyso.test_documents_http import demo as demo
from tests.kyso.test_documents_http import settings as settings
from tests.kyso.test_pki_http import error_code

PASSWORD = "một mật khẩu dài 2026"
NEW_PASSWORD = "another long password 2026"


def unit(client: TestClient, code: str) -> int:
    return next(u.id for u in authority_of(client).units() if u.code == code)


def sibling_admin(client: TestClient) -> TestClient:
    """The unit admin of CAP-SG: out of reach of CAP-BT, the demo commune of the tests."""
    return sign_in_as(client, Role.UNIT_ADMIN, unit_id=unit(client, "CAP-SG"), username="admin.sg")


def login(client: TestClient, username: str, password: str, secret: str) -> Any:
    """A sign-in with the current code; the session cookie it may set is dropped, so that
    the test decides who the next request is."""
    answer = client.post(
        "/api/v1/auth/login",
        json={"username": username, "password": password, "otp": factors.totp_now(secret)},
    )
    client.cookies.clear()
    return answer


def basic(client_id: str, secret: str) -> dict[str, str]:
    pair = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


def grant(client: TestClient, client_id: str, secret: str) -> Any:
    client.cookies.clear()
    client.headers.pop("Authorization", None)
    return client.post(
        "/oauth/token", data={"grant_type": "client_credentials"}, headers=basic(client_id, secret)
    )


def refused(answer: Any) -> bool:
    return answer.status_code == 403 and error_code(answer) == "access.forbidden"


def new_account(unit_id: int | None, *, username: str, role: str = "clerk") -> dict[str, Any]:
    return {"username": username, "role": role, "unit_id": unit_id, "password": PASSWORD}


def test_accounts_are_created_in_reach_and_the_second_factor_is_given_once(
    client: TestClient, demo: Demo, settings: Settings
) -> None:
    bt, sg = demo.unit_id, unit(client, "CAP-SG")
    for name in ("anh.nv", "ngoc.ttb"):  # an officer, a clerk: not theirs
        sign_in(client, name)
        assert refused(client.get("/api/v1/users"))
        assert refused(client.post("/api/v1/users", json=new_account(bt, username="x.bt")))
        assert refused(client.get("/api/v1/users/ngoc.ttb"))
    sibling_admin(client)
    assert refused(client.post("/api/v1/users", json=new_account(bt, username="x.bt")))
    assert refused(client.get("/api/v1/users/ngoc.ttb"))
    assert {u["username"] for u in client.get("/api/v1/users").json()} == {
        "dung.lh",
        "huong.ptt",
        "admin.sg",
    }

    sign_in(client, "admin.hcm")  # the province's unit admin: CAP-BT is in reach
    made = client.post("/api/v1/users", json=new_account(bt, username="lan.bt"))
    assert made.status_code == 201, made.text
    assert made.headers["cache-control"] == "no-store"
    secret = made.json()["second_factor"]["totp_secret"]
    assert made.json()["account"] == {
        "username": "lan.bt",
        "role": "clerk",
        "unit_id": bt,
        "person_id": None,
        "locked": False,
        "disabled": False,
        "created_at": made.json()["account"]["created_at"],
    }
    assert made.json()["second_factor"]["totp_uri"].startswith("otpauth://totp/")
    again = client.post("/api/v1/users", json=new_account(bt, username="lan.bt"))
    assert (again.status_code, error_code(again)) == (409, "access.conflict")
    for later in (client.get("/api/v1/users"), client.get("/api/v1/users/lan.bt")):
        assert later.status_code == 200
        assert secret not in later.text
        assert "totp" not in later.text
        assert "password" not in later.text
    assert "lan.bt" in {u["username"] for u in client.get("/api/v1/users").json()}
    # a unit admin never makes or touches a system admin
    assert refused(
        client.post("/api/v1/users", json=new_account(None, username="root2", role="system-admin"))
    )
    assert refused(client.put("/api/v1/users/lan.bt/role", json={"role": "system-admin"}))
    assert refused(client.post("/api/v1/users/sysadmin/disable"))
    assert refused(client.get("/api/v1/users/sysadmin"))
    # nor moves an account out of their reach
    sign_in_as(client, Role.UNIT_ADMIN, unit_id=bt, username="admin.bt")
    assert refused(client.put("/api/v1/users/lan.bt/role", json={"role": "officer", "unit_id": sg}))
    moved = client.put("/api/v1/users/lan.bt/role", json={"role": "auditor", "unit_id": bt})
    assert moved.json()["role"] == "auditor"

    # nor does a service with the admin scope, though it reaches everything else
    as_service(client, Scope.ADMIN)
    root = new_account(None, username="root2", role="system-admin")
    assert refused(client.post("/api/v1/users", json=root))
    assert refused(client.post("/api/v1/users/sysadmin/disable"))
    assert refused(client.put("/api/v1/users/lan.bt/role", json={"role": "system-admin"}))
    assert client.post("/api/v1/users/lan.bt/unlock").status_code == 200

    as_system_admin(client)
    root = client.post(
        "/api/v1/users", json=new_account(None, username="root2", role="system-admin")
    )
    assert root.status_code == 201, root.text
    assert client.get("/api/v1/users/root2").json()["role"] == "system-admin"
    assert client.get("/api/v1/users/nobody").status_code == 404

    assert login(client, "lan.bt", PASSWORD, secret).status_code == 200
    created = [
        e
        for e in audit_events(settings)
        if e.action is Action.USER_CHANGED and e.details.get("change") == "created"
    ]
    assert {(e.details["username"], e.actor.id) for e in created} >= {
        ("lan.bt", "user:admin.hcm"),
        ("root2", "user:test-sysadmin"),
    }
    assert not [e for e in audit_events(settings) if secret in str(e.details)]


def test_five_wrong_logins_lock_and_an_admin_unlocks_over_http(
    client: TestClient, demo: Demo, settings: Settings
) -> None:
    secret = DEMO_TOTP_SECRETS["ngoc.ttb"]
    for _ in range(5):
        assert login(client, "ngoc.ttb", "wrong password!", secret).status_code == 401
    assert login(client, "ngoc.ttb", DEMO_PASSWORD, secret).status_code == 401
    sign_in(client, "admin.hcm")
    assert client.get("/api/v1/users/ngoc.ttb").json()["locked"] is True
    for become in (
        sibling_admin,
        lambda c: sign_in(c, "anh.nv"),
        lambda c: sign_in(c, "auditor.hcm"),
    ):
        become(client)
        assert refused(client.post("/api/v1/users/ngoc.ttb/unlock"))
    sign_in(client, "admin.hcm")
    unlocked = client.post("/api/v1/users/ngoc.ttb/unlock")
    assert unlocked.status_code == 200, unlocked.text
    assert unlocked.json()["locked"] is False
    client.cookies.clear()
    assert login(client, "ngoc.ttb", DEMO_PASSWORD, secret).status_code == 200
    assert [
        e.actor.id
        for e in audit_events(settings)
        if e.action is Action.USER_CHANGED and e.details.get("change") == "unlocked"
    ] == ["user:admin.hcm"]


def test_disabling_a_password_or_second_factor_change_ends_what_it_should(
    client: TestClient, demo: Demo
) -> None:
    # disabling ends the account's sessions at once
    officer = sign_in(client, "anh.nv").cookies[SESSION_COOKIE]
    assert client.get("/api/v1/auth/me").status_code == 200
    sign_in(client, "admin.hcm")
    assert client.post("/api/v1/users/anh.nv/disable").json()["disabled"] is True
    client.cookies.set(SESSION_COOKIE, officer)
    assert client.get("/api/v1/auth/me").status_code == 401
    assert login(client, "anh.nv", DEMO_PASSWORD, DEMO_TOTP_SECRETS["anh.nv"]).status_code == 401

    # an administrator sets a password: the old one and the account's sessions end
    clerk = sign_in(client, "ngoc.ttb").cookies[SESSION_COOKIE]
    sign_in(client, "admin.hcm")
    short = client.put("/api/v1/users/ngoc.ttb/password", json={"password": "short"})
    assert (short.status_code, error_code(short)) == (422, "access.invalid_input")
    assert "short" not in short.text
    sibling_admin(client)
    assert refused(client.put("/api/v1/users/ngoc.ttb/password", json={"password": PASSWORD}))
    sign_in(client, "admin.hcm")
    assert (
        client.put("/api/v1/users/ngoc.ttb/password", json={"password": PASSWORD}).status_code
        == 200
    )
    client.cookies.set(SESSION_COOKIE, clerk)
    assert client.get("/api/v1/auth/me").status_code == 401
    assert login(client, "ngoc.ttb", PASSWORD, DEMO_TOTP_SECRETS["ngoc.ttb"]).status_code == 200

    # the holder changes their own: the current one first; their other sessions end
    other = sign_in(client, "dung.lh").cookies[SESSION_COOKIE]
    sign_in(client, "dung.lh")
    wrong = client.put(
        "/api/v1/auth/password",
        json={"current_password": "not the password", "new_password": NEW_PASSWORD},
    )
    assert (wrong.status_code, error_code(wrong)) == (401, "access.invalid_login")
    changed = client.put(
        "/api/v1/auth/password",
        json={"current_password": DEMO_PASSWORD, "new_password": NEW_PASSWORD},
    )
    assert changed.status_code == 204, changed.text
    assert client.get("/api/v1/auth/me").json()["id"] == "user:dung.lh"  # this one lives on
    kept = client.cookies[SESSION_COOKIE]
    client.cookies.set(SESSION_COOKIE, other)
    assert client.get("/api/v1/auth/me").status_code == 401
    client.cookies.set(SESSION_COOKIE, kept)
    assert store_of(client).user("dung.lh").locked is False
    as_service(client, Scope.ADMIN)
    assert refused(
        client.put(
            "/api/v1/auth/password",
            json={"current_password": DEMO_PASSWORD, "new_password": NEW_PASSWORD},
        )
    )

    # a new second factor: given once, the old authenticator stops working
    sign_in(client, "admin.hcm")
    reset = client.post("/api/v1/users/huong.ptt/totp")
    assert reset.status_code == 200, reset.text
    assert reset.headers["cache-control"] == "no-store"
    secret = reset.json()["totp_secret"]
    assert secret != DEMO_TOTP_SECRETS["huong.ptt"]
    assert secret not in client.get("/api/v1/users/huong.ptt").text
    assert (
        login(client, "huong.ptt", DEMO_PASSWORD, DEMO_TOTP_SECRETS["huong.ptt"]).status_code == 401
    )
    assert login(client, "huong.ptt", DEMO_PASSWORD, secret).status_code == 200


def test_service_clients_are_made_rotated_and_revoked_by_the_system_admin(
    client: TestClient, demo: Demo, settings: Settings
) -> None:
    body = {"name": "Cổng dịch vụ công", "scopes": ["sign", "verify"], "unit_id": demo.unit_id}
    for become in (lambda c: sign_in(c, "admin.hcm"), lambda c: sign_in(c, "anh.nv")):
        become(client)
        assert refused(client.get("/api/v1/clients"))
        assert refused(client.post("/api/v1/clients", json=body))

    as_system_admin(client)
    made = client.post("/api/v1/clients", json=body)
    assert made.status_code == 201, made.text
    assert made.headers["cache-control"] == "no-store"
    client_id, first = made.json()["client"]["client_id"], made.json()["client_secret"]
    assert made.json()["client"]["scopes"] == ["sign", "verify"]
    listed = client.get("/api/v1/clients")
    assert client_id in {c["client_id"] for c in listed.json()}
    assert first not in listed.text
    assert grant(client, client_id, first).status_code == 200

    # rotation: the previous secret works for the grace period, then no more
    as_system_admin(client)
    rotated = client.post(f"/api/v1/clients/{client_id}/rotate")
    assert rotated.headers["cache-control"] == "no-store"
    second = rotated.json()["client_secret"]
    assert grant(client, client_id, first).status_code == 200
    assert grant(client, client_id, second).status_code == 200
    as_system_admin(client)
    third = client.post(f"/api/v1/clients/{client_id}/rotate", json={"grace_hours": 0})
    assert grant(client, client_id, second).status_code == 401
    token = grant(client, client_id, third.json()["client_secret"]).json()["access_token"]

    # an admin client of another unit cannot touch it; an admin client never widens itself
    as_service(client, Scope.ADMIN, unit_id=unit(client, "CAP-SG"))
    assert refused(client.post(f"/api/v1/clients/{client_id}/rotate"))
    assert refused(client.post(f"/api/v1/clients/{client_id}/revoke"))
    as_service(client, Scope.ADMIN)
    assert refused(client.post(f"/api/v1/clients/{client_id}/rotate"))  # sign, verify: not held
    wider = {"name": "reader", "scopes": ["audit:read"]}
    assert refused(client.post("/api/v1/clients", json=wider))
    assert (
        client.post("/api/v1/clients", json={"name": "peer", "scopes": ["admin"]}).status_code
        == 201
    )

    # revocation: the secret and the tokens already issued stop at once
    as_system_admin(client)
    revoked = client.post(f"/api/v1/clients/{client_id}/revoke")
    assert revoked.json()["revoked"] is True
    assert grant(client, client_id, third.json()["client_secret"]).status_code == 401
    client.cookies.clear()
    assert (
        client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}).status_code
        == 401
    )
    as_system_admin(client)
    assert client.post(f"/api/v1/clients/{client_id}/rotate").status_code == 404

    changes = [
        (e.details["change"], e.actor.id)
        for e in audit_events(settings)
        if e.action is Action.CLIENT_CHANGED and e.details.get("client_id") == client_id
    ]
    assert changes == [
        ("created", "user:test-sysadmin"),
        ("rotated", "user:test-sysadmin"),
        ("rotated", "user:test-sysadmin"),
        ("revoked", "user:test-sysadmin"),
    ]
    secrets = (first, second, third.json()["client_secret"])
    assert not [e for e in audit_events(settings) if any(s in str(e.details) for s in secrets)]
