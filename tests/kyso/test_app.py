"""The HTTP service through its real lifespan: database, HSM pool, probes, request ids, logs."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from hsm import BlockingSessionPool
from kyso.access.model import Scope
from kyso.access.tokens import ensure_token_key
from kyso.app import create_app
from kyso.settings import Settings
from tests.conftest import TestToken
from tests.kyso.identities import as_service, as_system_admin

GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")

OpenClient = Callable[..., Any]


@pytest.fixture
def client_for(token: TestToken, tmp_path: Path, database_url: str) -> Callable[..., Any]:
    """Start the app (lifespan included) on the test token and database."""

    @contextmanager
    def start(**overrides: object) -> Iterator[TestClient]:
        values: dict[str, Any] = {
            "data_dir": tmp_path,
            "database_url": database_url,
            "hsm_token_label": token.label,
            "hsm_pin_file": token.pin_file,
            "hsm_acquire_timeout": 1,
            "hsm_retry_interval": 0,
            "log_format": "json",
        }
        values.update(overrides)
        with TestClient(create_app(Settings(**values))) as client:
            yield client

    return start


@pytest.fixture
def client(client_for: OpenClient) -> Iterator[TestClient]:
    with client_for() as started:
        yield started


def _json_lines(text: str) -> list[dict[str, Any]]:
    entries = []
    for line in text.splitlines():
        if line.startswith("{"):
            entries.append(json.loads(line))
    return entries


def test_healthz(client: TestClient):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_ready(client: TestClient, token: TestToken, database_url: str):
    response = client.get("/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"]["hsm"]["ok"] is True
    assert token.label in body["checks"]["hsm"]["detail"]
    assert token.serial in body["checks"]["hsm"]["detail"]
    assert body["checks"]["database"]["ok"] is True
    assert database_url.split(":")[0].split("+")[0] in body["checks"]["database"]["detail"]


def test_metrics(client: TestClient):
    assert client.get("/readyz").status_code == 200
    response = as_system_admin(client).get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "kyso_hsm_operations_total" in text
    assert re.search(r'kyso_hsm_operations_total\{operation="check",outcome="ok"\} [1-9]', text)
    open_sessions = re.search(r"^kyso_hsm_pool_sessions_open (\S+)$", text, re.MULTILINE)
    assert open_sessions is not None
    # Process-wide gauge: at least this app's pool of 4 sessions is open.
    assert float(open_sessions.group(1)) >= 4


def test_metrics_answer_system_admins_and_admin_clients_only(
    client_for: OpenClient, token: TestToken
):
    # Service clients need the access-token key, made before the app starts.
    with BlockingSessionPool(token.config(pool_size=1)) as pool:
        ensure_token_key(pool)
    with client_for() as client:
        anonymous = client.get("/metrics")
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]["code"] == "access.invalid_token"
        assert client.get("/healthz").status_code == 200  # the probes stay public
        assert client.get("/readyz").status_code == 200

        refused = as_service(client, Scope.VERIFY, Scope.AUDIT_READ).get("/metrics")
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "access.forbidden"
        assert "kyso_hsm_operations_total" not in refused.text

        admitted = as_service(client, Scope.ADMIN).get("/metrics")
        assert admitted.status_code == 200
        assert "kyso_hsm_operations_total" in admitted.text


@pytest.mark.parametrize(
    ("sent", "echoed"),
    [
        ("req-123", True),
        ("a1B2.c3_d4-e5", True),
        ("x" * 64, True),
        ("x" * 65, False),
        ("x" * 200, False),
        ("has space", False),
        ("semi;colon", False),
        ("", False),
    ],
)
def test_request_id(client: TestClient, sent: str, echoed: bool):
    response = client.get("/healthz", headers={"X-Request-ID": sent})
    rid = response.headers["X-Request-ID"]
    if echoed:
        assert rid == sent
    else:
        assert rid != sent
        assert GENERATED_ID.match(rid)


def test_request_id_generated_when_absent(client: TestClient):
    first = client.get("/healthz").headers["X-Request-ID"]
    second = client.get("/healthz").headers["X-Request-ID"]
    assert GENERATED_ID.match(first)
    assert GENERATED_ID.match(second)
    assert first != second


def test_request_id_on_error_responses(client: TestClient):
    response = client.get("/no-such-page", headers={"X-Request-ID": "lost-1"})
    assert response.status_code == 404
    assert response.headers["X-Request-ID"] == "lost-1"


def test_no_route_answers_in_kysos_error_form(client: TestClient):
    """A path no route matches — also an id with an encoded "/" — and a method a route does
    not take are refused like everything else (the schema declares them so)."""
    for path in ("/no-such-page", "/api/v1/documents/a%2Fb/c"):
        missing = client.get(path)
        assert missing.status_code == 404, path
        assert missing.json()["error"]["code"] == "kyso.not_found"
    wrong = client.delete("/healthz")
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (405, "kyso.method_not_allowed")
    assert "GET" in wrong.headers["Allow"]


def test_docs_and_openapi(client: TestClient):
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
    schema = client.get("/openapi.json")
    assert schema.status_code == 200
    assert schema.json()["info"]["title"] == "Kyso"
    assert {"/healthz", "/readyz", "/metrics"} <= set(schema.json()["paths"])


def test_access_log_is_json_with_request_id(
    client_for: OpenClient, capsys: pytest.CaptureFixture[str], token: TestToken
):
    with client_for() as client:
        client.get("/healthz", headers={"X-Request-ID": "trace-me-42"})
        client.get("/readyz")
    entries = _json_lines(capsys.readouterr().err)

    access = [e for e in entries if e["logger"] == "kyso.access"]
    healthz = [e for e in access if e["path"] == "/healthz"]
    assert len(healthz) == 1
    entry = healthz[0]
    assert entry["request_id"] == "trace-me-42"
    assert entry["method"] == "GET"
    assert entry["status"] == 200
    assert entry["level"] == "INFO"
    assert isinstance(entry["duration_ms"], float)
    readyz = next(e for e in access if e["path"] == "/readyz")
    assert GENERATED_ID.match(readyz["request_id"])
    assert any(e["message"] == "Kyso started" for e in entries)
    assert token.user_pin not in json.dumps(entries)


def test_wrong_pin_keeps_the_app_up_with_readyz_red(
    client_for: OpenClient, token: TestToken, capsys: pytest.CaptureFixture[str]
):
    token.pin_file.write_text("not-the-pin-0000\n")
    with client_for() as client:
        assert client.get("/healthz").status_code == 200
        for _ in range(2):  # the pool never spends a second attempt on a rejected PIN
            response = client.get("/readyz")
            assert response.status_code == 503
            checks = response.json()["checks"]
            assert checks["hsm"]["ok"] is False
            assert checks["hsm"]["code"] == "hsm.pin_incorrect"
            assert checks["database"]["ok"] is True
            assert response.json()["status"] == "not ready"
    logged = capsys.readouterr().err
    assert "hsm.pin_incorrect" in logged
    assert "not-the-pin-0000" not in logged
    assert "not-the-pin-0000" not in response.text


def test_unknown_token_label_readyz_unavailable(client_for: OpenClient):
    with client_for(hsm_token_label="no-such-token-label") as client:
        assert client.get("/healthz").status_code == 200
        response = client.get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["hsm"]["ok"] is False
    assert checks["hsm"]["code"] == "hsm.unavailable"
    assert "no-such-token-label" in checks["hsm"]["detail"]
    assert checks["database"]["ok"] is True


def test_schema_behind_readyz_database_red(client_for: OpenClient):
    with client_for(migrate_on_start=False) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["hsm"]["ok"] is True
    assert checks["database"]["ok"] is False
    assert checks["database"]["code"] == "kyso.storage"
    assert "expected" in checks["database"]["detail"]


def test_migrations_run_on_start(client_for: OpenClient, database_url: str):
    from kyso import db

    with client_for() as client:
        assert client.get("/readyz").status_code == 200
    engine = db.make_engine(database_url)
    try:
        assert db.current_revision(engine) == db.head_revision()
    finally:
        engine.dispose()


def test_an_unhandled_error_is_a_json_500_with_the_request_id(
    token: TestToken, tmp_path: Path, capfd: pytest.CaptureFixture[str]
):
    app = create_app(
        Settings(
            data_dir=tmp_path,
            database_url=f"sqlite:///{tmp_path / 'kyso.db'}",
            hsm_token_label=token.label,
            hsm_pin_file=token.pin_file,
            log_format="json",
        )
    )

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret detail of the bug")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom", headers={"X-Request-ID": "trace-me-42"})

    assert response.status_code == 500
    assert response.headers["X-Request-ID"] == "trace-me-42"
    assert response.json() == {
        "error": {"code": "kyso.internal", "message": "internal error; quote the request id"}
    }
    assert "secret detail" not in response.text
    lines = _json_lines(capfd.readouterr().err)
    logged = [e for e in lines if e.get("request_id") == "trace-me-42"]
    assert any(
        e["message"] == "unhandled error" and "RuntimeError" in e["exception"] for e in logged
    )
    assert any(e.get("status") == 500 for e in logged)
