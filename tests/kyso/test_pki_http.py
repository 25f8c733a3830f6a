"""The PKI inside the service, in process: the public CA, CRL, OCSP and TSA routes (open to
anyone) and the administration API (a signed-in system administrator here; without a
sign-in or with the wrong role it refuses), on SoftHSM and both databases.

What the routes serve is checked by the real ``openssl`` (chains, CRL signatures, OCSP
responses, timestamp tokens) and read back with asn1crypto; protocol errors must come back
in the protocol's own form with HTTP 400, and no request may ever get a 5xx.
"""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from asn1crypto import core, tsp
from asn1crypto import crl as asn1_crl
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from sqlalchemy import select

from audit.events import Action, Actor, AuditEvent
from audit.store import audit_entries
from hsm import BlockingSessionPool
from kyso import db
from kyso.access.model import Role
from kyso.app import create_app
from kyso.pki_service import make_authority
from kyso.settings import Settings
from pki import ocsp, tsa
from tests.conftest import TestToken
from tests.kyso.identities import as_system_admin, sign_in_as
from tests.pki.certs import TestCa, run_openssl

ADMIN = Actor(id="test:admin", role="system-admin")
REMOTE = ("203.0.113.9", 50000)
SYSTEM_ADMIN = "test-sysadmin"
"""The account :func:`as_system_admin` signs in, as audit events name it: ``user:<name>``."""
OFFICER_NAME = "Nguyễn Thị Ánh Tuyết"
COMMUNE_NAME = "Công an phường Bến Thành"
OCSP_RESPONSE = "application/ocsp-response"
DATA = "Giấy xác nhận thông tin về cư trú — Số: 123/XN".encode()


# -- set-up ------------------------------------------------------------------------------


@pytest.fixture
def settings(token: TestToken, tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        hsm_token_label=token.label,
        hsm_pin_file=token.pin_file,
        hsm_acquire_timeout=5,
        hsm_retry_interval=0,
        audit_sequence_interval=0.05,
        audit_checkpoint_interval=3600,
    )


@pytest.fixture
def hierarchy(settings: Settings) -> None:
    """Kyso's CA as ``kyso init`` makes it: root, issuing CA, OCSP responder, TSA, CRLs."""
    engine = db.make_engine(settings.sqlalchemy_url)
    try:
        db.upgrade(engine)
        with BlockingSessionPool(settings.hsm_config()) as pool:
            created = make_authority(settings, engine, pool).ensure_hierarchy(ADMIN)
        assert len(created) == 4
    finally:
        engine.dispose()


def _no_server_error(response: Any) -> None:
    """Every answer of these tests is a 2xx or a 4xx: a 5xx fails at the request itself."""
    if response.status_code >= 500:
        response.read()
        request = response.request
        raise AssertionError(
            f"{request.method} {request.url.path} -> {response.status_code}: {response.text}"
        )


@contextmanager
def started(settings: Settings, **options: Any) -> Iterator[TestClient]:
    """The app through its real lifespan, every response checked by :func:`_no_server_error`."""
    with TestClient(create_app(settings), **options) as client:
        client.event_hooks = {"response": [_no_server_error]}
        yield client


@pytest.fixture
def client(settings: Settings, hierarchy: None) -> Iterator[TestClient]:
    """The service, its caller signed in as a system administrator: these tests drive the
    administration API (units, people, credentials, the trust store)."""
    with started(settings) as running:
        yield as_system_admin(running)


# -- helpers -----------------------------------------------------------------------------


