"""Who a test's HTTP client is: a person signed in (a session opened in the store, with its
cookie and CSRF token; no one-time code needed) or a service with an access token."""

from __future__ import annotations

import secrets

from fastapi.testclient import TestClient

from audit.events import Actor
from kyso.access.model import Role, Scope
from kyso.access.store import AccessStore
from kyso.access.tokens import TokenIssuer
from kyso.routers.auth import CSRF_HEADER, SESSION_COOKIE

SETUP = Actor(id="test:setup", role="system-admin")


def store_of(client: TestClient) -> AccessStore:
    store: AccessStore = client.app.state.runtime.access  # type: ignore[attr-defined]
    return store


def sign_in(client: TestClient, username: str) -> TestClient:
    """``client``'s next requests are ``username``'s (an account that exists)."""
    store = store_of(client)
    opened = store.open_session(store.user(username), kind="web")
    client.headers.pop("Authorization", None)
    client.cookies.set(SESSION_COOKIE, opened.secret)
    client.headers[CSRF_HEADER] = opened.csrf
    return client


def sign_in_as(
    client: TestClient,
    role: Role,
    *,
    unit_id: int | None = None,
    person_id: int | None = None,
    username: str | None = None,
) -> TestClient:
    """An account of ``role`` (made when missing) signs ``client`` in."""
    store = store_of(client)
    name = username or f"{role.value}-{unit_id or 'all'}-{person_id or 'x'}"
    if name not in {user.username for user in store.users()}:
        store.add_user(
            username=name,
            role=role,
            unit_id=unit_id,
            person_id=person_id,
            password=secrets.token_urlsafe(16),
            actor=SETUP,
        )
    return sign_in(client, name)


def as_system_admin(client: TestClient) -> TestClient:
    return sign_in_as(client, Role.SYSTEM_ADMIN, username="test-sysadmin")


def as_service(client: TestClient, *scopes: Scope, unit_id: int | None = None) -> TestClient:
    """A service client with ``scopes`` (made here) calls with a fresh access token."""
    store = store_of(client)
    issuer: TokenIssuer | None = client.app.state.runtime.access_tokens  # type: ignore[attr-defined]
    assert issuer is not None, "the token key is missing: make it before the app starts"
    service, _ = store.add_client(
        name="test service", scopes=frozenset(scopes), unit_id=unit_id, actor=SETUP
    )
    token, _ = issuer.issue(
        subject=f"client:{service.client_id}",
        scope=" ".join(sorted(s.value for s in scopes)),
        unit_id=unit_id,
        client_id=service.client_id,
    )
    client.cookies.clear()
    client.headers.pop(CSRF_HEADER, None)
    client.headers["Authorization"] = f"Bearer {token}"
    return client
