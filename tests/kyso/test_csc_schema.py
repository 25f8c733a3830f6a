"""The OpenAPI schema of the CSC API (``/csc/v1/``, ``/csc/v2/``) is complete and true: a
running Kyso (uvicorn on loopback, the demo data, SQLite and PostgreSQL) is fuzzed by
schemathesis on those operations only, with valid and invalid bodies, without a token, with
a service client's OAuth2 token and with a person's CSC token, and every answer is checked
against the schema: no 5xx, its status code, content type, body and headers documented.

Bounded: a few examples per operation and mode (the whole run takes well under a minute)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from kyso.demo import DEMO_PASSWORD, DEMO_PIN
from tests.conftest import TestToken
from tests.kyso.live import demo_service, serving

EXAMPLES = 5
"""Examples per operation and generation mode (and caller): ≤ 10 per operation and caller."""

SHA256 = "2.16.840.1.101.3.4.2.1"
ECDSA_SHA256 = "1.2.840.10045.4.3.2"

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@dataclass(frozen=True)
class Live:
    schema: schemathesis.BaseSchema
    client_token: str
    person_token: str
    credential: str
    """The credential of the person (a demo officer whose credential asks for a PIN only)."""


async def _tokens(base: str, client_id: str, client_secret: str) -> tuple[str, str]:
    """A service client's OAuth2 token and the CSC token of a demo officer (PIN only)."""
    async with aiohttp.ClientSession() as http:
        client = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
        async with http.post(
            f"{base}/oauth/token",
            data={"grant_type": "client_credentials"},
            headers={"Authorization": f"Basic {client}"},
        ) as answer:
            assert answer.status == 200, await answer.text()
            client_token = str((await answer.json())["access_token"])
        person = base64.b64encode(f"dung.lh:{DEMO_PASSWORD}".encode()).decode()
        async with http.post(
            f"{base}/csc/v1/auth/login", headers={"Authorization": f"Basic {person}"}
        ) as answer:
            assert answer.status == 200, await answer.text()
            person_token = str((await answer.json())["access_token"])
    return client_token, person_token


def _officer(unit: dict[str, Any]) -> int:
    """The credential of a demo unit's officer (of the second unit: ``dung.lh``)."""
    person = next(p for p in unit["people"] if p["role"] == "officer")
    credential: int = person["credential_ids"][0]
    return credential


@pytest.fixture
def live(token: TestToken, tmp_path: Path, database_url: str) -> Iterator[Live]:
    settings, demo = demo_service(token, tmp_path, database_url, verify_workers=1)
    client = json.loads(demo.read_text(encoding="utf-8"))["service_client"]
    with serving(settings) as base:
        client_token, person_token = asyncio.run(
            _tokens(base, client["client_id"], client["client_secret"])
        )
        schema = schemathesis.openapi.from_url(f"{base}/openapi.json").include(path_regex="^/csc/")
        yield Live(
            schema=schema,
            client_token=client_token,
            person_token=person_token,
            credential=str(_officer(json.loads(demo.read_text(encoding="utf-8"))["units"][1])),
        )


def _fuzz(
    operation: schemathesis.APIOperation, mode: GenerationMode, headers: dict[str, str]
) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(mode, headers=headers))
    def exercise(case: schemathesis.Case) -> None:
        case.call_and_validate(checks=CHECKS)

    exercise()


def test_every_csc_answer_matches_the_schema(live: Live) -> None:
    callers = {
        "anonymous": {},
        "service client": {"Authorization": f"Bearer {live.client_token}"},
        "person": {"Authorization": f"Bearer {live.person_token}"},
    }
    failures: dict[str, str] = {}
    operations = [result.ok() for result in live.schema.get_all_operations()]
    for caller, headers in callers.items():
        for operation in operations:
            if caller == "person" and operation.path.endswith("/auth/revoke"):
                continue  # it would end the session the rest of this run signs in with
            modes = [GenerationMode.POSITIVE]
            if operation.body:
                modes.append(GenerationMode.NEGATIVE)
            for mode in modes:
                try:
                    _fuzz(operation, mode, headers)
                except (Exception, BaseExceptionGroup) as ex:  # every operation is tried
                    label = f"{caller}, {mode.value}: {operation.label}"
                    failures[label] = f"{type(ex).__name__}: {str(ex)[:1500]}"
    assert len(operations) == 17  # v1: 8, v2: 8 and signDoc
    assert not failures, "\n\n".join(f"{k}\n{v}" for k, v in failures.items())


def test_answers_of_a_whole_signing_match_the_schema(live: Live) -> None:
    """What random bodies seldom reach: every credential description (v1 and v2, with all
    the details), a SAD, a signature and a timestamp, each checked against the schema."""
    operations = {op.label: op for op in (r.ok() for r in live.schema.get_all_operations())}
    headers = {"Authorization": f"Bearer {live.person_token}"}

    def call(label: str, body: dict[str, Any]) -> dict[str, Any]:
        case = operations[label].Case(body=body, headers=headers, media_type="application/json")
        response = case.call_and_validate(checks=CHECKS)
        assert response.status_code == 200, response.text
        answer: dict[str, Any] = response.json()
        return answer

    details = {"certificates": "chain", "certInfo": True, "authInfo": True}
    described = call("POST /csc/v1/credentials/info", {"credentialID": live.credential} | details)
    assert {"issuerDN", "validTo"} <= set(described["cert"])
    call("POST /csc/v1/credentials/info", {"credentialID": live.credential, "certificates": "none"})
    call("POST /csc/v2/credentials/info", {"credentialID": live.credential} | details)
    listed = call("POST /csc/v2/credentials/list", {"credentialInfo": True} | details)
    assert listed["credentialIDs"] == [live.credential]
    digest = base64.b64encode(hashlib.sha256(b"CT07 schema").digest()).decode()
    for version, hashes in (("v1", "hash"), ("v2", "hashes")):
        authorized = {"credentialID": live.credential, "numSignatures": 1, hashes: [digest]}
        pin = (
            {"PIN": DEMO_PIN}
            if version == "v1"
            else {"authData": [{"id": "PIN", "value": DEMO_PIN}]}
        )
        granted = call(f"POST /csc/{version}/credentials/authorize", authorized | pin)
        signed = call(
            f"POST /csc/{version}/signatures/signHash",
            {
                "credentialID": live.credential,
                "SAD": granted["SAD"],
                hashes: [digest],
                "signAlgo": ECDSA_SHA256,
            },
        )
        assert len(signed["signatures"]) == 1
        algorithm = "hashAlgo" if version == "v1" else "hashAlgorithmOID"
        call(f"POST /csc/{version}/signatures/timestamp", {"hash": digest, algorithm: SHA256})