def openssl(directory: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return run_openssl(*args, cwd=directory)


def openssl_ok(directory: Path, *args: str | Path) -> str:
    """Run openssl, require success, return stdout and stderr together."""
    done = openssl(directory, *args)
    assert done.returncode == 0, f"openssl {' '.join(map(str, args))}: {done.stderr}"
    return done.stdout + done.stderr


def pem_armor(kind: str, der: bytes) -> bytes:
    body = base64.encodebytes(der).decode("ascii").replace("\n", "")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "\n".join([f"-----BEGIN {kind}-----", *lines, f"-----END {kind}-----", ""]).encode()


def fetch_ca(client: TestClient, directory: Path) -> dict[str, x509.Certificate]:
    """GET both CA certificates (DER), written as ``root.pem`` and ``issuing.pem``."""
    found = {}
    for name in ("root", "issuing"):
        response = client.get(f"/pki/ca/{name}.crt")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/pkix-cert"
        assert not response.content.startswith(b"-----"), "DER, not PEM"
        certificate = x509.load_der_x509_certificate(response.content)
        (directory / f"{name}.pem").write_bytes(
            certificate.public_bytes(serialization.Encoding.PEM)
        )
        found[name] = certificate
    return found


def fetch_crl(client: TestClient, name: str, directory: Path) -> asn1_crl.CertificateList:
    """GET a CRL (DER), parsed strictly and written as ``<name>.crl.pem`` for openssl."""
    response = client.get(f"/pki/crl/{name}.crl")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pkix-crl"
    (directory / f"{name}.crl.pem").write_bytes(pem_armor("X509 CRL", response.content))
    return asn1_crl.CertificateList.load(response.content, strict=True)


def revoked_entries(crl: asn1_crl.CertificateList) -> dict[int, str | None]:
    return {
        entry["user_certificate"].native: (
            None if entry.crl_reason_value is None else entry.crl_reason_value.native
        )
        for entry in crl["tbs_cert_list"]["revoked_certificates"]
    }


def ocsp_request(directory: Path, name: str, *args: str) -> bytes:
    """An OCSP request made by ``openssl ocsp`` into ``<name>``."""
    openssl_ok(directory, "ocsp", *args, "-reqout", name)
    return (directory / name).read_bytes()


def single_status(der: bytes) -> tuple[str, str | None]:
    """(good | revoked | unknown, revocation reason) of the one answer in a response."""
    response = asn1_ocsp.OCSPResponse.load(der)
    assert response["response_status"].native == "successful"
    (single,) = response.basic_ocsp_response["tbs_response_data"]["responses"]
    status = single["cert_status"]
    if status.name == "revoked":
        return "revoked", status.chosen["revocation_reason"].native
    return status.name, None


def post_ocsp(client: TestClient, body: bytes, **headers: str) -> Any:
    return client.post(
        "/pki/ocsp",
        content=body,
        headers={"content-type": "application/ocsp-request", **headers},
    )


def assert_malformed(response: Any) -> None:
    assert response.status_code == 400
    assert response.headers["content-type"] == OCSP_RESPONSE
    parsed = asn1_ocsp.OCSPResponse.load(response.content, strict=True)
    assert parsed["response_status"].native == "malformed_request"
    assert parsed["response_bytes"].native is None


def tsa_failure(der: bytes) -> set[str]:
    """The failInfo names of a rejected TimeStampResp (asn1crypto insists on a token in
    TimeStampResp, so the PKIStatusInfo is read on its own)."""
    status = tsp.PKIStatusInfo.load(core.Sequence.load(der, strict=True).contents)
    assert status["status"].native == "rejection"
    failure: set[str] = status["fail_info"].native
    return failure


def error_code(response: Any) -> str:
    code: str = response.json()["error"]["code"]
    return code


def add_commune(client: TestClient) -> int:
    """Ministry, province and commune over the API; returns the commune's id."""
    ministry = client.post(
        "/api/v1/units",
        json={
            "kind": "ministry",
            "code": "BCA",
            "name": "Bộ Công an",
            "province": "Hà Nội",
            "locality": "Hà Nội",
        },
    )
    assert ministry.status_code == 201, ministry.text
    province = client.post(
        "/api/v1/units",
        json={
            "kind": "province",
            "code": "CAT-HCM",
            "name": "Công an Thành phố Hồ Chí Minh",
            "province": "Thành phố Hồ Chí Minh",
            "locality": "Thành phố Hồ Chí Minh",
            "parent_id": ministry.json()["id"],
        },
    )
    assert province.status_code == 201, province.text
    commune = client.post(
        "/api/v1/units",
        json={
            "kind": "commune",
            "code": "CAP-BT",
            "name": COMMUNE_NAME,
            "province": "Thành phố Hồ Chí Minh",
            "locality": "Phường Bến Thành",
            "parent_id": province.json()["id"],
        },
    )
    assert commune.status_code == 201, commune.text
    body = commune.json()
    assert (body["kind"], body["name"], body["locality"]) == (
        "commune",
        COMMUNE_NAME,
        "Phường Bến Thành",
    )
    unit_id: int = body["id"]
    return unit_id


def person_body(unit_id: int, **overrides: object) -> dict[str, object]:
    return {
        "unit_id": unit_id,
        "full_name": OFFICER_NAME,
        "position": "Phó Trưởng Công an phường",
        "cccd": "079190001234",
        "email": "tuyet.nta@btn.hcm.gov.vn",
        **overrides,
    }


def add_person(client: TestClient, unit_id: int, **overrides: object) -> dict[str, Any]:
    response = client.post("/api/v1/people", json=person_body(unit_id, **overrides))
    assert response.status_code == 201, response.text
    person: dict[str, Any] = response.json()
    return person


def enrol_officer(client: TestClient, directory: Path) -> dict[str, Any]:
    """An officer enrolled over the API; their certificate written as ``leaf.pem``."""
    person = add_person(client, add_commune(client))
    enrolled = client.post(f"/api/v1/people/{person['id']}/enroll")
    assert enrolled.status_code == 201, enrolled.text
    credential: dict[str, Any] = enrolled.json()
    chain = client.get(f"/api/v1/credentials/{credential['id']}/certificate")
    leaf = x509.load_pem_x509_certificates(chain.content)[0]
    (directory / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    return credential


def sign_request(ca: TestCa, csr_pem: str, *, serial: int) -> x509.Certificate:
    """What an external ("government") CA returns for a request: the requested subject and
    extensions, certified for document signing (digitalSignature and nonRepudiation)."""
    request = x509.load_pem_x509_csr(csr_pem.encode("ascii"))
    assert request.is_signature_valid
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .issuer_name(ca.cert.subject)
        .subject_name(request.subject)
        .public_key(request.public_key())
        .serial_number(serial)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(request.public_key()), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), False
        )
    )
    for extension in request.extensions:
        builder = builder.add_extension(extension.value, critical=extension.critical)
    return builder.sign(ca.key, hashes.SHA256())


