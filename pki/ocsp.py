"""OCSP responder core (RFC 6960): DER request in, signed DER response out.

Pure functions over a status lookup handed in by the caller: no database, no HTTP, no
cache. Every request is untrusted and bounded; a request that cannot be answered gets an
unsigned ``malformedRequest`` response, never an exception.

Choices the RFC leaves open:

- CertIDs hashed with SHA-1 or SHA-256 are answered; a CertID hashed with anything else
  cannot name a known issuer, so it gets ``unknown`` (the request is still answered).
- Signed requests are accepted and their signature is ignored: the status of a certificate
  is public information, and RFC 6960 §4.1.2 leaves request authentication to the responder.
- A nonce (RFC 8954: 1 to 32 octets) is echoed; a longer one makes the request malformed.
  Non-critical request extensions other than the nonce are ignored, critical ones refused.
"""

from __future__ import annotations

import base64
import binascii
import enum
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import unquote

from asn1crypto import ocsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509

from pki.certificates import from_cryptography
from pki.errors import InvalidInputError
from pki.keysource import X509Signer

MAX_REQUEST_BYTES = 8 * 1024
"""Largest DER request accepted; callers refuse larger bodies with ``malformedRequest``."""

MAX_CERT_IDS = 10
"""Most certificates one request may ask about."""

MAX_NONCE_BYTES = 32
"""Longest nonce echoed (RFC 8954 §2.1)."""

