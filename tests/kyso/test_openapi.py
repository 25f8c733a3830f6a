"""The error answers :mod:`kyso.openapi` adds to the schema follow from the code: the
matrix, the body limits, the rate limits and the routes' own raw bodies. (That the answers
really are so is checked by the fuzzer, tests/kyso/test_api_fuzz.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kyso.access.matrix import MATRIX, PUBLIC
from kyso.app import create_app
from kyso.settings import Settings


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    data: Path = tmp_path_factory.mktemp("openapi")
    openapi: dict[str, Any] = create_app(Settings(data_dir=data)).openapi()
    return openapi


def responses(schema: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    found: dict[str, Any] = schema["paths"][path][method.lower()]["responses"]
    return found


def test_protected_routes_declare_401_and_403_public_ones_do_not(schema: dict[str, Any]) -> None:
    for (method, path), rule in MATRIX.items():
        if path.startswith("/csc/"):
            continue
        answers = responses(schema, method, path)
        assert "401" in answers, (method, path)
        assert ("403" in answers) is (not rule.signed_in or method != "GET"), (method, path)
        assert "409" in answers or not rule.writes, (method, path)
    for method, path in PUBLIC:
        if not path.startswith("/csc/"):
            assert "403" not in responses(schema, method, path), (method, path)


def test_rate_limited_routes_declare_429_with_retry_after(schema: dict[str, Any]) -> None:
    limited = [
        ("POST", "/oauth/token"),
        ("POST", "/api/v1/auth/login"),
        ("POST", "/api/v1/sign"),
        ("POST", "/api/v1/batches"),
        ("POST", "/api/v1/documents/{document_id}/sign"),
        ("POST", "/api/v1/documents/{document_id}/seal"),
    ]
    for method, path in limited:
        answer = responses(schema, method, path)["429"]
        assert answer["headers"]["Retry-After"]["required"] is True, path
    assert "429" not in responses(schema, "GET", "/api/v1/units")


def test_bodies_declare_413_and_kyso_errors_next_to_fastapis(schema: dict[str, Any]) -> None:
    answers = responses(schema, "POST", "/api/v1/units")
    assert answers["413"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorBody"
    }
    invalid = answers["422"]["content"]["application/json"]["schema"]["anyOf"]
    assert {"$ref": "#/components/schemas/ValidationErrorBody"} in invalid
    # The PKI protocols bound their own bodies and answer in their own form.
    assert "413" not in responses(schema, "POST", "/tsa")
    assert "application/timestamp-reply" in responses(schema, "POST", "/tsa")["400"]["content"]


def test_raw_bodies_and_answers_have_their_media_types(schema: dict[str, Any]) -> None:
    image = schema["paths"]["/api/v1/units/{unit_id}/seal-image"]["put"]["requestBody"]
    assert list(image["content"]) == ["image/png"]
    assert "415" in responses(schema, "PUT", "/api/v1/units/{unit_id}/seal-image")
    ocsp = schema["paths"]["/pki/ocsp"]["post"]
    assert list(ocsp["requestBody"]["content"]) == ["application/ocsp-request"]
    assert list(ocsp["responses"]["200"]["content"]) == ["application/ocsp-response"]
    assert (
        "application/pkix-crl" in responses(schema, "GET", "/pki/crl/{name}.crl")["200"]["content"]
    )
    assert "text/plain" in responses(schema, "GET", "/metrics")["200"]["content"]
    assert "503" not in responses(schema, "GET", "/healthz")
