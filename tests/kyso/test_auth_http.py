"""Signing in over HTTP, on SQLite and PostgreSQL: the OAuth2 client-credentials grant gives
a JWT that an independent JWT library verifies with the HSM key's public half; a forged,
expired or revoked token is refused; a person signs in with password and TOTP code, gets
an HttpOnly cookie and a CSRF token that every state-changing request must repeat; every
refusal reads the same whoever asked."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_public_key,
)
from fastapi.testclient import TestClient

from hsm import BlockingSessionPool
from kyso import db
from kyso.access import factors
from kyso.access.model import Role, Scope
from kyso.access.store import AccessStore
from kyso.access.tokens import TokenIssuer, ensure_token_key
from kyso.settings import Settings
from tests.conftest import TestToken
from tests.kyso.live import service_settings
from tests.kyso.test_documents_http import started
from tests.kyso.test_pki_http import ADMIN, error_code

PASSWORD = "một mật khẩu dài 2026"


@pytest.fixture
def settings(token: TestToken, tmp_path: Path, database_url: str) -> Settings:
    return service_settings(token, tmp_path, database_url)


@pytest.fixture
def public_key_der(settings: Settings) -> bytes:
    """The token-signing key, made on the HSM as ``kyso init`` makes it."""
    engine = db.make_engine(settings.sqlalchemy_url)
    try:
        db.upgrade(engine)
        with BlockingSessionPool(settings.hsm_config()) as pool:
            key, _ = ensure_token_key(pool)
    finally:
        engine.dispose()
    assert key.public_key is not None
    return key.public_key


@pytest.fixture
def client(settings: Settings, public_key_der: bytes) -> Iterator[TestClient]:
    with started(settings) as running:
        yield running


def store_of(client: TestClient) -> AccessStore:
    store: AccessStore = client.app.state.runtime.access  # type: ignore[attr-defined]
    return store


def basic(client_id: str, secret: str) -> dict[str, str]:
    pair = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def grant(client: TestClient, headers: dict[str, str], **form: str) -> Any:
    return client.post(
        "/oauth/token", data={"grant_type": "client_credentials", **form}, headers=headers
    )


def test_a_service_gets_a_token_any_jwt_library_can_verify(
    client: TestClient, public_key_der: bytes
) -> None:
    store = store_of(client)
    service, secret = store.add_client(
        name="Cổng dịch vụ công",
        scopes=frozenset({Scope.SIGN, Scope.VERIFY}),
        unit_id=None,
        actor=ADMIN,
    )
    answer = grant(client, basic(service.client_id, secret))
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "sign verify"
    assert body["expires_in"] == 600
    claims = jwt.decode(
        body["access_token"],
        load_der_public_key(public_key_der),
        algorithms=["ES256"],
        audience="kyso",
    )
    assert claims["sub"] == f"client:{service.client_id}"
    assert claims["exp"] - claims["iat"] == 600
    assert jwt.get_unverified_header(body["access_token"])["typ"] == "at+jwt"
    me = client.get("/api/v1/auth/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json() == {
        "id": f"client:{service.client_id}",
        "kind": "client",
        "role": None,
        "unit_id": None,
        "scopes": ["sign", "verify"],
        "second_factor": False,
    }
    # a narrower scope on request; the form fields instead of HTTP Basic
    narrow = grant(client, {}, scope="verify", client_id=service.client_id, client_secret=secret)
    assert narrow.json()["scope"] == "verify"


def test_the_token_endpoint_answers_errors_as_rfc_6749_says(client: TestClient) -> None:
    store = store_of(client)
    service, secret = store.add_client(
        name="Hệ thống cư trú", scopes=frozenset({Scope.VERIFY}), unit_id=None, actor=ADMIN
    )
    cases = [
        (grant(client, basic(service.client_id, secret + "x")), 401, "invalid_client"),
        (grant(client, basic("kyso-0000000000000000", secret)), 401, "invalid_client"),
        (grant(client, {}), 401, "invalid_client"),
        (grant(client, basic(service.client_id, secret), scope="admin"), 400, "invalid_scope"),
        (grant(client, basic(service.client_id, secret), scope="root"), 400, "invalid_scope"),
        (
            grant(
                client,
                basic(service.client_id, secret),
                client_id=service.client_id,
                client_secret=secret,
            ),
            400,
            "invalid_request",
        ),
        (
            client.post(
                "/oauth/token",
                data={"grant_type": "password"},
                headers=basic(service.client_id, secret),
            ),
            400,
            "unsupported_grant_type",
        ),
    ]
    for answer, status, error in cases:
        assert (answer.status_code, answer.json()["error"]) == (status, error), answer.text
        assert secret not in answer.text
    assert cases[0][0].headers["www-authenticate"].startswith("Basic")


def test_forged_expired_and_revoked_tokens_are_refused(
    client: TestClient, settings: Settings
) -> None:
    store = store_of(client)
    service, secret = store.add_client(
        name="Cổng", scopes=frozenset({Scope.VERIFY}), unit_id=None, actor=ADMIN
    )
    token = grant(client, basic(service.client_id, secret)).json()["access_token"]
    head, payload, signature = token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    other_key = ec.generate_private_key(ec.SECP256R1())
    foreign = TokenIssuer(
        sign_digest=lambda digest: other_key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256()))),
        public_key_der=other_key.public_key().public_bytes(
            Encoding.DER, PublicFormat.SubjectPublicKeyInfo
        ),
        issuer=settings.base_url,
    )
    issuer = client.app.state.runtime.access_tokens  # type: ignore[attr-defined]
    expired = TokenIssuer(
        sign_digest=issuer._sign_digest,
        public_key_der=_der_of(issuer),
        issuer=settings.base_url,
        clock=lambda: datetime.now(UTC) - timedelta(hours=1),
    )
    forged = [
        f"{head}.{payload}.{flipped}",
        foreign.issue(
            subject=f"client:{service.client_id}", scope="verify", unit_id=None, client_id="x"
        )[0],
        expired.issue(
            subject=f"client:{service.client_id}", scope="verify", unit_id=None, client_id="x"
        )[0],
        f"{head}.{payload}.",
        "not-a-token",
    ]
    for bad in forged:
        answer = client.get("/api/v1/auth/me", headers=bearer(bad))
        assert answer.status_code == 401, bad
        assert error_code(answer) == "access.invalid_token"
        assert answer.headers["www-authenticate"].startswith("Bearer")
    assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 200
    store.revoke_client(service.client_id, ADMIN)
    assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 401
    assert client.get("/api/v1/auth/me").status_code == 401


def test_a_person_signs_in_with_a_code_and_the_cookie_needs_its_csrf_token(
    client: TestClient,
) -> None:
    store = store_of(client)
    _, secret = store.add_user(
        username="sysadmin", role=Role.SYSTEM_ADMIN, unit_id=None, password=PASSWORD, actor=ADMIN
    )
    refusals = [
        client.post("/api/v1/auth/login", json={"username": name, "password": pw, "otp": code})
        for name, pw, code in (
            ("sysadmin", "sai mật khẩu rồi", factors.totp_now(secret)),
            ("nobody", PASSWORD, factors.totp_now(secret)),
            ("sysadmin", PASSWORD, "000000"),
        )
    ]
    assert {r.status_code for r in refusals} == {401}
    assert len({r.text for r in refusals}) == 1  # the same answer, whoever asked
    answer = client.post(
        "/api/v1/auth/login",
        json={"username": "sysadmin", "password": PASSWORD, "otp": factors.totp_now(secret)},
    )
    assert answer.status_code == 200, answer.text
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    csrf = answer.json()["csrf_token"]
    me = client.get("/api/v1/auth/me")
    assert me.json()["id"] == "user:sysadmin"
    assert me.json()["second_factor"] is True
    without = client.post("/api/v1/auth/logout")
    assert (without.status_code, error_code(without)) == (403, "access.csrf")
    wrong = client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf + "x"})
    assert wrong.status_code == 403
    out = client.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf})
    assert out.status_code == 204
    assert client.get("/api/v1/auth/me").status_code == 401


def _der_of(issuer: TokenIssuer) -> bytes:
    return issuer._public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def test_a_token_request_body_is_bounded(client: TestClient) -> None:
    answer = client.post(
        "/oauth/token", data={"grant_type": "client_credentials", "scope": "x" * 10_000}
    )
    assert (answer.status_code, error_code(answer)) == (413, "kyso.body_too_large")
