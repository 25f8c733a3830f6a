"""The CSC API v1 on a running Kyso (uvicorn on loopback), on SoftHSM and both databases:
pyHanko's own ``CSCSigner`` signs two PDFs through Kyso in one ``signHash`` batch, with the
demo officer's PIN and one-time code and the SAD pinned to the two hashes (SCAL 2), and
Kyso's verifier passes both; a SAD for other hashes, a reused SAD, a wrong PIN or another
officer's credential are refused; a service client reaches only the seal bound to it."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import signers
from pyhanko.sign.signers.csc_signer import (
    CSCAuthorizationInfo,
    CSCAuthorizationManager,
    CSCServiceSessionInfo,
    CSCSigner,
    fetch_certs_in_csc_credential,
)

from bench.signer_bench import one_page_pdf
from hsm import BlockingSessionPool
from kyso import db
from kyso.access import factors
from kyso.access.activation import SignatureActivation
from kyso.access.model import Scope
from kyso.access.store import AccessStore
from kyso.demo import DEMO_PASSWORD, DEMO_PIN, DEMO_TOTP_SECRETS
from kyso.pki_service import make_authority
from kyso.settings import Settings
from tests.conftest import TestToken
from tests.kyso.live import demo_service, serving
from tests.kyso.test_pki_http import ADMIN
from tests.verifier.fixtures import kyso_policy
from verifier.indications import Indication
from verifier.validate import verify_pdf


@dataclass(frozen=True)
class Service:
    base: str
    officer_credential: str
    other_credential: str
    seal: str
    settings: Settings


@pytest.fixture
def service(token: TestToken, tmp_path: Path, database_url: str) -> Iterator[Service]:
    settings, demo = demo_service(token, tmp_path, database_url)
    here, other = json.loads(demo.read_text(encoding="utf-8"))["units"]

    def officer_credential(unit: dict[str, Any]) -> str:
        person = next(p for p in unit["people"] if p["role"] == "officer")
        return str(person["credential_ids"][0])

    with serving(settings) as base:
        yield Service(
            base=base,
            officer_credential=officer_credential(here),
            other_credential=officer_credential(other),
            seal=str(here["seal_credential_ids"][0]),
            settings=settings,
        )


async def login(http: aiohttp.ClientSession, base: str, username: str) -> str:
    pair = base64.b64encode(f"{username}:{DEMO_PASSWORD}".encode()).decode()
    async with http.post(
        f"{base}/csc/v1/auth/login", headers={"Authorization": f"Basic {pair}"}
    ) as answer:
        assert answer.status == 200, await answer.text()
        token: str = (await answer.json())["access_token"]
    return token


class PinAndCode(CSCAuthorizationManager):
    """What a person at a CSC client does: PIN and the code of their authenticator app,
    for exactly the hashes about to be signed."""

    def __init__(self, http: aiohttp.ClientSession, username: str, *args: Any) -> None:
        super().__init__(*args)
        self.http = http
        self.username = username
        self.calls = 0

    async def authorize_signature(self, hash_b64s: list[str]) -> CSCAuthorizationInfo:
        self.calls += 1
        body = self.format_csc_auth_request(
            pin=DEMO_PIN,
            otp=factors.totp_now(DEMO_TOTP_SECRETS[self.username]),
            hash_b64s=hash_b64s,
        )
        url = self.csc_session_info.endpoint_url("credentials/authorize")
        async with self.http.post(url, json=body, headers=self.auth_headers) as answer:
            assert answer.status == 200, await answer.text()
            return self.parse_csc_auth_response(await answer.json())


def test_pyhanko_signs_a_batch_through_kyso_with_pin_and_code(service: Service) -> None:
    async def scenario() -> tuple[list[bytes], Any, int]:
        async with aiohttp.ClientSession() as http:
            token = await login(http, service.base, "anh.nv")
            async with http.post(
                f"{service.base}/csc/v1/credentials/list",
                json={},
                headers={"Authorization": f"Bearer {token}"},
            ) as answer:
                listed = (await answer.json())["credentialIDs"]
            session = CSCServiceSessionInfo(
                service_url=service.base,
                credential_id=service.officer_credential,
                oauth_token=token,
            )
            credential = await fetch_certs_in_csc_credential(http, session)
            manager = PinAndCode(http, "anh.nv", session, credential)
            signer = CSCSigner(http, manager, batch_size=2)

            async def sign(pdf: bytes) -> bytes:
                out = BytesIO()
                await signers.async_sign_pdf(
                    IncrementalPdfFileWriter(BytesIO(pdf)),
                    signers.PdfSignatureMetadata(field_name="Signature1"),
                    signer=signer,
                    output=out,
                )
                return out.getvalue()

            signed = await asyncio.gather(
                sign(one_page_pdf("CT07 so 1")), sign(one_page_pdf("CT07 so 2"))
            )
            return list(signed), (credential, listed), manager.calls

    signed, (credential, listed), calls = asyncio.run(scenario())
    assert listed == [service.officer_credential]
    assert credential.hash_pinning_required
    assert credential.max_batch_size == 100
    assert calls == 1  # one authorisation, one signHash, two signatures
    engine = db.make_engine(service.settings.sqlalchemy_url)
    try:
        with BlockingSessionPool(service.settings.hsm_config()) as pool:
            policy = kyso_policy(make_authority(service.settings, engine, pool))
    finally:
        engine.dispose()
    for pdf in signed:
        result = verify_pdf(pdf, policy)
        assert result.indication is Indication.TOTAL_PASSED, result
        assert result.signatures[0].certificate is not None
        assert result.signatures[0].certificate.common_name == "Nguyễn Văn Ánh"


def call(url: str, token: str, body: dict[str, Any]) -> tuple[int, Any]:
    async def go() -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"}
        async with (
            aiohttp.ClientSession() as session,
            session.post(url, json=body, headers=headers) as answer,
        ):
            return answer.status, await answer.json(content_type=None)

    return asyncio.run(go())


def test_sads_are_bound_used_once_and_only_for_the_holder(service: Service) -> None:
    base = f"{service.base}/csc/v1"
    token = asyncio.run(_login(service.base, "dung.lh"))  # CAP-SG officer: PIN only
    digest = base64.b64encode(hashlib.sha256(b"CT08").digest()).decode()
    other = base64.b64encode(hashlib.sha256(b"CT08 sua").digest()).decode()
    credential = service.other_credential
    status, info = call(f"{base}/credentials/info", token, {"credentialID": credential})
    assert status == 200
    assert info["OTP"]["presence"] == "false"
    assert info["PIN"]["presence"] == "true"
    # someone else's credential is not theirs to use
    status, refused = call(
        f"{base}/credentials/authorize",
        token,
        {
            "credentialID": service.officer_credential,
            "numSignatures": 1,
            "hash": [digest],
            "PIN": DEMO_PIN,
        },
    )
    assert (status, refused["error"]) == (400, "invalid_request")
    status, wrong_pin = call(
        f"{base}/credentials/authorize",
        token,
        {"credentialID": credential, "numSignatures": 1, "hash": [digest], "PIN": "592817"},
    )
    assert status == 400
    assert "592817" not in json.dumps(wrong_pin)
    status, granted = call(
        f"{base}/credentials/authorize",
        token,
        {"credentialID": credential, "numSignatures": 1, "hash": [digest], "PIN": DEMO_PIN},
    )
    assert status == 200, granted
    assert granted["expiresIn"] == 300
    sign = {
        "credentialID": credential,
        "SAD": granted["SAD"],
        "hashAlgo": "2.16.840.1.101.3.4.2.1",
        "signAlgo": "1.2.840.10045.4.3.2",
    }
    status, _ = call(f"{base}/signatures/signHash", token, sign | {"hash": [other]})
    assert status == 400  # the SAD is pinned to the other hash
    status, signed = call(f"{base}/signatures/signHash", token, sign | {"hash": [digest]})
    assert status == 200, signed
    assert len(signed["signatures"]) == 1
    status, _ = call(f"{base}/signatures/signHash", token, sign | {"hash": [digest]})
    assert status == 400  # used up
    status, stamped = call(
        f"{base}/signatures/timestamp",
        token,
        {"hash": digest, "hashAlgo": "2.16.840.1.101.3.4.2.1", "nonce": "0a1b"},
    )
    assert status == 200, stamped
    assert base64.b64decode(stamped["timestamp"])[:1] == b"\x30"
    assert call(f"{base}/credentials/list", "not-a-token", {})[0] == 401

    # the CSC token (no second factor) opens the CSC API only, never the rest
    async def elsewhere() -> list[int]:
        async with aiohttp.ClientSession() as http:
            statuses = []
            for headers in (
                {"Authorization": f"Bearer {token}"},
                {"Cookie": f"kyso_session={token}"},
            ):
                async with http.get(f"{service.base}/api/v1/auth/me", headers=headers) as answer:
                    statuses.append(answer.status)
            return statuses

    assert asyncio.run(elsewhere()) == [401, 401]


async def _login(base: str, username: str) -> str:
    async with aiohttp.ClientSession() as http:
        return await login(http, base, username)


def test_a_service_client_seals_only_with_the_seal_bound_to_it(service: Service) -> None:
    base = f"{service.base}/csc/v1"
    engine = db.make_engine(service.settings.sqlalchemy_url)
    try:
        access = AccessStore(engine)
        client, secret = access.add_client(
            name="Hệ thống cư trú", scopes=frozenset({Scope.SEAL}), unit_id=None, actor=ADMIN
        )
        with BlockingSessionPool(service.settings.hsm_config()) as pool:
            activation = SignatureActivation(
                engine=engine,
                authority=make_authority(service.settings, engine, pool),
                access=access,
            )

            async def token() -> str:
                pair = base64.b64encode(f"{client.client_id}:{secret}".encode()).decode()
                async with (
                    aiohttp.ClientSession() as http,
                    http.post(
                        f"{service.base}/oauth/token",
                        data={"grant_type": "client_credentials"},
                        headers={"Authorization": f"Basic {pair}"},
                    ) as answer,
                ):
                    return str((await answer.json())["access_token"])

            bearer = asyncio.run(token())
            assert call(f"{base}/credentials/list", bearer, {})[1] == {"credentialIDs": []}
            activation.bind_client(int(service.seal), client.client_id, ADMIN)
    finally:
        engine.dispose()
    assert call(f"{base}/credentials/list", bearer, {})[1] == {"credentialIDs": [service.seal]}
    digest = base64.b64encode(hashlib.sha256(b"CT07 so 9").digest()).decode()
    ask = {"numSignatures": 1, "hash": [digest]}
    status, _ = call(
        f"{base}/credentials/authorize", bearer, ask | {"credentialID": service.officer_credential}
    )
    assert status == 400  # never an officer's key
    status, granted = call(
        f"{base}/credentials/authorize", bearer, ask | {"credentialID": service.seal}
    )
    assert status == 200, granted
    status, signed = call(
        f"{base}/signatures/signHash",
        bearer,
        {
            "credentialID": service.seal,
            "SAD": granted["SAD"],
            "hash": [digest],
            "signAlgo": "1.2.840.10045.4.3.2",
        },
    )
    assert status == 200, signed


def test_v2_field_names_sign_hashes_and_whole_documents(service: Service) -> None:
    base = f"{service.base}/csc/v2"
    officer = asyncio.run(_login(service.base, "anh.nv"))  # PIN + one-time code
    status, listed = call(
        f"{base}/credentials/list", officer, {"credentialInfo": True, "authInfo": True}
    )
    assert status == 200, listed
    assert listed["credentialIDs"] == [service.officer_credential]
    (described,) = listed["credentialInfos"]
    assert described["auth"]["expression"] == "PIN AND OTP"
    assert described["SCAL"] == "2"
    digest = base64.b64encode(hashlib.sha256(b"CT07 v2").digest()).decode()
    sha256 = "2.16.840.1.101.3.4.2.1"
    status, granted = call(
        f"{base}/credentials/authorize",
        officer,
        {
            "credentialID": service.officer_credential,
            "numSignatures": 1,
            "hashes": [digest],
            "hashAlgorithmOID": sha256,
            "authData": [
                {"id": "PIN", "value": DEMO_PIN},
                {"id": "OTP", "value": factors.totp_now(DEMO_TOTP_SECRETS["anh.nv"])},
            ],
        },
    )
    assert status == 200, granted
    status, signed = call(
        f"{base}/signatures/signHash",
        officer,
        {
            "credentialID": service.officer_credential,
            "SAD": granted["SAD"],
            "hashes": [digest],
            "hashAlgorithmOID": sha256,
            "signAlgo": "1.2.840.10045.4.3.2",
        },
    )
    assert status == 200, signed
    # signDoc: the SAD is bound to the SHA-256 of the PDF as sent; Kyso's signer makes B-LT
    other = asyncio.run(_login(service.base, "dung.lh"))  # PIN only
    pdf = one_page_pdf("CT07 v2 signDoc")
    document = base64.b64encode(hashlib.sha256(pdf).digest()).decode()
    status, granted = call(
        f"{base}/credentials/authorize",
        other,
        {
            "credentialID": service.other_credential,
            "numSignatures": 1,
            "hashes": [document],
            "authData": [{"id": "PIN", "value": DEMO_PIN}],
        },
    )
    assert status == 200, granted
    request = {
        "credentialID": service.other_credential,
        "SAD": granted["SAD"],
        "documents": [
            {"document": base64.b64encode(pdf).decode(), "conformance_level": "AdES-B-LT"}
        ],
    }
    tampered = request | {
        "documents": [
            {"document": base64.b64encode(pdf + b"\n").decode(), "conformance_level": "AdES-B-LT"}
        ]
    }
    assert call(f"{base}/signatures/signDoc", other, tampered)[0] == 400  # not what was authorised
    status, answer = call(f"{base}/signatures/signDoc", other, request)
    assert status == 200, answer
    (signed_pdf,) = answer["DocumentWithSignature"]
    engine = db.make_engine(service.settings.sqlalchemy_url)
    try:
        with BlockingSessionPool(service.settings.hsm_config()) as pool:
            policy = kyso_policy(make_authority(service.settings, engine, pool), require_ltv=True)
    finally:
        engine.dispose()
    result = verify_pdf(base64.b64decode(signed_pdf), policy)
    assert result.indication is Indication.TOTAL_PASSED, result
