"""Time-stamping authority core (RFC 3161, with RFC 5816's ESSCertIDv2).

DER ``TimeStampReq`` in, DER ``TimeStampResp`` out: no HTTP, no database. Serial numbers
come from a callable supplied by the caller (the database sequence), so that several
processes never issue the same serial. Every request is untrusted and bounded; anything
wrong with it is answered with a ``rejection`` naming the ``PKIFailureInfo``, and any
internal failure with ``systemFailure``, never an exception.

The time is the system clock, assumed NTP-disciplined to within :attr:`accuracy`.

Tokens are encoded by hand. Built from asn1crypto values, one token cost tens of
milliseconds (asn1crypto re-encodes nested values over and over: tens of thousands of
``dump()`` calls per token), a hundred times the HSM signature it carries. Everything that
is the same in every token — the certificates, the SignerIdentifier, the algorithm
identifiers, the content-type and signing-certificate-v2 attributes, the accuracy, the TSA
name, the policies — is DER-encoded once, when the authority is built; per token only the
TSTInfo, the message-digest attribute, the signature and the envelopes around them are.
The tests check that the result is byte for byte what the asn1crypto construction gives.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from pki.certificates import from_cryptography
from pki.der import (
    CONTEXT_0,
    GENERALIZED_TIME,
    OCTET_STRING,
    SEQUENCE,
    SET,
    integer,
    set_of,
    tlv,
)
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


# -- DER -----------------------------------------------------------------------------------

_DIRECTORY_NAME = 0xA4  # GeneralName [4], EXPLICIT because Name is a CHOICE


def _generalized_time(moment: datetime) -> bytes:
    """A DER GeneralizedTime of a UTC time in whole milliseconds: 'Z', and a fraction only
    when it is not zero, without trailing zeros (X.690 §11.7)."""
    text = (
        f"{moment.year:04d}{moment.month:02d}{moment.day:02d}"
        f"{moment.hour:02d}{moment.minute:02d}{moment.second:02d}"
    )
    if millis := moment.microsecond // 1000:
        text += "." + f"{millis:03d}".rstrip("0")
    return tlv(GENERALIZED_TIME, text.encode("ascii") + b"Z")


_VERSION_1 = integer(1)
# RFC 5652 §5.1: version 3 because the content type is not id-data.
_VERSION_3 = integer(3)
# PKIStatusInfo of a granted request: SEQUENCE { status INTEGER granted(0) }
_GRANTED = tlv(SEQUENCE, integer(0))
_OID_SIGNED_DATA = cms.ContentType("signed_data").dump()
_OID_TST_INFO = cms.ContentType("tst_info").dump()
_OID_MESSAGE_DIGEST = cms.CMSAttributeType("message_digest").dump()


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
class _Encoded:
    """The DER of everything every token of one authority shares (see the module text)."""

    policies: Mapping[str, bytes]
    """Each accepted policy (dotted) → its OBJECT IDENTIFIER, DER."""
    accuracy: bytes
    """TSTInfo.accuracy, DER."""
    tsa_name: bytes
    """TSTInfo.tsa: ``[0]`` around the directoryName GeneralName of the TSA's subject."""
    digest_algorithm: str
    """The hash of the signature algorithm, also the message-digest attribute's."""
    content_type_attribute: bytes
    """Signed attribute content-type = id-ct-TSTInfo, DER."""
    signing_certificate_attribute: bytes
    """Signed attribute signing-certificate-v2 (RFC 5816), DER."""
    signer_info_head: bytes
    """SignerInfo version, sid (IssuerAndSerialNumber) and digestAlgorithm, DER."""
    signature_algorithm: bytes
    """SignerInfo.signatureAlgorithm, DER."""
    signed_data_head: bytes
    """SignedData version and digestAlgorithms, DER."""
    certificates: bytes
    """SignedData.certificates (``[0] IMPLICIT SET OF``, in DER order), sent on certReq."""


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

    _encoded: _Encoded = field(init=False, repr=False)

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
        policies: dict[str, bytes] = {}
        for policy in self.accepted_policies | {self.policy}:
            try:
                policies[policy] = core.ObjectIdentifier(policy).dump()
            except ValueError as ex:
                raise InvalidInputError(f"invalid TSA policy OID {policy!r}") from ex
        if not self.accuracy > timedelta(0):
            raise InvalidInputError("the TSA accuracy must be positive")
        if not self.hash_algorithms or not self.hash_algorithms <= SUPPORTED_HASHES:
            raise InvalidInputError(f"TSA hash algorithms must be among {sorted(SUPPORTED_HASHES)}")
        object.__setattr__(self, "_encoded", self._encode(certificate, policies))

    def _encode(self, certificate: asn1_x509.Certificate, policies: dict[str, bytes]) -> _Encoded:
        """The constant parts of every token, DER. The nested ones are built with
        asn1crypto: this runs once per authority."""
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
        signing_certificate = cms.CMSAttribute(
            {"type": "signing_certificate_v2", "values": [{"certs": [ess_cert_id]}]}
        )
        content_type = cms.CMSAttribute({"type": "content_type", "values": ["tst_info"]})
        # the signature algorithm's own hash, as the asn1crypto construction had it
        digest_algorithm: str = self.signer.algorithm.hash_algo
        # asn1crypto writes NULL parameters for the SHA-2 family; RFC 5754 asks for them absent
        # and has verifiers accept both. Kept: tokens stay byte for byte what they were.
        digest_algorithm_der = algos.DigestAlgorithm({"algorithm": digest_algorithm}).dump()
        tbs = certificate["tbs_certificate"]
        sid = tlv(SEQUENCE, tbs["issuer"].dump() + integer(certificate.serial_number))
        certificates = [self.certificate, *self.chain]
        return _Encoded(
            policies=policies,
            # Accuracy's fields are optional and must be absent rather than zero.
            accuracy=tsp.Accuracy({name: n for name, n in accuracy.items() if n}).dump(),
            tsa_name=tlv(CONTEXT_0, tlv(_DIRECTORY_NAME, tbs["subject"].dump())),
            digest_algorithm=digest_algorithm,
            content_type_attribute=content_type.dump(),
            signing_certificate_attribute=signing_certificate.dump(),
            signer_info_head=_VERSION_1 + sid + digest_algorithm_der,
            signature_algorithm=self.signer.algorithm.dump(),
            signed_data_head=_VERSION_3 + tlv(SET, digest_algorithm_der),
            certificates=tlv(CONTEXT_0, set_of(c.public_bytes(Encoding.DER) for c in certificates)),
        )

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
        if policy is not None and policy not in self._encoded.policies:
            raise _Rejection("unaccepted_policy", f"policy {policy} not accepted")
        if len(request["nonce"].contents or b"") > MAX_NONCE_BYTES:
            raise _Rejection("bad_data_format", "the nonce is too long")
        if request["extensions"].native:
            raise _Rejection("unaccepted_extensions", "request extensions are not supported")
        return request

    def _grant(self, request: tsp.TimeStampReq) -> TimestampResult:
        encoded = self._encoded
        serial = self.serials()
        if not 0 < serial < _SERIAL_LIMIT:
            raise ValueError(f"serial number {serial} out of range")
        now = self.clock()
        if now.utcoffset() is None:
            raise ValueError("the TSA clock returned a naive datetime")
        gen_time = now.astimezone(UTC)
        gen_time = gen_time.replace(microsecond=gen_time.microsecond // 1000 * 1000)
        nonce = request["nonce"].native
        tst_info = tlv(
            SEQUENCE,
            _VERSION_1
            + encoded.policies[request["req_policy"].native or self.policy]
            # the request was re-encoded as DER by _check: its imprint is DER as it stands
            + request["message_imprint"].dump()
            + integer(serial)
            + _generalized_time(gen_time)
            + encoded.accuracy
            # ordering: FALSE is the DEFAULT, so absent
            + (b"" if nonce is None else integer(nonce))
            + encoded.tsa_name,
        )
        message_digest = hashlib.new(encoded.digest_algorithm, tst_info).digest()
        attributes = (
            encoded.content_type_attribute,
            tlv(SEQUENCE, _OID_MESSAGE_DIGEST + tlv(SET, tlv(OCTET_STRING, message_digest))),
            encoded.signing_certificate_attribute,
        )
        # DER SET OF: the encodings in ascending order (X.690 §11.6)
        signed_attributes = tlv(SET, set_of(attributes))
        signature = self.signer.sign(signed_attributes)
        # In the SignerInfo the SET OF is tagged [0] IMPLICIT instead of SET.
        signer_info = tlv(
            SEQUENCE,
            encoded.signer_info_head
            + bytes((CONTEXT_0,))
            + signed_attributes[1:]
            + encoded.signature_algorithm
            + tlv(OCTET_STRING, signature),
        )
        encapsulated = tlv(SEQUENCE, _OID_TST_INFO + tlv(CONTEXT_0, tlv(OCTET_STRING, tst_info)))
        signed_data = tlv(
            SEQUENCE,
            encoded.signed_data_head
            + encapsulated
            + (encoded.certificates if request["cert_req"].native else b"")
            + tlv(SET, signer_info),
        )
        token = tlv(SEQUENCE, _OID_SIGNED_DATA + tlv(CONTEXT_0, signed_data))
        der = tlv(SEQUENCE, _GRANTED + token)
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
