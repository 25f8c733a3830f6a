"""The OCSP responder core, checked by the real ``openssl ocsp`` and by ``cryptography``.

Requests come from ``openssl ocsp -reqout`` (or are built with asn1crypto when openssl
cannot produce the malformed shape); responses are signed with SoftHSM keys.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import pytest
from asn1crypto import ocsp as asn1_ocsp
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509 import ocsp

from hsm import BlockingSessionPool, KeySpec
from pki.errors import InvalidInputError
from pki.ocsp import (
    GOOD,
    MAX_CERT_IDS,
    MAX_GET_PATH_CHARS,
    MAX_NONCE_BYTES,
    MAX_REQUEST_BYTES,
    UNKNOWN,
    CertState,
    CertStatus,
    OcspResponder,
    internal_error_response,
    malformed_request_response,
    parse_get_path,
)
from pki.signing import HsmX509Signer
from tests.pki.certs import TestCa, hsm_public_key, run_openssl, write_key, write_pem

REVOKED_AT = datetime(2025, 3, 1, 8, 30, 15, 123456, tzinfo=UTC)
REVOKED = CertStatus(state=CertState.REVOKED, revoked_at=REVOKED_AT, reason="key_compromise")
STATUSES = {10: GOOD, 11: REVOKED}
"""Serial 12 is issued by the CA, but the lookup does not know it."""


@dataclass
class Responder:
    responder: OcspResponder
    ca: TestCa
    dir: Path
    calls: list[tuple[x509.Certificate, int]] = field(default_factory=list)

    def request(self, *args: str) -> bytes:
        """A request made by ``openssl ocsp`` with ``args``."""
        done = run_openssl("ocsp", *args, "-reqout", "req.der", cwd=self.dir)
        assert done.returncode == 0, done.stderr
        return (self.dir / "req.der").read_bytes()

    def respond(self, request: bytes) -> Path:
        result = self.responder.respond(request)
        assert result.status == "successful"
        path = self.dir / "resp.der"
        path.write_bytes(result.der)
        return path


@pytest.fixture
def key_spec() -> KeySpec:
    return KeySpec.EC_P256


@pytest.fixture
def setup(pool: BlockingSessionPool, tmp_path: Path, key_spec: KeySpec) -> Responder:
    ca = TestCa.create()
    key = pool.generate_key(key_spec, label="ocsp responder")
    responder_cert = ca.issue(
        hsm_public_key(key), common_name="OCSP Công an tỉnh", purpose="ocsp", serial=2
    )
    write_pem(tmp_path / "ca.pem", ca.cert)
    write_pem(tmp_path / "responder.pem", responder_cert)
    for serial, name in ((10, "good"), (11, "revoked"), (12, "unknown")):
        leaf_key, leaf = ca.issue_leaf(serial=serial)
        write_pem(tmp_path / f"{name}.pem", leaf)
        write_key(tmp_path / f"{name}.key", leaf_key)
    foreign = TestCa.create("CA nước ngoài")
    write_pem(tmp_path / "foreign-ca.pem", foreign.cert)
    write_pem(tmp_path / "foreign.pem", foreign.issue_leaf(serial=10)[1])

    calls: list[tuple[x509.Certificate, int]] = []

    def lookup(issuer: x509.Certificate, serial: int) -> CertStatus:
        calls.append((issuer, serial))
        return STATUSES.get(serial, UNKNOWN)

    responder = OcspResponder(
        signer=HsmX509Signer(pool, key),
        responder_cert=responder_cert,
        issuers=[ca.cert],
        lookup=lookup,
    )
    return Responder(responder=responder, ca=ca, dir=tmp_path, calls=calls)


BOTH_KEYS = pytest.mark.parametrize(
    "key_spec", [KeySpec.EC_P256, KeySpec.RSA_2048], ids=lambda spec: spec.value
)
THREE_CERTS = (
    *("-issuer", "ca.pem"),
    *("-cert", "good.pem", "-cert", "revoked.pem", "-cert", "unknown.pem"),
)


@BOTH_KEYS
def test_statuses_verified_by_openssl(setup: Responder) -> None:
    request = setup.request(*THREE_CERTS)
    result = setup.responder.respond(request)
    assert result.status == "successful"
    assert result.serials == (10, 11, 12)
    assert result.cache_until is None, "a response bound to a nonce is not reusable"
    assert [serial for _, serial in setup.calls] == [10, 11, 12]
    assert all(issuer == setup.ca.cert for issuer, _ in setup.calls)
    (setup.dir / "resp.der").write_bytes(result.der)

    # -reqin: openssl checks the signature, the responder's authorisation and the nonce.
    done = run_openssl(
        "ocsp", "-reqin", "req.der", "-respin", "resp.der", "-CAfile", "ca.pem", cwd=setup.dir
    )
    assert done.returncode == 0, done.stderr
    assert "Response verify OK" in done.stderr
    assert "WARNING" not in done.stderr
    assert "Nonce Verify error" not in done.stderr

    done = run_openssl(
        "ocsp", "-respin", "resp.der", *THREE_CERTS, "-CAfile", "ca.pem", "-no_nonce",
        cwd=setup.dir,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Response verify OK" in done.stderr
    assert "good.pem: good" in done.stdout
    assert "revoked.pem: revoked" in done.stdout
    assert "Reason: keyCompromise" in done.stdout
    assert "Revocation Time: Mar  1 08:30:15 2025 GMT" in done.stdout
    assert "unknown.pem: unknown" in done.stdout


def test_sha256_cert_id_without_nonce(setup: Responder) -> None:
    request = setup.request("-sha256", "-issuer", "ca.pem", "-cert", "good.pem", "-no_nonce")
    now = datetime.now(UTC)
    result = setup.responder.respond(request, now=now)
    assert result.cache_until == now.replace(microsecond=0) + timedelta(hours=1)
    (setup.dir / "resp.der").write_bytes(result.der)
    done = run_openssl(
        "ocsp", "-respin", "resp.der", "-sha256", "-issuer", "ca.pem", "-cert", "good.pem",
        "-CAfile", "ca.pem", "-no_nonce", cwd=setup.dir,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "good.pem: good" in done.stdout
    response = ocsp.load_der_ocsp_response(result.der)
    assert isinstance(response.hash_algorithm, hashes.SHA256)
    assert not list(response.extensions)


@BOTH_KEYS
def test_cryptography_reads_and_verifies(setup: Responder) -> None:
    request = setup.request(*THREE_CERTS)
    result = setup.responder.respond(request)
    response = ocsp.load_der_ocsp_response(result.der)
    assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    responder_cert = setup.responder.responder_cert
    assert response.certificates == [responder_cert]
    assert response.responder_key_hash == setup.responder.signer.key_id
    assert response.responder_name is None
    public = responder_cert.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        public.verify(response.signature, response.tbs_response_bytes, ec.ECDSA(hashes.SHA256()))
    else:
        assert isinstance(public, rsa.RSAPublicKey)
        public.verify(
            response.signature, response.tbs_response_bytes, padding.PKCS1v15(), hashes.SHA256()
        )
    singles = list(response.responses)
    assert [single.serial_number for single in singles] == [10, 11, 12]
    assert [single.certificate_status for single in singles] == [
        ocsp.OCSPCertStatus.GOOD,
        ocsp.OCSPCertStatus.REVOKED,
        ocsp.OCSPCertStatus.UNKNOWN,
    ]
    assert singles[1].revocation_reason is x509.ReasonFlags.key_compromise
    assert singles[1].revocation_time_utc == REVOKED_AT.replace(microsecond=0)
    for single in singles:
        assert single.next_update_utc == single.this_update_utc + timedelta(hours=1)
    echoed = response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
    assert echoed == asn1_ocsp.OCSPRequest.load(request).nonce_value.native


def test_without_responder_certificate(setup: Responder) -> None:
    responder = replace(setup.responder, include_certs=False)
    request = setup.request("-issuer", "ca.pem", "-cert", "good.pem")
    response = ocsp.load_der_ocsp_response(responder.respond(request).der)
    assert response.certificates == []
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD


def test_tampered_response_rejected_by_openssl(setup: Responder) -> None:
    request = setup.request("-issuer", "ca.pem", "-cert", "good.pem")
    der = setup.responder.respond(request).der
    # The first serial in the response is the CertID's: claim that serial 13 is good.
    tampered = der.replace(b"\x02\x01\x0a", b"\x02\x01\x0d", 1)
    assert tampered != der
    (setup.dir / "resp.der").write_bytes(tampered)
    done = run_openssl(
        "ocsp", "-reqin", "req.der", "-respin", "resp.der", "-CAfile", "ca.pem", cwd=setup.dir
    )
    assert done.returncode != 0
    assert "Response Verify Failure" in done.stderr


def test_foreign_issuer_and_impossible_serials_are_unknown(setup: Responder) -> None:
    request = setup.request(
        "-issuer", "foreign-ca.pem", "-cert", "foreign.pem",
        "-issuer", "ca.pem", "-serial", "0", "-serial", "0x" + "ff" * 21,
    )  # fmt: skip
    response = ocsp.load_der_ocsp_response(setup.responder.respond(request).der)
    statuses = [single.certificate_status for single in response.responses]
    assert statuses == [ocsp.OCSPCertStatus.UNKNOWN] * 3
    assert setup.calls == [], "no lookup for a foreign issuer or an impossible serial"


def test_unsupported_cert_id_hash_is_unknown(setup: Responder) -> None:
    request = setup.request("-sha384", "-issuer", "ca.pem", "-cert", "good.pem")
    response = ocsp.load_der_ocsp_response(setup.responder.respond(request).der)
    assert [s.certificate_status for s in response.responses] == [ocsp.OCSPCertStatus.UNKNOWN]


def test_signed_request_accepted(setup: Responder) -> None:
    request = setup.request(
        "-issuer", "ca.pem", "-cert", "revoked.pem", "-signer", "good.pem", "-signkey", "good.key"
    )
    assert asn1_ocsp.OCSPRequest.load(request)["optional_signature"].native is not None
    setup.respond(request)
    done = run_openssl(
        "ocsp", "-reqin", "req.der", "-respin", "resp.der", "-CAfile", "ca.pem", "-resp_text",
        cwd=setup.dir,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Cert Status: revoked" in done.stdout


def _rebuild(
    request: bytes,
    *,
    copies: int = 1,
    version: int = 0,
    extensions: list[dict[str, object]] | None = None,
) -> bytes:
    """``request`` with its CertIDs repeated ``copies`` times and other extensions."""
    singles = asn1_ocsp.OCSPRequest.load(request)["tbs_request"]["request_list"]
    body: dict[str, object] = {
        "version": version,
        "request_list": [{"req_cert": single["req_cert"]} for single in singles] * copies,
    }
    if extensions is not None:
        body["request_extensions"] = extensions
    der: bytes = asn1_ocsp.OCSPRequest({"tbs_request": body}).dump()
    return der


def _nonce(size: int) -> dict[str, object]:
    return {"extn_id": "nonce", "extn_value": b"n" * size}


def _integer_nonce(request: bytes) -> bytes:
    # asn1crypto refuses to build a nonce that is not an OCTET STRING: build an unknown
    # extension holding an INTEGER, then give it the nonce's OID (same encoded length).
    unknown = _rebuild(
        request, extensions=[{"extn_id": "1.3.6.1.5.5.7.48.1.99", "extn_value": b"\x02\x01\x01"}]
    )
    nonce_oid = bytes.fromhex("06092b0601050507300102")
    mangled = unknown.replace(nonce_oid[:-1] + b"\x63", nonce_oid, 1)
    assert mangled != unknown
    return mangled


CRITICAL_UNKNOWN = {"extn_id": "1.2.3.4", "critical": True, "extn_value": b"\x05\x00"}

Mangle = Callable[[bytes], bytes]

MALFORMED: list[tuple[str, Mangle, str]] = [
    ("empty", lambda req: b"", "empty request"),
    ("garbage", lambda req: b"GET / HTTP/1.1\r\n", "undecodable"),
    ("truncated", lambda req: req[:-5], "undecodable"),
    ("trailing data", lambda req: req + b"\x00", "undecodable"),
    ("oversize", lambda req: req + b"\x00" * MAX_REQUEST_BYTES, "bytes"),
    ("a response", lambda req: malformed_request_response(), "undecodable"),
    ("no CertID", lambda req: _rebuild(req, copies=0), "0 CertIDs"),
    ("11 CertIDs", lambda req: _rebuild(req, copies=MAX_CERT_IDS + 1), "11 CertIDs"),
    ("version 2", lambda req: _rebuild(req, version=1), "version"),
    ("1000-byte nonce", lambda req: _rebuild(req, extensions=[_nonce(1000)]), "nonce of 1000"),
    ("33-byte nonce", lambda req: _rebuild(req, extensions=[_nonce(33)]), "nonce of 33"),
    ("empty nonce", lambda req: _rebuild(req, extensions=[_nonce(0)]), "nonce of 0"),
    ("two nonces", lambda req: _rebuild(req, extensions=[_nonce(8)] * 2), "repeated"),
    ("INTEGER nonce", _integer_nonce, "undecodable"),
    ("critical extension", lambda req: _rebuild(req, extensions=[CRITICAL_UNKNOWN]), "critical"),
]


@pytest.mark.parametrize(
    ("mangle", "reason"), [case[1:] for case in MALFORMED], ids=[case[0] for case in MALFORMED]
)
def test_malformed_request(
    setup: Responder, mangle: Mangle, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    request = mangle(setup.request("-issuer", "ca.pem", "-serial", "10"))
    with caplog.at_level(logging.INFO, logger="pki.ocsp"):
        result = setup.responder.respond(request)
    assert result.status == "malformed_request"
    assert reason in caplog.text
    assert result.cache_until is None
    parsed = asn1_ocsp.OCSPResponse.load(result.der)
    assert parsed["response_status"].native == "malformed_request"
    assert parsed["response_bytes"].native is None
    response = ocsp.load_der_ocsp_response(result.der)
    assert response.response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST
    assert setup.calls == []


@pytest.mark.parametrize(
    "extensions",
    [
        [_nonce(1)],
        [_nonce(MAX_NONCE_BYTES)],
        [{**CRITICAL_UNKNOWN, "critical": False}],
    ],
    ids=["1-byte nonce", "32-byte nonce", "unknown non-critical extension"],
)
def test_acceptable_extensions(setup: Responder, extensions: list[dict[str, object]]) -> None:
    request = _rebuild(setup.request("-issuer", "ca.pem", "-serial", "10"), extensions=extensions)
    result = setup.responder.respond(request)
    assert result.status == "successful"
    response = ocsp.load_der_ocsp_response(result.der)
    nonces = [ext for ext in extensions if ext["extn_id"] == "nonce"]
    if nonces:
        echoed = response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce
        assert echoed == nonces[0]["extn_value"]
    else:
        assert not list(response.extensions)


def test_ber_request_gets_der_response(setup: Responder) -> None:
    cert_id = asn1_ocsp.OCSPRequest.load(setup.request("-issuer", "ca.pem", "-serial", "10"))[
        "tbs_request"
    ]["request_list"][0]["req_cert"]
    # BER, not DER: the issuerNameHash length in long form.
    body = cert_id.dump()[2:].replace(b"\x04\x14", b"\x04\x81\x14", 1)
    ber = asn1_ocsp.CertId.load(bytes([0x30, len(body)]) + body)
    request = asn1_ocsp.OCSPRequest({"tbs_request": {"request_list": [{"req_cert": ber}]}}).dump()
    assert b"\x04\x81\x14" in request
    # cryptography's parser accepts DER only.
    response = ocsp.load_der_ocsp_response(setup.responder.respond(request).der)
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD


def test_ten_cert_ids_answered(setup: Responder) -> None:
    request = _rebuild(setup.request("-issuer", "ca.pem", "-serial", "11"), copies=MAX_CERT_IDS)
    response = ocsp.load_der_ocsp_response(setup.responder.respond(request).der)
    assert [s.certificate_status for s in response.responses] == [
        ocsp.OCSPCertStatus.REVOKED
    ] * MAX_CERT_IDS


def test_failing_lookup_gives_internal_error(
    setup: Responder, caplog: pytest.LogCaptureFixture
) -> None:
    request = setup.request("-issuer", "ca.pem", "-cert", "good.pem")

    def broken(issuer: x509.Certificate, serial: int) -> CertStatus:
        raise RuntimeError("database is down")

    responder = OcspResponder(
        signer=setup.responder.signer,
        responder_cert=setup.responder.responder_cert,
        issuers=[setup.ca.cert],
        lookup=broken,
    )
    with caplog.at_level(logging.ERROR, logger="pki.ocsp"):
        result = responder.respond(request)
    assert result.status == "internal_error"
    assert result.der == internal_error_response()
    response = ocsp.load_der_ocsp_response(result.der)
    assert response.response_status is ocsp.OCSPResponseStatus.INTERNAL_ERROR
    assert "database is down" in caplog.text


def test_get_path_decoding() -> None:
    data = bytes(range(256)) * 2  # every base64 character, '+' and '/' included
    standard = base64.b64encode(data).decode()
    assert "+" in standard
    assert "/" in standard
    assert parse_get_path(standard) == data
    assert parse_get_path(quote(standard, safe="")) == data
    assert parse_get_path(standard.replace("+", " ")) == data
    assert parse_get_path(base64.urlsafe_b64encode(data).decode().rstrip("=")) == data
    for bad in ("", "%%%", "not base64!", "A" * (MAX_GET_PATH_CHARS + 1)):
        with pytest.raises(InvalidInputError):
            parse_get_path(bad)
    too_big = base64.b64encode(b"\x00" * (MAX_REQUEST_BYTES + 3)).decode()
    with pytest.raises(InvalidInputError, match="too long"):
        parse_get_path(too_big)


def test_get_path_round_trip(setup: Responder) -> None:
    request = setup.request("-issuer", "ca.pem", "-cert", "good.pem", "-no_nonce")
    path = quote(base64.b64encode(request).decode(), safe="")
    response = ocsp.load_der_ocsp_response(setup.responder.respond(parse_get_path(path)).der)
    assert response.certificate_status is ocsp.OCSPCertStatus.GOOD


def test_configuration_errors(setup: Responder) -> None:
    other = TestCa.create()
    with pytest.raises(InvalidInputError, match="not for the signing key"):
        OcspResponder(
            signer=setup.responder.signer,
            responder_cert=other.cert,
            issuers=[setup.ca.cert],
            lookup=setup.responder.lookup,
        )
    with pytest.raises(InvalidInputError, match="validity"):
        OcspResponder(
            signer=setup.responder.signer,
            responder_cert=setup.responder.responder_cert,
            issuers=[setup.ca.cert],
            lookup=setup.responder.lookup,
            validity=timedelta(0),
        )
    with pytest.raises(InvalidInputError, match="timezone-aware"):
        setup.responder.respond(b"", now=datetime(2025, 1, 1))


@pytest.mark.parametrize(
    ("state", "revoked_at", "reason"),
    [
        (CertState.REVOKED, None, None),
        (CertState.GOOD, REVOKED_AT, None),
        (CertState.GOOD, None, "key_compromise"),
        (CertState.REVOKED, REVOKED_AT, "remove_from_crl"),
        (CertState.REVOKED, REVOKED_AT, "stolen"),
        (CertState.REVOKED, datetime(2025, 1, 1), None),
    ],
)
def test_invalid_cert_status(
    state: CertState, revoked_at: datetime | None, reason: str | None
) -> None:
    with pytest.raises(InvalidInputError):
        CertStatus(state=state, revoked_at=revoked_at, reason=reason)