def to_pem(*certificates: x509.Certificate) -> str:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates).decode()


# -- the CA, its CRLs and OCSP, driven by the administration API ---------------------------


def test_status_changes_over_the_api_reach_ocsp_and_the_crl(client: TestClient, tmp_path: Path):
    ca = fetch_ca(client, tmp_path)
    assert ca["root"].issuer == ca["root"].subject
    assert ca["issuing"].issuer == ca["root"].subject
    assert "issuing.pem: OK" in openssl_ok(tmp_path, "verify", "-CAfile", "root.pem", "issuing.pem")
    for name in ("root", "issuing"):
        fetch_crl(client, name, tmp_path)
    assert "verify OK" in openssl_ok(
        tmp_path, "crl", "-in", "root.crl.pem", "-CAfile", "root.pem", "-noout"
    )

    # Units, an officer with a Vietnamese name, and the officer's credential.
    unit_id = add_commune(client)
    person = add_person(client, unit_id)
    assert person["full_name"] == OFFICER_NAME
    assert person["role"] == "officer"
    enrolled = client.post(f"/api/v1/people/{person['id']}/enroll")
    assert enrolled.status_code == 201, enrolled.text
    credential = enrolled.json()
    assert (credential["kind"], credential["status"], credential["external"]) == (
        "officer",
        "active",
        False,
    )
    assert OFFICER_NAME in credential["subject"]
    shown = client.get(f"/api/v1/people/{person['id']}").json()
    assert [c["id"] for c in shown["credentials"]] == [credential["id"]]
    assert client.get(f"/api/v1/credentials/{credential['id']}").json() == credential

    chain = client.get(f"/api/v1/credentials/{credential['id']}/certificate")
    assert chain.status_code == 200
    leaf, *issuers = x509.load_pem_x509_certificates(chain.content)
    assert issuers == [ca["issuing"], ca["root"]]
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == OFFICER_NAME
    assert format(leaf.serial_number, "x") == credential["serial"]
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    verify_leaf = ("verify", "-CAfile", "root.pem", "-untrusted", "issuing.pem")
    assert "leaf.pem: OK" in openssl_ok(tmp_path, *verify_leaf, "leaf.pem")

    def crl_check(name: str) -> subprocess.CompletedProcess[str]:
        """openssl verifies the leaf against the issuing CA's CRL ``name``."""
        return openssl(tmp_path, *verify_leaf, "-crl_check", "-CRLfile", name, "leaf.pem")

    crl = fetch_crl(client, "issuing", tmp_path)
    first_number = crl.crl_number_value.native
    assert revoked_entries(crl) == {}
    assert "verify OK" in openssl_ok(
        tmp_path, "crl", "-in", "issuing.crl.pem", "-CAfile", "issuing.pem", "-noout"
    )
    assert crl_check("issuing.crl.pem").returncode == 0

    # OCSP: one request with a nonce (never cached), one without (cached until a change).
    target = ("-issuer", "issuing.pem", "-cert", "leaf.pem")
    with_nonce = ocsp_request(tmp_path, "nonce.req", *target)
    plain = ocsp_request(tmp_path, "plain.req", *target, "-no_nonce")

    def status_of(request: bytes) -> tuple[str, str | None]:
        response = post_ocsp(client, request)
        assert response.status_code == 200
        assert response.headers["content-type"] == OCSP_RESPONSE
        (tmp_path / "resp.der").write_bytes(response.content)
        # openssl checks the responder's signature and authorisation up to the root.
        shown = openssl_ok(
            tmp_path, "ocsp", "-respin", "resp.der", *target, "-CAfile", "root.pem",
            "-verify_other", "issuing.pem", "-no_nonce",
        )  # fmt: skip
        assert "Response verify OK" in shown
        found = single_status(response.content)
        assert f"leaf.pem: {found[0]}" in shown
        return found

    assert status_of(with_nonce) == ("good", None)
    # -reqin: openssl also checks that the nonce came back.
    nonce_check = openssl_ok(
        tmp_path, "ocsp", "-reqin", "nonce.req", "-respin", "resp.der", "-CAfile", "root.pem",
        "-verify_other", "issuing.pem",
    )  # fmt: skip
    assert "Response verify OK" in nonce_check
    assert "WARNING" not in nonce_check
    first = post_ocsp(client, plain).content
    assert single_status(first) == ("good", None)
    assert post_ocsp(client, plain).content == first, "a no-nonce response is served from cache"

    # Suspension: certificateHold at once, in OCSP (cache or not) and in a new CRL.
    suspended = client.post(f"/api/v1/credentials/{credential['id']}/suspend")
    assert suspended.status_code == 200, suspended.text
    assert suspended.json()["status"] == "suspended"
    assert status_of(plain) == ("revoked", "certificate_hold"), "stale cached OCSP response"
    assert status_of(with_nonce) == ("revoked", "certificate_hold")
    crl = fetch_crl(client, "issuing", tmp_path)
    held_number = crl.crl_number_value.native
    assert held_number > first_number
    assert revoked_entries(crl) == {leaf.serial_number: "certificate_hold"}
    held = crl_check("issuing.crl.pem")
    assert held.returncode != 0
    assert "certificate revoked" in held.stdout + held.stderr

    # Resumption: good again, and off the next CRL.
    resumed = client.post(f"/api/v1/credentials/{credential['id']}/resume")
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["status"] == "active"
    assert status_of(plain) == ("good", None)
    crl = fetch_crl(client, "issuing", tmp_path)
    resumed_number = crl.crl_number_value.native
    assert resumed_number > held_number
    assert revoked_entries(crl) == {}
    assert crl_check("issuing.crl.pem").returncode == 0

    # Revocation for good; the GET form of OCSP (RFC 6960 appendix A) agrees.
    revoked = client.post(
        f"/api/v1/credentials/{credential['id']}/revoke", json={"reason": "key_compromise"}
    )
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["status"] == "revoked"
    assert status_of(plain) == ("revoked", "key_compromise")
    for encoded in (
        quote(base64.b64encode(plain).decode("ascii"), safe=""),
        base64.urlsafe_b64encode(plain).decode("ascii").rstrip("="),
    ):
        by_get = client.get(f"/pki/ocsp/{encoded}")
        assert by_get.status_code == 200
        assert by_get.headers["content-type"] == OCSP_RESPONSE
        assert single_status(by_get.content) == ("revoked", "key_compromise")
    crl = fetch_crl(client, "issuing", tmp_path)
    assert crl.crl_number_value.native > resumed_number
    assert revoked_entries(crl) == {leaf.serial_number: "key_compromise"}
    assert "verify OK" in openssl_ok(
        tmp_path, "crl", "-in", "issuing.crl.pem", "-CAfile", "issuing.pem", "-noout"
    )
    assert crl_check("issuing.crl.pem").returncode != 0

    # Changes that make no sense now are conflicts, and change nothing.
    again = client.post(f"/api/v1/credentials/{credential['id']}/revoke", json={})
    assert again.status_code == 409
    assert error_code(again) == "pki.conflict"
    for change in ("suspend", "resume"):
        refused = client.post(f"/api/v1/credentials/{credential['id']}/{change}")
        assert refused.status_code == 409
        assert error_code(refused) == "pki.conflict"
    assert fetch_crl(client, "issuing", tmp_path).crl_number_value.native == (
        crl.crl_number_value.native
    )

    # Bad input and unknown ids: a clear code, never a 500.
    bad_cccd = client.post("/api/v1/people", json=person_body(unit_id, cccd="999190001234"))
    assert bad_cccd.status_code == 422
    assert error_code(bad_cccd) == "pki.invalid_cccd"
    letters = client.post("/api/v1/people", json=person_body(unit_id, cccd="07919000123X"))
    assert letters.status_code == 422
    assert error_code(letters) == "pki.invalid_cccd"
    for method, path in (
        ("GET", "/api/v1/people/999999"),
        ("POST", "/api/v1/people/999999/enroll"),
        ("GET", "/api/v1/credentials/999999"),
        ("POST", "/api/v1/credentials/999999/suspend"),
    ):
        missing = client.request(method, path)
        assert missing.status_code == 404, (method, path)
        assert error_code(missing) == "pki.not_found"
    # Ids beyond a 64-bit column are refused by validation, not by the database (a 500).
    huge = 2**64
    for method, path, body in (
        ("GET", f"/api/v1/people?unit_id={huge}", None),
        ("GET", f"/api/v1/credentials/{huge}", None),
        ("POST", "/api/v1/people", person_body(huge, cccd="079190005678")),
        ("POST", "/api/v1/units", {"kind": "commune", "code": "CAP-X", "name": "Phường X",
                                   "province": "Hà Nội", "locality": "X", "parent_id": huge}),
    ):  # fmt: skip
        assert client.request(method, path, json=body).status_code == 422, (method, path)
    assert client.get("/api/v1/people").json() == [person]


