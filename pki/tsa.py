"""Time-stamping authority core (RFC 3161, with RFC 5816's ESSCertIDv2).

DER ``TimeStampReq`` in, DER ``TimeStampResp`` out: no HTTP, no database. Serial numbers
come from a callable supplied by the caller (the database sequence), so that several
processes never issue the same serial. Every request is untrusted and bounded; anything
wrong with it is answered with a ``rejection`` naming the ``PKIFailureInfo``, and any
internal failure with ``systemFailure``, never an exception.

The time is the system clock, assumed NTP-disciplined to within :attr:`accuracy`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from asn1crypto import cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from pki.certificates import from_cryptography
from pki.errors import InvalidInputError
from pki.keysource import X509Signer

MAX_REQUEST_BYTES = 16 * 1024
"""Largest DER request accepted; larger ones are rejected with ``badDataFormat``."""

MAX_NONCE_BYTES = 64
"""Longest nonce echoed (encoded INTEGER contents); RFC 3161 sets no bound, this service does."""

SUPPORTED_HASHES = frozenset({"sha256", "sha384", "sha512"})
"""Message-imprint hashes a TSA may accept; SHA-1 is no longer collision-resistant."""

# RFC 3161 §2.4.2: serialNumber up to 160 bits.
_SERIAL_LIMIT = 1 << 160

_log = logging.getLogger(__name__)


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, kw_only=True)
class TimestampResult:
    """One answer of the TSA and what the caller records about it."""

    der: bytes
    """The DER ``TimeStampResp`` to send (``application/timestamp-reply``), whatever the
    outcome."""

    granted: bool
    """A token was issued (PKIStatus ``granted``)."""

    serial: int | None = None
    """serialNumber of the issued token."""

    gen_time: datetime | None = None
    """genTime of the issued token (UTC)."""

    failure: str | None = None
    """The asn1crypto ``PKIFailureInfo`` name of a rejection: ``bad_alg``, ``bad_data_format``,
    ``unaccepted_policy``, ``unaccepted_extensions`` or ``system_failure``."""


class _TimeStampResp(core.Sequence):  # type: ignore[misc]
    # asn1crypto's TimeStampResp makes timeStampToken mandatory, so it cannot build (nor
    # read) a rejection: this is the structure as RFC 3161 §2.4.2 has it.
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


class _Rejection(Exception):
    def __init__(self, failure: str, message: str) -> None:
        super().__init__(message)
        self.failure = failure


@dataclass(frozen=True, kw_only=True)
class TimeStampAuthority:
    """Issues RFC 3161 timestamp tokens signed by ``signer``."""

    signer: X509Signer
    """The TSA key."""

    certificate: x509.Certificate
    """The TSA certificate: ``signer``'s key, critical EKU timeStamping only (RFC 3161 §2.3)."""

    chain: Sequence[x509.Certificate] = ()
    """Issuer certificates, sent after the TSA certificate when the request sets certReq."""

    policy: str
    """Dotted OID of the TSA policy put in tokens whose request names none."""

    accepted_policies: frozenset[str] = frozenset()
    """Further policies a request may name; any other is rejected with unacceptedPolicy."""

    accuracy: timedelta = timedelta(seconds=1)
    """Bound on the clock's error, written into every token."""

    serials: Callable[[], int]
    """Source of token serial numbers: unique across processes, positive, ≤ 160 bits."""

    clock: Callable[[], datetime] = _utc_now
    """The current time, timezone-aware."""

    hash_algorithms: frozenset[str] = SUPPORTED_HASHES
    """Message-imprint hashes accepted (a subset of :data:`SUPPORTED_HASHES`); others get
    badAlg."""

    _certificate: asn1_x509.Certificate = field(init=False, repr=False)
    _certificates: list[asn1_x509.Certificate] = field(init=False, repr=False)
    _policies: frozenset[str] = field(init=False, repr=False)
    _accuracy: tsp.Accuracy = field(init=False, repr=False)
    _ess_cert_id: tsp.ESSCertIDv2 = field(init=False, repr=False)

    def __post_init__(self) -> None:
        certificate = from_cryptography(self.certificate)
        if certificate.public_key.sha1 != self.signer.key_id:
            raise InvalidInputError("the TSA certificate is not for the signing key")
        try:
            usage = self.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
        except x509.ExtensionNotFound:
            usage = None
        if (
            usage is None
            or not usage.critical
            or list(usage.value) != [ExtendedKeyUsageOID.TIME_STAMPING]
        ):
            raise InvalidInputError("a TSA certificate needs a critical EKU of timeStamping only")
        policies = self.accepted_policies | {self.policy}
        for policy in policies:
            try:
                core.ObjectIdentifier(policy).dump()
            except ValueError as ex:
                raise InvalidInputError(f"invalid TSA policy OID {policy!r}") from ex
        if not self.accuracy > timedelta(0):
            raise InvalidInputError("the TSA accuracy must be positive")
        if not self.hash_algorithms or not self.hash_algorithms <= SUPPORTED_HASHES:
            raise InvalidInputError(f"TSA hash algorithms must be among {sorted(SUPPORTED_HASHES)}")
        accuracy = {
            "seconds": int(self.accuracy.total_seconds()),
            "millis": self.accuracy.microseconds // 1000,
            "micros": self.accuracy.microseconds % 1000,
        }
        ess_cert_id = tsp.ESSCertIDv2(
            {
                "cert_hash": hashlib.sha256(certificate.dump()).digest(),
                "issuer_serial": {
                    "issuer": [
                        asn1_x509.GeneralName(name="directory_name", value=certificate.issuer)
                    ],
                    "serial_number": certificate.serial_number,
                },
            }
        )
        values = {
            "_certificate": certificate,
            "_certificates": [certificate, *map(from_cryptography, self.chain)],
            "_policies": policies,
            # Accuracy's fields are optional and must be absent rather than zero.
            "_accuracy": tsp.Accuracy({name: n for name, n in accuracy.items() if n}),
            # Kept parsed from DER: asn1crypto re-encodes a constructed value into every token
            # (measured ≈ 1.6 ms of 17 ms), a loaded one is copied as bytes.
            "_ess_cert_id": tsp.ESSCertIDv2.load(ess_cert_id.dump()),
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def respond(self, request_der: bytes) -> TimestampResult:
        """Answer one DER ``TimeStampReq`` with a DER ``TimeStampResp``; never raises."""
        try:
            request = self._check(request_der)
        except _Rejection as refused:
            _log.info("timestamp request rejected (%s): %s", refused.failure, refused)
            return rejection(refused.failure, str(refused))
        try:
            return self._grant(request)
        except Exception:
            _log.exception("timestamp token could not be issued")
            return rejection("system_failure", "the time-stamping service failed")

    def _check(self, request_der: bytes) -> tsp.TimeStampReq:
        if not request_der or len(request_der) > MAX_REQUEST_BYTES:
            raise _Rejection("bad_data_format", f"request of {len(request_der)} bytes")
        try:
            request = tsp.TimeStampReq.load(request_der, strict=True)
            # asn1crypto parses lazily and accepts BER: decode every field now, so that no
            # decoding error surfaces later, and re-encode as DER what the token echoes.
            request.native  # noqa: B018
            request = tsp.TimeStampReq.load(request.dump(force=True))
        except Exception as ex:
            raise _Rejection("bad_data_format", "the request is not a DER TimeStampReq") from ex
        if request["version"].native != "v1":
            raise _Rejection("bad_data_format", "unsupported request version")
        imprint = request["message_imprint"]
        algorithm = imprint["hash_algorithm"]["algorithm"].native
        if algorithm not in self.hash_algorithms:
            raise _Rejection("bad_alg", f"hash algorithm {algorithm} not accepted")
        if len(imprint["hashed_message"].native) != hashlib.new(algorithm).digest_size:
            raise _Rejection("bad_data_format", f"the imprint is not a {algorithm} digest")
        policy = request["req_policy"].native
        if policy is not None and policy not in self._policies:
            raise _Rejection("unaccepted_policy", f"policy {policy} not accepted")
        if len(request["nonce"].contents or b"") > MAX_NONCE_BYTES:
            raise _Rejection("bad_data_format", "the nonce is too long")
        if request["extensions"].native:
            raise _Rejection("unaccepted_extensions", "request extensions are not supported")
        return request

    def _grant(self, request: tsp.TimeStampReq) -> TimestampResult:
        serial = self.serials()
        if not 0 < serial < _SERIAL_LIMIT:
            raise ValueError(f"serial number {serial} out of range")
        now = self.clock()
        if now.utcoffset() is None:
            raise ValueError("the TSA clock returned a naive datetime")
        gen_time = now.astimezone(UTC)
        gen_time = gen_time.replace(microsecond=gen_time.microsecond // 1000 * 1000)
        tst_info = tsp.TSTInfo(
            {
                "version": "v1",
                "policy": request["req_policy"].native or self.policy,
                "message_imprint": request["message_imprint"],
                "serial_number": serial,
                "gen_time": gen_time,
                "accuracy": self._accuracy,
                "nonce": request["nonce"].native,
                "tsa": asn1_x509.GeneralName(
                    name="directory_name",
                    value=asn1_x509.Name.load(self._certificate.subject.dump()),
                ),
            }
        )
        tst_der = tst_info.dump()
        digest_algorithm = self.signer.algorithm.hash_algo
        signed_attrs = cms.CMSAttributes(
            [
                {"type": "content_type", "values": ["tst_info"]},
                {
                    "type": "message_digest",
                    "values": [hashlib.new(digest_algorithm, tst_der).digest()],
                },
                {"type": "signing_certificate_v2", "values": [{"certs": [self._ess_cert_id]}]},
            ]
        )
        signer_info = {
            "version": "v1",
            "sid": cms.SignerIdentifier(
                name="issuer_and_serial_number",
                value={
                    "issuer": asn1_x509.Name.load(self._certificate.issuer.dump()),
                    "serial_number": self._certificate.serial_number,
                },
            ),
            "digest_algorithm": {"algorithm": digest_algorithm},
            "signed_attrs": signed_attrs,
            "signature_algorithm": self.signer.algorithm,
            "signature": self.signer.sign(signed_attrs.dump()),
        }
        signed_data: dict[str, object] = {
            # RFC 5652 §5.1: version 3 because the content type is not id-data.
            "version": "v3",
            "digest_algorithms": [{"algorithm": digest_algorithm}],
            "encap_content_info": {
                "content_type": "tst_info",
                "content": core.ParsableOctetString(tst_der),
            },
            "signer_infos": [signer_info],
        }
        if request["cert_req"].native:
            # Loaded afresh from DER per token: asn1crypto re-encodes a shared parsed value
            # (measured: up to hundreds of ms per token), a freshly loaded one is copied.
            signed_data["certificates"] = [
                asn1_x509.Certificate.load(c.dump()) for c in self._certificates
            ]
        der: bytes = _TimeStampResp(
            {
                "status": {"status": "granted"},
                "time_stamp_token": {"content_type": "signed_data", "content": signed_data},
            }
        ).dump()
        return TimestampResult(der=der, granted=True, serial=serial, gen_time=gen_time)


def rejection(failure: str, message: str) -> TimestampResult:
    """A TimeStampResp refusing the request with ``failure`` (a PKIFailureInfo name)."""
    der: bytes = _TimeStampResp(
        {
            "status": {
                "status": "rejection",
                "status_string": [message],
                "fail_info": tsp.PKIFailureInfo({failure}),
            }
        }
    ).dump()
    return TimestampResult(der=der, granted=False, failure=failure)