# Base64 of the largest request, each character possibly percent-encoded ("%2B").
MAX_GET_PATH_CHARS = 3 * 4 * -(-MAX_REQUEST_BYTES // 3)

# RFC 5280 §4.1.2.2: positive, at most 20 octets. Anything else was never issued, and
# keeping it away from the lookup spares the database an out-of-range integer.
_SERIAL_LIMIT = 1 << 159

_REVOCATION_REASONS = frozenset(
    {
        "unspecified",
        "key_compromise",
        "ca_compromise",
        "affiliation_changed",
        "superseded",
        "cessation_of_operation",
        "certificate_hold",
        "privilege_withdrawn",
        "aa_compromise",
    }
)

_log = logging.getLogger(__name__)


class CertState(enum.Enum):
    """The three answers OCSP can give about one certificate."""

    GOOD = "good"
    REVOKED = "revoked"
    UNKNOWN = "unknown"


@dataclass(frozen=True, kw_only=True)
class CertStatus:
    """What the status lookup knows about one certificate."""

    state: CertState
    """Good, revoked or unknown (never issued by this issuer, or not known here)."""

    revoked_at: datetime | None = None
    """Revocation time (timezone-aware); required when revoked, absent otherwise."""

    reason: str | None = None
    """asn1crypto ``CRLReason`` name (``key_compromise``, …) of a revocation, if one was given."""

    def __post_init__(self) -> None:
        revoked = self.state is CertState.REVOKED
        if revoked != (self.revoked_at is not None):
            raise InvalidInputError("a revocation time is required exactly when revoked")
        if self.revoked_at is not None and self.revoked_at.utcoffset() is None:
            raise InvalidInputError("the revocation time must be timezone-aware")
        if self.reason is not None and (not revoked or self.reason not in _REVOCATION_REASONS):
            raise InvalidInputError(f"invalid revocation reason {self.reason!r}")


GOOD = CertStatus(state=CertState.GOOD)
UNKNOWN = CertStatus(state=CertState.UNKNOWN)

StatusLookup = Callable[[x509.Certificate, int], CertStatus]
"""``lookup(issuer_certificate, serial_number)``: the status of one certificate."""


@dataclass(frozen=True, kw_only=True)
class OcspResult:
    """One OCSP answer and what a cache needs to know about it."""

    der: bytes
    """The DER ``OCSPResponse`` to send (``application/ocsp-response``), whatever the outcome."""

    status: str
    """The ``OCSPResponseStatus`` name: ``successful``, ``malformed_request`` or
    ``internal_error``."""

    serials: tuple[int, ...] = ()
    """Serial numbers answered for, so that a cache can drop the response when the status
    of one of them changes."""

    cache_until: datetime | None = None
    """Until when ``der`` may be served again for the same request bytes (its nextUpdate);
    ``None`` when it must not be reused: an error, or a response bound to a nonce."""


class _MalformedRequest(Exception):
    pass


@dataclass(frozen=True, kw_only=True)
class OcspResponder:
    """Answers OCSP requests for certificates of ``issuers``, signing with ``signer``."""

    signer: X509Signer
    """The responder's key: a delegated OCSP signing key or the CA key itself."""

    responder_cert: x509.Certificate
    """Certificate of ``signer``'s key (EKU OCSPSigning and ocsp-nocheck when delegated)."""

    issuers: Sequence[x509.Certificate]
    """The CA certificates answered for; CertIDs naming another issuer get ``unknown``."""

    lookup: StatusLookup
    """The status source (the database); called once per CertID with a known issuer."""

    validity: timedelta = timedelta(hours=1)
    """nextUpdate − thisUpdate: how long a relying party may rely on an answer."""

    include_certs: bool = True
    """Put ``responder_cert`` in the response so that clients can verify the signature."""

    _responder_cert: asn1_x509.Certificate = field(init=False, repr=False)
    _issuer_index: Mapping[tuple[str, bytes, bytes], x509.Certificate] = field(
        init=False, repr=False
    )

    def __post_init__(self) -> None:
        responder = from_cryptography(self.responder_cert)
        if responder.public_key.sha1 != self.signer.key_id:
            raise InvalidInputError("the responder certificate is not for the signing key")
        if self.validity <= timedelta(0):
            raise InvalidInputError("the OCSP validity period must be positive")
        index = {}
        for issuer in self.issuers:
            parsed = from_cryptography(issuer)
            index["sha1", parsed.subject.sha1, parsed.public_key.sha1] = issuer
            index["sha256", parsed.subject.sha256, parsed.public_key.sha256] = issuer
        object.__setattr__(self, "_responder_cert", responder)
        object.__setattr__(self, "_issuer_index", index)

    def respond(self, request_der: bytes, *, now: datetime | None = None) -> OcspResult:
        """Answer one DER ``OCSPRequest``; ``now`` (timezone-aware) defaults to the clock.

        Never raises for anything in the request: malformed input gives ``malformedRequest``;
        a failing lookup or signer gives ``internalError`` (logged here).
        """
        if now is not None and now.utcoffset() is None:
            raise InvalidInputError("now must be timezone-aware")
        produced_at = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
        try:
            cert_ids, nonce = _parse_request(request_der)
        except _MalformedRequest as ex:
            _log.info("malformed OCSP request: %s", ex)
            return OcspResult(der=malformed_request_response(), status="malformed_request")
        try:
            return self._sign_response(cert_ids, nonce, produced_at)
        except Exception:
            _log.exception("OCSP response could not be produced")
            return OcspResult(der=internal_error_response(), status="internal_error")

    def _sign_response(
        self, cert_ids: list[ocsp.CertId], nonce: bytes | None, produced_at: datetime
    ) -> OcspResult:
        next_update = produced_at + self.validity
        responses = [
            {
                "cert_id": cert_id,
                "cert_status": _asn1_status(self._status(cert_id)),
                "this_update": produced_at,
                "next_update": next_update,
            }
            for cert_id in cert_ids
        ]
        tbs: dict[str, object] = {
            "responder_id": ocsp.ResponderId(name="by_key", value=self.signer.key_id),
            "produced_at": produced_at,
            "responses": responses,
        }
        if nonce is not None:
            tbs["response_extensions"] = [{"extn_id": "nonce", "extn_value": nonce}]
        response_data = ocsp.ResponseData(tbs)
        basic: dict[str, object] = {
            "tbs_response_data": response_data,
            "signature_algorithm": self.signer.algorithm,
            "signature": self.signer.sign(response_data.dump()),
        }
        if self.include_certs:
            basic["certs"] = [self._responder_cert]
        der = ocsp.OCSPResponse(
            {
                "response_status": "successful",
                "response_bytes": {
                    "response_type": "basic_ocsp_response",
                    "response": ocsp.BasicOCSPResponse(basic),
                },
            }
        ).dump()
        return OcspResult(
            der=der,
            status="successful",
            serials=tuple(cert_id["serial_number"].native for cert_id in cert_ids),
            cache_until=None if nonce is not None else next_update,
        )

    def _status(self, cert_id: ocsp.CertId) -> CertStatus:
        issuer = self._issuer_index.get(
            (
                cert_id["hash_algorithm"]["algorithm"].native,
                cert_id["issuer_name_hash"].native,
                cert_id["issuer_key_hash"].native,
            )
        )
        serial: int = cert_id["serial_number"].native
        if issuer is None or not 0 < serial < _SERIAL_LIMIT:
            return UNKNOWN
        status = self.lookup(issuer, serial)
        if not isinstance(status, CertStatus):
            raise TypeError(f"the status lookup returned {type(status).__name__}")
        return status


def malformed_request_response() -> bytes:
    """The unsigned DER ``OCSPResponse`` with status ``malformedRequest``."""
    return _unsigned_response("malformed_request")


def internal_error_response() -> bytes:
    """The unsigned DER ``OCSPResponse`` with status ``internalError``."""
    return _unsigned_response("internal_error")


def _unsigned_response(status: str) -> bytes:
    der: bytes = ocsp.OCSPResponse({"response_status": status}).dump()
    return der


def parse_get_path(b64: str) -> bytes:
    """The DER request from the last segment of ``GET /pki/ocsp/{b64}`` (RFC 6960 appendix A).

    Accepts URL-encoded or already-decoded base64, the URL-safe alphabet and missing padding.
    Raises :class:`~pki.errors.InvalidInputError` for anything else; the caller answers with
    :func:`malformed_request_response`.
    """
    if len(b64) > MAX_GET_PATH_CHARS:
        raise InvalidInputError("the OCSP GET request is too long")
    # A '+' turned into a space by a form-style decoder somewhere along the way.
    text = unquote(b64).replace(" ", "+")
    try:
        der = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as ex:
        raise InvalidInputError("the OCSP GET request is not base64") from ex
    if not der:
        raise InvalidInputError("the OCSP GET request is empty")
    if len(der) > MAX_REQUEST_BYTES:
        raise InvalidInputError("the OCSP GET request is too long")
    return der


def _parse_request(request_der: bytes) -> tuple[list[ocsp.CertId], bytes | None]:
    if not request_der:
        raise _MalformedRequest("empty request")
    if len(request_der) > MAX_REQUEST_BYTES:
        raise _MalformedRequest(f"request of {len(request_der)} bytes")
    try:
        request = ocsp.OCSPRequest.load(request_der, strict=True)
        # asn1crypto parses lazily and accepts BER: decode every field now, so that no
        # decoding error surfaces later, and re-encode as DER what the signed response echoes.
        request.native  # noqa: B018
        request = ocsp.OCSPRequest.load(request.dump(force=True))
        tbs = request["tbs_request"]
        cert_ids = [single["req_cert"] for single in tbs["request_list"]]
        extensions = list(tbs["request_extensions"])
    except Exception as ex:
        raise _MalformedRequest(f"undecodable request: {ex}") from ex
    if tbs["version"].native != "v1":
        raise _MalformedRequest(f"version {tbs['version'].native}")
    if not 0 < len(cert_ids) <= MAX_CERT_IDS:
        raise _MalformedRequest(f"{len(cert_ids)} CertIDs")
    nonce: bytes | None = None
    seen = set()
    for extension in extensions:
        name = extension["extn_id"].native
        if name in seen:
            raise _MalformedRequest(f"repeated extension {name}")
        seen.add(name)
        if name == "nonce":
            nonce = extension["extn_value"].parsed.native
            if not 0 < len(nonce) <= MAX_NONCE_BYTES:
                raise _MalformedRequest(f"nonce of {len(nonce)} bytes")
        elif extension["critical"].native:
            raise _MalformedRequest(f"unsupported critical extension {name}")
    return cert_ids, nonce


def _asn1_status(status: CertStatus) -> ocsp.CertStatus:
    if status.state is CertState.GOOD:
        return ocsp.CertStatus(name="good", value=ocsp.StatusGood())
    if status.state is CertState.UNKNOWN:
        return ocsp.CertStatus(name="unknown", value=ocsp.StatusUnknown())
    assert status.revoked_at is not None
    revoked: dict[str, object] = {
        "revocation_time": status.revoked_at.astimezone(UTC).replace(microsecond=0)
    }
    if status.reason is not None:
        revoked["revocation_reason"] = status.reason
    return ocsp.CertStatus(name="revoked", value=revoked)