# -- protocol errors and the timestamp authority ---------------------------------------------


def test_ocsp_and_tsa_answer_bad_requests_in_their_own_protocol(
    settings: Settings, client: TestClient, tmp_path: Path
):
    fetch_ca(client, tmp_path)
    credential = enrol_officer(client, tmp_path)
    good = ocsp_request(tmp_path, "req.der", "-issuer", "issuing.pem", "-cert", "leaf.pem")
    assert single_status(post_ocsp(client, good).content) == ("good", None)
    # The delegated responder answers for the issuing CA's certificates only (RFC 6960
    # §4.2.2.2): the issuing CA's own certificate, from the root, is unknown to it.
    root_issued = ocsp_request(
        tmp_path, "root-issued.der", "-issuer", "root.pem", "-cert", "issuing.pem"
    )
    assert single_status(post_ocsp(client, root_issued).content) == ("unknown", None)

    oversize = good + b"\x00" * ocsp.MAX_REQUEST_BYTES
    for body, headers in (
        (b"garbage, not DER", {}),
        (b"", {}),
        (good[:-1], {}),
        (good + b"\x00", {}),
        (oversize, {}),
        # A declared length above the cap is refused before the body is read.
        (good, {"content-length": str(ocsp.MAX_REQUEST_BYTES + 1)}),
        (good, {"content-length": "-1"}),
    ):
        assert_malformed(post_ocsp(client, body, **headers))
    # Without a Content-Length (chunked), the cap applies while the body streams in.
    chunks = iter([good, b"\x00" * ocsp.MAX_REQUEST_BYTES])
    assert_malformed(client.post("/pki/ocsp", content=chunks))
    for path in ("!!!not-base64!!!", "", "AAAA", "A" * (ocsp.MAX_GET_PATH_CHARS + 4)):
        assert_malformed(client.get(f"/pki/ocsp/{path}"))

    # TSA: a query made by openssl, verified by openssl with the chain from /pki/ca.
    (tmp_path / "data.txt").write_bytes(DATA)
    openssl_ok(tmp_path, "ts", "-query", "-data", "data.txt", "-sha256", "-cert", "-out", "req.tsq")
    query = (tmp_path / "req.tsq").read_bytes()
    stamped = client.post(
        "/tsa", content=query, headers={"content-type": "application/timestamp-query"}
    )
    assert stamped.status_code == 200
    assert stamped.headers["content-type"] == "application/timestamp-reply"
    (tmp_path / "resp.tsr").write_bytes(stamped.content)
    verify = ("ts", "-verify", "-in", "resp.tsr", "-CAfile", "root.pem", "-untrusted")
    assert "Verification: OK" in openssl_ok(
        tmp_path, *verify, "issuing.pem", "-queryfile", "req.tsq"
    )
    assert "Verification: OK" in openssl_ok(tmp_path, *verify, "issuing.pem", "-data", "data.txt")
    (tmp_path / "other.txt").write_bytes(DATA + b".")
    forged = openssl(tmp_path, *verify, "issuing.pem", "-data", "other.txt")
    assert "Verification: FAILED" in forged.stdout + forged.stderr
    response = tsp.TimeStampResp.load(stamped.content)
    assert response["status"]["status"].native == "granted"
    # A second stamp gets a new serial.
    again = tsp.TimeStampResp.load(client.post("/tsa", content=query).content)
    serials = {
        r["time_stamp_token"]["content"]["encap_content_info"]["content"]
        .parsed["serial_number"]
        .native
        for r in (response, again)
    }
    assert len(serials) == 2

    openssl_ok(tmp_path, "ts", "-query", "-data", "data.txt", "-sha1", "-out", "sha1.tsq")
    sha1 = client.post("/tsa", content=(tmp_path / "sha1.tsq").read_bytes())
    assert sha1.status_code == 400
    assert sha1.headers["content-type"] == "application/timestamp-reply"
    assert tsa_failure(sha1.content) == {"bad_alg"}
    for body, headers in (
        (b"garbage, not DER", {}),
        (b"", {}),
        (query + b"\x00" * tsa.MAX_REQUEST_BYTES, {}),
        (query, {"content-length": str(tsa.MAX_REQUEST_BYTES + 1)}),
    ):
        rejected = client.post("/tsa", content=body, headers=headers)
        assert rejected.status_code == 400
        assert rejected.headers["content-type"] == "application/timestamp-reply"
        assert tsa_failure(rejected.content) == {"bad_data_format"}

    # From another machine and not signed in: the administration API answers 401, the
    # public services answer as before.
    unit_id = client.get(f"/api/v1/people/{credential['person_id']}").json()["unit_id"]
    with started(settings, client=REMOTE) as remote:
        for method, path, body in (
            ("GET", "/api/v1/units", None),
            ("POST", "/api/v1/units", {"kind": "ministry", "code": "X", "name": "X",
                                       "province": "Hà Nội", "locality": "Hà Nội"}),
            ("GET", "/api/v1/people/1", None),
            ("POST", f"/api/v1/credentials/{credential['id']}/revoke", {}),
            ("POST", "/api/v1/pki/crl/issuing", None),
            ("GET", "/api/v1/pki/trust", None),
        ):  # fmt: skip
            refused = remote.request(method, path, json=body)
            assert refused.status_code == 401, (method, path)
            assert error_code(refused) == "access.invalid_token"
        root = remote.get("/pki/ca/root.crt")
        assert root.status_code == 200
        assert x509.load_der_x509_certificate(root.content).subject == (
            x509.load_pem_x509_certificate((tmp_path / "root.pem").read_bytes()).subject
        )
        assert remote.get("/pki/crl/issuing.crl").status_code == 200
        assert single_status(post_ocsp(remote, good).content) == ("good", None)
        encoded = base64.urlsafe_b64encode(good).decode("ascii")
        assert single_status(remote.get(f"/pki/ocsp/{encoded}").content) == ("good", None)
        assert remote.post("/tsa", content=query).status_code == 200
        assert_malformed(post_ocsp(remote, b"garbage"))

        # Signed in as the officer the credential belongs to: what only administrators may
        # do is refused (403), their own credential's revocation included.
        sign_in_as(remote, Role.OFFICER, unit_id=unit_id, person_id=credential["person_id"])
        for method, path, body in (
            ("GET", "/api/v1/units", None),
            ("POST", "/api/v1/units", {"kind": "commune", "code": "X", "name": "X",
                                       "province": "Hà Nội", "locality": "Hà Nội",
                                       "parent_id": unit_id}),
            ("POST", f"/api/v1/people/{credential['person_id']}/enroll", None),
            ("POST", f"/api/v1/credentials/{credential['id']}/revoke", {}),
            ("POST", "/api/v1/pki/crl/issuing", None),
            ("GET", "/api/v1/pki/trust", None),
        ):  # fmt: skip
            refused = remote.request(method, path, json=body)
            assert refused.status_code == 403, (method, path)
            assert error_code(refused) == "access.forbidden"
    # Nothing the remote client asked for was done.
    assert [u["code"] for u in client.get("/api/v1/units").json()] == ["BCA", "CAT-HCM", "CAP-BT"]
    shown = client.get(f"/api/v1/people/{credential['person_id']}").json()
    assert [(c["id"], c["status"]) for c in shown["credentials"]] == [(credential["id"], "active")]


