"""Hardening at the HTTP edge: every answer carries the security headers; CORS is closed
unless origins are configured, and then open to those only; sign-in, activation and
signing are rate limited per account or caller and per address, with ``Retry-After``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from kyso.access.limits import Limit, RateLimitedError, RateLimiter
from tests.conftest import TestToken
from tests.kyso.live import service_settings
from tests.kyso.test_documents_http import started
from tests.kyso.test_pki_http import error_code


@pytest.fixture
def client(token: TestToken, tmp_path: Path, database_url: str) -> Iterator[TestClient]:
    with started(
        service_settings(token, tmp_path, database_url, rate_login_per_minute=3)
    ) as running:
        yield running


def test_every_answer_carries_the_security_headers(client: TestClient) -> None:
    for answer in (client.get("/healthz"), client.get("/api/v1/auth/me"), client.get("/nowhere")):
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert answer.headers["content-security-policy"].startswith("default-src 'none'")
    assert "strict-transport-security" not in client.get("/healthz").headers  # plain http
    # the interactive docs load their scripts: no policy that would break them
    assert "content-security-policy" not in client.get("/docs").headers


def test_cors_is_closed_unless_configured(
    client: TestClient, token: TestToken, tmp_path: Path, database_url: str
) -> None:
    preflight = {
        "Origin": "https://portal.example.gov.vn",
        "Access-Control-Request-Method": "POST",
    }
    closed = client.options("/api/v1/auth/login", headers=preflight)
    assert "access-control-allow-origin" not in closed.headers
    settings = service_settings(
        token,
        tmp_path / "open",
        database_url,
        cors_origins=["https://portal.example.gov.vn"],
        public_url="https://kyso.example.gov.vn",
    )
    with started(settings) as opened:
        allowed = opened.options("/api/v1/auth/login", headers=preflight)
        assert allowed.headers["access-control-allow-origin"] == "https://portal.example.gov.vn"
        other = opened.options(
            "/api/v1/auth/login", headers=preflight | {"Origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in other.headers
        assert opened.get("/healthz").headers["strict-transport-security"].startswith("max-age=")


def test_sign_in_is_rate_limited_per_account_and_address(client: TestClient) -> None:
    body = {"username": "nobody", "password": "một mật khẩu sai", "otp": "123456"}
    answers = [client.post("/api/v1/auth/login", json=body) for _ in range(4)]
    assert [a.status_code for a in answers] == [401, 401, 401, 429]
    assert error_code(answers[-1]) == "access.rate_limited"
    assert int(answers[-1].headers["retry-after"]) >= 1
    # the address is spent too: another account from here waits as well
    other = client.post("/api/v1/auth/login", json=body | {"username": "someone"})
    assert other.status_code == 429


def test_buckets_refill_with_time() -> None:
    now = [0.0]
    limiter = RateLimiter({"sign": Limit(per_minute=60, burst=2)}, clock=lambda: now[0])
    limiter.check("sign", "a")
    limiter.check("sign", "a")
    with pytest.raises(RateLimitedError) as caught:
        limiter.check("sign", "a")
    assert caught.value.retry_after == 1
    limiter.check("sign", "b")  # another caller has its own bucket
    now[0] += 1.0
    limiter.check("sign", "a")
    with pytest.raises(RateLimitedError):
        limiter.check("sign", "a")
    limiter.check("unlimited", "a")  # an action without a limit


def test_csc_bodies_are_bounded_before_they_are_read(client: TestClient) -> None:
    answer = client.post(
        "/csc/v1/credentials/authorize",
        content=b"{" + b" " * (1024 * 1024 + 1) + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert (answer.status_code, error_code(answer)) == (413, "kyso.body_too_large")
