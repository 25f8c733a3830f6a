"""The timestamp authority core, checked by the real ``openssl ts``, asn1crypto and pyHanko.

Queries come from ``openssl ts -query`` (or are built with asn1crypto when openssl cannot
produce the shape); tokens are signed with SoftHSM keys.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import algos, cms, core, keys, tsp
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from pyhanko.sign.validation.generic_cms import validate_tst_signed_data
from pyhanko.sign.validation.status import TimestampSignatureStatus
from pyhanko_certvalidator import ValidationContext

from bench.tsa_bench import Asn1cryptoTokens, parsed_request
from hsm import BlockingSessionPool, HashAlg, KeySpec
from pki.errors import InvalidInputError
from pki.keysource import X509Signer
from pki.signing import HsmX509Signer
from pki.tsa import MAX_NONCE_BYTES, MAX_REQUEST_BYTES, TimeStampAuthority, TimestampResult
from tests.pki.certs import TestCa, hsm_public_key, run_openssl, write_pem

POLICY = "1.3.6.1.4.1.55555.1.3161"
OTHER_POLICY = "1.3.6.1.4.1.55555.1.2"
FIRST_SERIAL = 7001
GEN_TIME = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
DATA = "Giấy xác nhận thông tin về cư trú — Số: 123/XN".encode()


@dataclass
class Setup:
    tsa: TimeStampAuthority
    ca: TestCa
    dir: Path

    def query(self, *args: str) -> bytes:
        """A request made by ``openssl ts -query`` over ``data.txt`` with ``args``."""
        done = run_openssl(
            "ts", "-query", "-data", "data.txt", *args, "-out", "req.tsq", cwd=self.dir
        )
        assert done.returncode == 0, done.stderr
        return (self.dir / "req.tsq").read_bytes()

    def respond(self, request: bytes) -> TimestampResult:
        result = self.tsa.respond(request)
        (self.dir / "resp.tsr").write_bytes(result.der)
        return result

    def openssl_verify(self, *args: str) -> str:
        """``openssl ts -verify`` of ``resp.tsr``; its output, failed or not."""
        done = run_openssl(
            "ts", "-verify", "-in", "resp.tsr", *args, "-CAfile", "ca.pem", "-untrusted", "tsa.pem",
            cwd=self.dir,
        )  # fmt: skip
        return done.stdout + done.stderr

    def openssl_text(self) -> str:
        done = run_openssl("ts", "-reply", "-in", "resp.tsr", "-text", cwd=self.dir)
        assert done.returncode == 0, done.stderr
        return done.stdout


@pytest.fixture
def key_spec() -> KeySpec:
    return KeySpec.EC_P256


@pytest.fixture
def setup(pool: BlockingSessionPool, tmp_path: Path, key_spec: KeySpec) -> Setup:
    ca = TestCa.create()
    key = pool.generate_key(key_spec, label="tsa")
    certificate = ca.issue(
        hsm_public_key(key), common_name="TSA Bộ Công an", purpose="tsa", serial=3
    )
    write_pem(tmp_path / "ca.pem", ca.cert)
    write_pem(tmp_path / "tsa.pem", certificate)
    (tmp_path / "data.txt").write_bytes(DATA)
    serials: Iterator[int] = itertools.count(FIRST_SERIAL)
    tsa = TimeStampAuthority(
        signer=HsmX509Signer(pool, key),
        certificate=certificate,
        chain=[ca.cert],
        policy=POLICY,
        accepted_policies=frozenset({OTHER_POLICY}),
        serials=lambda: next(serials),
        clock=lambda: GEN_TIME,
    )
    return Setup(tsa=tsa, ca=ca, dir=tmp_path)


BOTH_KEYS = pytest.mark.parametrize(
    "key_spec", [KeySpec.EC_P256, KeySpec.RSA_2048], ids=lambda spec: spec.value
)


def _token(result: TimestampResult) -> tuple[Any, tsp.TSTInfo]:
    """The SignedData and TSTInfo of a granted response, read back by asn1crypto."""
    response = tsp.TimeStampResp.load(result.der)
    assert response["status"]["status"].native == "granted"
    signed_data = response["time_stamp_token"]["content"]
    return signed_data, signed_data["encap_content_info"]["content"].parsed


@BOTH_KEYS
def test_openssl_verifies_token(setup: Setup) -> None:
    request = setup.query("-sha256", "-cert")
    result = setup.respond(request)
    assert result.granted
    assert result.serial == FIRST_SERIAL
    assert result.gen_time == GEN_TIME.replace(microsecond=678000)
    assert result.failure is None

    assert "Verification: OK" in setup.openssl_verify("-queryfile", "req.tsq")
    assert "Verification: OK" in setup.openssl_verify("-data", "data.txt")
    text = setup.openssl_text()
    assert "Status: Granted." in text
    assert f"Policy OID: {POLICY}" in text
    assert "Hash Algorithm: sha256" in text
    assert f"Serial number: 0x{FIRST_SERIAL:04X}" in text
    assert "Time stamp: Jan  2 03:04:05.678 2025 GMT" in text
    assert "Accuracy: 0x01 seconds, unspecified millis, unspecified micros" in text
    assert "Ordering: no" in text
    assert "TSA: DirName:" in text


def test_token_contents(setup: Setup) -> None:
    request = setup.query("-sha384", "-cert")
    signed_data, tst_info = _token(setup.respond(request))
    sent = tsp.TimeStampReq.load(request)
    assert tst_info["nonce"].native == sent["nonce"].native is not None
    assert tst_info["message_imprint"].dump() == sent["message_imprint"].dump()
    assert tst_info["tsa"].chosen.native["common_name"] == "TSA Bộ Công an"
    assert tst_info["accuracy"].native == {"seconds": 1, "millis": None, "micros": None}

    tsa_der = setup.tsa.certificate.public_bytes(Encoding.DER)
    certificates = [choice.chosen.dump() for choice in signed_data["certificates"]]
    assert sorted(certificates) == sorted([tsa_der, setup.ca.cert.public_bytes(Encoding.DER)])
    assert signed_data["version"].native == "v3"
    assert signed_data["encap_content_info"]["content_type"].native == "tst_info"
    (signer_info,) = signed_data["signer_infos"]
    assert signer_info["sid"].chosen["serial_number"].native == setup.tsa.certificate.serial_number
    attrs = {attr["type"].native: attr["values"][0] for attr in signer_info["signed_attrs"]}
    assert set(attrs) == {"content_type", "message_digest", "signing_certificate_v2"}
    assert attrs["content_type"].native == "tst_info"
    tst_der = signed_data["encap_content_info"]["content"].contents
    assert attrs["message_digest"].native == hashlib.sha256(tst_der).digest()
    (ess_cert_id,) = attrs["signing_certificate_v2"]["certs"]
    assert ess_cert_id["hash_algorithm"]["algorithm"].native == "sha256"
    assert ess_cert_id["cert_hash"].native == hashlib.sha256(tsa_der).digest()
    issuer_serial = ess_cert_id["issuer_serial"]
    assert issuer_serial["serial_number"].native == setup.tsa.certificate.serial_number
    (issuer,) = issuer_serial["issuer"]
    assert issuer.chosen.untag().dump() == setup.ca.cert.subject.public_bytes()


@BOTH_KEYS
async def test_pyhanko_validates_token(setup: Setup) -> None:
    signed_data, tst_info = _token(setup.respond(setup.query("-sha512", "-cert", "-no_nonce")))
    assert tst_info["nonce"].native is None
    root = asn1_x509.Certificate.load(setup.ca.cert.public_bytes(Encoding.DER))
    context = ValidationContext(trust_roots=[root], allow_fetching=False)

    async def validate(data: bytes) -> TimestampSignatureStatus:
        kwargs = await validate_tst_signed_data(
            signed_data, context, lambda algorithm: hashlib.new(algorithm, data).digest()
        )
        return TimestampSignatureStatus(**kwargs)

    status = await validate(DATA)
    assert status.intact
    assert status.valid
    assert status.trusted
    assert status.timestamp == GEN_TIME.replace(microsecond=678000)
    assert not (await validate(b"another document")).intact


def test_without_cert_req(setup: Setup) -> None:
    signed_data, _ = _token(setup.respond(setup.query("-sha256")))
    assert signed_data["certificates"].native is None
    assert "Verification: OK" in setup.openssl_verify("-queryfile", "req.tsq")


def test_tampered_token_rejected(setup: Setup) -> None:
    der = setup.respond(setup.query("-sha256", "-cert")).der
    tampered = der.replace(b"20250102030405.678Z", b"20250102030406.678Z")
    assert tampered != der
    (setup.dir / "resp.tsr").write_bytes(tampered)
    assert "Verification: FAILED" in setup.openssl_verify("-queryfile", "req.tsq")

    (setup.dir / "resp.tsr").write_bytes(der)
    (setup.dir / "other.txt").write_bytes(DATA + " (sửa)".encode())
    assert "Verification: FAILED" in setup.openssl_verify("-data", "other.txt")
    write_pem(setup.dir / "ca.pem", TestCa.create().cert)
    assert "Verification: FAILED" in setup.openssl_verify("-queryfile", "req.tsq")


def test_serials_and_policies(setup: Setup) -> None:
    first = setup.respond(setup.query("-sha256"))
    rejected = setup.respond(setup.query("-sha256", "-tspolicy", "1.2.3.4.99"))
    assert rejected.failure == "unaccepted_policy"
    second = setup.respond(setup.query("-sha256", "-tspolicy", OTHER_POLICY))
    assert (first.serial, rejected.serial, second.serial) == (FIRST_SERIAL, None, FIRST_SERIAL + 1)
    assert _token(second)[1]["policy"].native == OTHER_POLICY
    assert "Verification: OK" in setup.openssl_verify("-queryfile", "req.tsq")


def _request(
    *,
    algorithm: str = "sha256",
    digest_size: int = 32,
    nonce: int | None = None,
    version: int = 1,
    extensions: list[dict[str, object]] | None = None,
) -> bytes:
    request: dict[str, object] = {
        "version": version,
        "message_imprint": {
            "hash_algorithm": {"algorithm": algorithm},
            "hashed_message": b"\x01" * digest_size,
        },
        "nonce": nonce,
    }
    if extensions is not None:
        request["extensions"] = extensions
    der: bytes = tsp.TimeStampReq(request).dump()
    return der


def test_ber_request_gets_der_token(setup: Setup) -> None:
    imprint = tsp.TimeStampReq.load(_request())["message_imprint"]
    # BER, not DER: the hashedMessage length in long form.
    body = imprint.dump()[2:].replace(b"\x04\x20", b"\x04\x81\x20", 1)
    ber = tsp.MessageImprint.load(bytes([0x30, len(body)]) + body)
    request = tsp.TimeStampReq({"version": 1, "message_imprint": ber}).dump()
    assert b"\x04\x81\x20" in request
    signed_data, tst_info = _token(setup.respond(request))
    tst_der = signed_data["encap_content_info"]["content"].contents
    assert tsp.TSTInfo.load(tst_der).dump(force=True) == tst_der
    assert tst_info["message_imprint"]["hashed_message"].native == b"\x01" * 32


def test_large_nonce_echoed(setup: Setup) -> None:
    nonce = (1 << (8 * MAX_NONCE_BYTES - 1)) - 1  # the largest positive 64-byte INTEGER
    _, tst_info = _token(setup.respond(_request(nonce=nonce)))
    assert tst_info["nonce"].native == nonce


UNKNOWN_EXTENSION: dict[str, object] = {"extn_id": "1.2.3.4", "extn_value": b"\x05\x00"}
UNSUPPORTED_ALGORITHM = "unrecognized or unsupported algorithm identifier"
OPENSSL_REJECTIONS = [
    (("-sha1",), "bad_alg", UNSUPPORTED_ALGORITHM),
    (("-md5",), "bad_alg", UNSUPPORTED_ALGORITHM),
    (("-sha256", "-tspolicy", "1.2.3.4.99"), "unaccepted_policy", "the requested TSA policy"),
]


@pytest.mark.parametrize(("args", "failure", "text"), OPENSSL_REJECTIONS)
def test_openssl_rejections(setup: Setup, args: tuple[str, ...], failure: str, text: str) -> None:
    result = setup.respond(setup.query(*args))
    assert (result.granted, result.serial, result.failure) == (False, None, failure)
    shown = setup.openssl_text()
    assert "Status: Rejected." in shown
    assert f"Failure info: {text}" in shown


REJECTIONS = {
    "empty": (b"", "bad_data_format"),
    "garbage": (b"POST /tsa HTTP/1.1", "bad_data_format"),
    "truncated": (_request()[:-3], "bad_data_format"),
    "trailing data": (_request() + b"\x00", "bad_data_format"),
    "oversize": (_request() + b"\x00" * MAX_REQUEST_BYTES, "bad_data_format"),
    "not a request": (core.Integer(5).dump(), "bad_data_format"),
    "version 2": (_request(version=2), "bad_data_format"),
    "sha512 name, 32-byte imprint": (_request(algorithm="sha512"), "bad_data_format"),
    "sha256 name, 48-byte imprint": (_request(digest_size=48), "bad_data_format"),
    "unknown hash": (_request(algorithm="1.2.3.4"), "bad_alg"),
    "65-byte nonce": (_request(nonce=1 << (8 * MAX_NONCE_BYTES)), "bad_data_format"),
    "extension": (_request(extensions=[UNKNOWN_EXTENSION]), "unaccepted_extensions"),
}


@pytest.mark.parametrize(("request_der", "failure"), REJECTIONS.values(), ids=REJECTIONS.keys())
def test_rejections(setup: Setup, request_der: bytes, failure: str) -> None:
    result = setup.respond(request_der)
    assert (result.granted, result.serial, result.failure) == (False, None, failure)
    # asn1crypto's TimeStampResp insists on a token: read the PKIStatusInfo on its own.
    status = tsp.PKIStatusInfo.load(core.Sequence.load(result.der, strict=True).contents)
    assert status["status"].native == "rejection"
    assert status["fail_info"].native == {failure}
    assert status["status_string"].native
    assert "Status: Rejected." in setup.openssl_text()


class _BrokenSigner:
    def __init__(self, signer: X509Signer) -> None:
        self.algorithm = signer.algorithm
        self.public_key = signer.public_key
        self.key_id = signer.key_id

    def sign(self, data: bytes) -> bytes:
        raise RuntimeError("HSM unplugged")


def _raise() -> int:
    raise RuntimeError("database is down")


SYSTEM_FAILURES = {
    "serial source fails": ({"serials": _raise}, "database is down"),
    "serial zero": ({"serials": lambda: 0}, "out of range"),
    "serial over 160 bits": ({"serials": lambda: 1 << 160}, "out of range"),
    "naive clock": ({"clock": lambda: GEN_TIME.replace(tzinfo=None)}, "naive"),
}


@pytest.mark.parametrize(
    ("changes", "logged"), SYSTEM_FAILURES.values(), ids=SYSTEM_FAILURES.keys()
)
def test_system_failure(
    setup: Setup, changes: dict[str, Any], logged: str, caplog: pytest.LogCaptureFixture
) -> None:
    tsa = replace(setup.tsa, **changes)
    with caplog.at_level(logging.ERROR, logger="pki.tsa"):
        result = tsa.respond(_request())
    assert (result.granted, result.failure) == (False, "system_failure")
    assert logged in caplog.text


def test_failing_signer_is_system_failure(setup: Setup) -> None:
    tsa = replace(setup.tsa, signer=_BrokenSigner(setup.tsa.signer))
    assert tsa.respond(_request()).failure == "system_failure"


def test_accuracy_encoding(setup: Setup) -> None:
    tsa = replace(setup.tsa, accuracy=timedelta(seconds=2, microseconds=5007))
    _, tst_info = _token(tsa.respond(_request()))
    assert tst_info["accuracy"].native == {"seconds": 2, "millis": 5, "micros": 7}
    tsa = replace(setup.tsa, accuracy=timedelta(milliseconds=500))
    _, tst_info = _token(tsa.respond(_request()))
    assert tst_info["accuracy"].native == {"seconds": None, "millis": 500, "micros": None}


def test_configuration_errors(setup: Setup) -> None:
    public_key = setup.tsa.certificate.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    plain = setup.ca.issue(public_key, common_name="không phải TSA", purpose="leaf", serial=9)
    cases: dict[str, dict[str, Any]] = {
        "critical EKU": {"certificate": plain},
        "not for the signing key": {"certificate": setup.ca.cert},
        "invalid TSA policy": {"policy": "chính sách"},
        "accuracy": {"accuracy": timedelta(0)},
        "hash algorithms": {"hash_algorithms": frozenset({"sha1", "sha256"})},
    }
    for message, changes in cases.items():
        with pytest.raises(InvalidInputError, match=message):
            replace(setup.tsa, **changes)


# -- the hand-encoded tokens against the asn1crypto construction --------------------------


class _RememberingSigner:
    """Signs each distinct input once and answers the same signature ever after: the
    reference construction, given the bytes the TSA signed, gets the TSA's (randomised
    ECDSA) signature back, so whole responses compare byte for byte — and it gets another
    signature, and a different response, if it signs anything else."""

    def __init__(self, signer: X509Signer) -> None:
        self._signer = signer
        self._signed: dict[bytes, bytes] = {}

    @property
    def algorithm(self) -> algos.SignedDigestAlgorithm:
        return self._signer.algorithm

    @property
    def public_key(self) -> keys.PublicKeyInfo:
        return self._signer.public_key

    @property
    def key_id(self) -> bytes:
        return self._signer.key_id

    def sign(self, data: bytes) -> bytes:
        if data not in self._signed:
            self._signed[data] = self._signer.sign(data)
        return self._signed[data]


NONCES = (None, (1 << 62) | 12345, 0, 128, -128, -129, (1 << (8 * MAX_NONCE_BYTES - 1)) - 1)
SERIALS = (1, 127, 128, 255, 256, 1 << 64, (1 << 159) + 12345, (1 << 160) - 1)
GEN_TIMES = (
    GEN_TIME,  # .678
    GEN_TIME.replace(microsecond=500_000),  # .5: DER drops the trailing zeros
    GEN_TIME.replace(microsecond=120_999),  # .12
    GEN_TIME.replace(microsecond=999),  # under a millisecond: no fraction at all
    GEN_TIME.replace(microsecond=0),
    datetime(2025, 1, 2, 10, 4, 5, 7000, tzinfo=timezone(timedelta(hours=7))),  # .007, in UTC
)
ACCURACIES = (
    timedelta(seconds=1),
    timedelta(seconds=2, microseconds=5007),
    timedelta(milliseconds=500),
    timedelta(microseconds=1),
    timedelta(days=1),
)
# every request shape, the hash of its imprint tied to the other choices so that each
# hash meets nonce, certReq and policy
REQUEST_SHAPES = [
    (hash_name, nonce, cert_req, policy)
    for (nonce, cert_req, policy), hash_name in zip(
        itertools.product(NONCES, (False, True), (None, POLICY, OTHER_POLICY)),
        itertools.cycle(("sha256", "sha384", "sha512", "sha384", "sha512")),
        strict=False,
    )
]
SIGNERS = {
    "ecdsa-p256-sha256": (KeySpec.EC_P256, HashAlg.SHA256, False),
    "ecdsa-p384-sha384": (KeySpec.EC_P384, HashAlg.SHA384, False),
    "rsa-pkcs1-sha256": (KeySpec.RSA_2048, HashAlg.SHA256, False),
    "rsa-pss-sha512": (KeySpec.RSA_2048, HashAlg.SHA512, True),
}


def _shaped_request(hash_name: str, nonce: int | None, cert_req: bool, policy: str | None) -> bytes:
    request: dict[str, object] = {
        "version": "v1",
        "message_imprint": {
            "hash_algorithm": {"algorithm": hash_name},
            "hashed_message": hashlib.new(hash_name, repr(nonce).encode()).digest(),
        },
        "req_policy": policy,
        "nonce": nonce,
        "cert_req": cert_req,
    }
    der: bytes = tsp.TimeStampReq(request).dump()
    return der


@pytest.mark.parametrize(("key_spec", "hash_alg", "pss"), SIGNERS.values(), ids=SIGNERS.keys())
def test_tokens_equal_the_asn1crypto_construction(
    setup: Setup, hash_alg: HashAlg, pss: bool
) -> None:
    hsm_signer = setup.tsa.signer
    assert isinstance(hsm_signer, HsmX509Signer)
    signer = _RememberingSigner(replace(hsm_signer, hash_alg=hash_alg, pss=pss))
    serials = itertools.cycle(SERIALS)
    clock = itertools.cycle(GEN_TIMES)
    accuracies = itertools.cycle(ACCURACIES)
    tsa = reference = None
    for index, shape in enumerate(REQUEST_SHAPES):
        if index % 6 == 0:
            tsa = replace(
                setup.tsa,
                signer=signer,
                accuracy=next(accuracies),
                serials=lambda: next(serials),
                clock=lambda: next(clock),
            )
            reference = Asn1cryptoTokens(tsa)
        assert tsa is not None
        assert reference is not None
        request = _shaped_request(*shape)
        result = tsa.respond(request)
        assert result.granted, (shape, result.failure)
        assert result.serial is not None
        assert result.gen_time is not None
        expected = reference.grant(
            parsed_request(request), serial=result.serial, gen_time=result.gen_time
        )
        assert result.der == expected, shape
        # and DER by asn1crypto's own reading: re-encoding the per-token parts changes
        # nothing (not the whole response: asn1crypto takes seconds over its certificates)
        signed_data, _ = _token(result)
        tst_der = signed_data["encap_content_info"]["content"].contents
        assert tsp.TSTInfo.load(tst_der).dump(force=True) == tst_der
        (signer_info,) = signed_data["signer_infos"]
        assert cms.SignerInfo.load(signer_info.dump()).dump(force=True) == signer_info.dump()
    assert len(signer._signed) == len(REQUEST_SHAPES)


def test_serials_and_times_as_encoded(setup: Setup) -> None:
    serials = iter(SERIALS)
    clock = iter(GEN_TIMES)
    tsa = replace(setup.tsa, serials=lambda: next(serials), clock=lambda: next(clock))
    seen = [_token(tsa.respond(_request()))[1] for _ in GEN_TIMES]
    assert [t["serial_number"].native for t in seen] == list(SERIALS[: len(GEN_TIMES)])
    times = [t["gen_time"].contents for t in seen]
    assert times == [
        b"20250102030405.678Z",
        b"20250102030405.5Z",
        b"20250102030405.12Z",
        b"20250102030405Z",
        b"20250102030405Z",
        b"20250102030405.007Z",
    ]