# -- an external CA's certificate, imported over the API -------------------------------------


def test_external_ca_enrolment_over_the_api(client: TestClient, tmp_path: Path):
    unit_id = add_commune(client)
    person = add_person(client, unit_id)
    requested = client.post(f"/api/v1/people/{person['id']}/csr")
    assert requested.status_code == 201, requested.text
    pending = requested.json()
    assert (pending["status"], pending["external"], pending["serial"]) == ("pending", True, None)
    request = x509.load_pem_x509_csr(pending["csr_pem"].encode("ascii"))
    assert request.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == OFFICER_NAME
    again = client.get(f"/api/v1/credentials/{pending['id']}/csr")
    assert again.status_code == 200
    assert x509.load_pem_x509_csr(again.json()["csr_pem"].encode()).public_key() == (
        request.public_key()
    )
    no_certificate = client.get(f"/api/v1/credentials/{pending['id']}/certificate")
    assert no_certificate.status_code == 404

    government = TestCa.create("Cơ quan chứng thực số chuyên dùng Chính phủ")
    certificate = sign_request(government, pending["csr_pem"], serial=0x4B59_534F)
    import_path = f"/api/v1/credentials/{pending['id']}/certificate"

    # Not trusted yet: refused, and the credential stays pending.
    untrusted = client.post(import_path, json={"pem": to_pem(certificate, government.cert)})
    assert untrusted.status_code == 422
    assert error_code(untrusted) == "pki.untrusted"
    assert client.get(f"/api/v1/credentials/{pending['id']}").json()["status"] == "pending"

    added = client.post(
        "/api/v1/pki/trust", json={"pem": to_pem(government.cert), "name": "gov-root"}
    )
    assert added.status_code == 201, added.text
    assert added.json()["anchor"] is True
    assert "Cơ quan chứng thực số chuyên dùng Chính phủ" in added.json()["subject"]
    duplicate = client.post(
        "/api/v1/pki/trust", json={"pem": to_pem(government.cert), "name": "gov-root-2"}
    )
    assert duplicate.status_code == 409
    trusted = client.get("/api/v1/pki/trust").json()
    assert len([e for e in trusted if e["anchor"]]) == 2, "Kyso's root and the new anchor"
    # The trust store is files; the change is audited all the same, once.
    with client.app.state.runtime.engine.connect() as connection:  # type: ignore[attr-defined]
        leaves = connection.execute(select(audit_entries.c.leaf)).scalars().all()
    changes = [
        event
        for event in map(AuditEvent.from_leaf, map(bytes, leaves))
        if event.action is Action.CONFIGURATION_CHANGED
        and event.details.get("change") == "trust.anchor_added"
    ]
    assert [c.details["fingerprint"] for c in changes] == [added.json()["fingerprint"]]
    assert [(c.actor.id, c.actor.role) for c in changes] == [
        (f"user:{SYSTEM_ADMIN}", Role.SYSTEM_ADMIN.value)
    ], "the signed-in administrator made the change"

    # Signed by a CA nobody trusts, with the right key: still refused.
    stranger = TestCa.create("CA không được tin cậy")
    forged = sign_request(stranger, pending["csr_pem"], serial=77)
    refused = client.post(import_path, json={"pem": to_pem(forged, stranger.cert)})
    assert refused.status_code == 422
    assert error_code(refused) == "pki.untrusted"

    imported = client.post(import_path, json={"pem": to_pem(certificate, government.cert)})
    assert imported.status_code == 200, imported.text
    active = imported.json()
    assert (active["id"], active["status"], active["external"]) == (pending["id"], "active", True)
    assert active["serial"] == format(certificate.serial_number, "x")
    assert OFFICER_NAME in active["subject"]
    chain = x509.load_pem_x509_certificates(client.get(import_path).content)
    assert chain == [certificate, government.cert]
    twice = client.post(import_path, json={"pem": to_pem(certificate, government.cert)})
    assert twice.status_code == 409
    assert error_code(twice) == "pki.conflict"
    shown = client.get(f"/api/v1/people/{person['id']}").json()
    assert [(c["id"], c["status"]) for c in shown["credentials"]] == [(pending["id"], "active")]
