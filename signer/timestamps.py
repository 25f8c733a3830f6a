"""Signature timestamps for PAdES B-T from Kyso's own TSA, in process (no HTTP).

:class:`TsaTimestamper` turns a TSA's ``respond`` (DER ``TimeStampReq`` in, a
:class:`~pki.tsa.TimestampResult` out) into the :data:`~signer.cms.Timestamper` that
:meth:`SigningCredential.sign` calls. The answer is checked as if it came from elsewhere:
granted, a TSTInfo token, the imprint and the nonce echoed; anything else is a
:class:`~signer.errors.TimestampFailedError` and no signature is produced.

This runs once per B-T/B-LT/B-LTA signature, so the request is encoded and the answer read
by hand (a few DER headers, no asn1crypto values): the token is sliced out of the
response as it was sent, never re-encoded.
"""

from __future__ import annotations

import hashlib
import secrets
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from pki.der import (
    CONTEXT_0,
    GENERALIZED_TIME,
    INTEGER,
    OBJECT_IDENTIFIER,
    OCTET_STRING,
    SEQUENCE,
    SET,
)
from pki.tsa import TimestampResult
from signer.cms import SHA256_ALGORITHM, Timestamper
from signer.errors import TimestampFailedError

TOKEN_SIZE_MARGIN = 64
"""Bytes added to a measured token to bound every later one from the same TSA.

Between two tokens of one TSA (same certificates, policy, accuracy, key) only these vary:
the serial number (≤ 20 content bytes, RFC 3161's 160 bits), genTime's fraction of a second
(DER drops trailing zeros: ≤ 4 bytes), the nonce (≤ 1 byte, see :func:`_nonce`), an ECDSA
signature (≤ 2 bytes) and the DER length octets of the ≤ 8 structures enclosing them
(≤ 1 byte each): 35 bytes at most."""

_BOOLEAN = 0x01
_DIGEST_SIZE = 32
_NONCE_SIZE = 8
_OID_SIGNED_DATA = bytes.fromhex("06092a864886f70d010702")  # 1.2.840.113549.1.7.2
_OID_TST_INFO = bytes.fromhex("060b2a864886f70d0109100104")  # 1.2.840.113549.1.9.16.1.4

# MessageImprint ::= SEQUENCE { hashAlgorithm (SHA-256, absent parameters), hashedMessage }
_IMPRINT_HEAD = (
    bytes((SEQUENCE, len(SHA256_ALGORITHM) + 2 + _DIGEST_SIZE))
    + SHA256_ALGORITHM
    + bytes((OCTET_STRING, _DIGEST_SIZE))
)
_NONCE_HEAD = bytes((INTEGER, _NONCE_SIZE))
_VERSION_1 = bytes((INTEGER, 1, 1))
_CERT_REQ = bytes((_BOOLEAN, 1, 0xFF))
# TimeStampReq ::= SEQUENCE { version, messageImprint, nonce, certReq TRUE }: every part of
# a fixed length, so the whole request is too.
_REQUEST_LENGTH = (
    len(_VERSION_1 + _IMPRINT_HEAD + _NONCE_HEAD + _CERT_REQ) + _DIGEST_SIZE + _NONCE_SIZE
)
_REQUEST_HEAD = bytes((SEQUENCE, _REQUEST_LENGTH)) + _VERSION_1


def _nonce() -> int:
    # 62 random bits under a set bit 62: always an 8-byte positive INTEGER.
    return secrets.randbits(62) | (1 << 62)


class _Elements:
    """Reads the elements of one DER constructed value in order. Anything but the element
    expected (another tag, a length past the end, indefinite lengths) is a ValueError."""

    def __init__(self, der: bytes, start: int, end: int) -> None:
        self._der = der
        self._at = start
        self._end = end

    def _next(self) -> tuple[int, int, int]:
        """The tag, contents start and end of the next element."""
        der, at = self._der, self._at
        if at + 2 > self._end:
            raise ValueError("a DER element is missing")
        length, start = der[at + 1], at + 2
        if length & 0x80:
            size = length & 0x7F
            if not 0 < size <= 4:
                raise ValueError("not a DER length")
            length = int.from_bytes(der[start : start + size], "big")
            start += size
        if start + length > self._end:
            raise ValueError("a DER element runs past its parent")
        return der[at], start, start + length

    def at_end(self) -> bool:
        return self._at == self._end

    def peek(self) -> int | None:
        """The tag of the next element, None at the end."""
        return None if self.at_end() else self._der[self._at]

    def take(self, tag: int) -> bytes:
        """The next element, whole (header included), which must have ``tag``."""
        found, _, end = self._next()
        if found != tag:
            raise ValueError(f"DER tag {found:#04x} where {tag:#04x} was expected")
        element = self._der[self._at : end]
        self._at = end
        return element

    def enter(self, tag: int) -> _Elements:
        """The elements inside the next element, which must have ``tag``."""
        found, start, end = self._next()
        if found != tag:
            raise ValueError(f"DER tag {found:#04x} where {tag:#04x} was expected")
        self._at = end
        return _Elements(self._der, start, end)


def _answered_token(response: bytes, imprint: bytes, nonce: bytes) -> bytes:
    """The TimeStampToken (ContentInfo, DER as sent) of a granted ``response`` whose TSTInfo
    echoes ``imprint`` and ``nonce`` (both DER); TimestampFailedError otherwise."""
    try:
        outer = _Elements(response, 0, len(response))
        body = outer.enter(SEQUENCE)
        if not outer.at_end():
            raise ValueError("data after the TimeStampResp")
        status = body.enter(SEQUENCE)
        granted = status.take(INTEGER) == bytes((INTEGER, 1, 0))  # PKIStatus granted(0)
        token = body.take(SEQUENCE)
        if not body.at_end():
            raise ValueError("data after the TimeStampToken")
        content_info = _Elements(token, 0, len(token)).enter(SEQUENCE)
        if content_info.take(OBJECT_IDENTIFIER) != _OID_SIGNED_DATA:
            raise ValueError("the token is not a SignedData")
        signed_data = content_info.enter(CONTEXT_0).enter(SEQUENCE)
        signed_data.take(INTEGER)  # version
        signed_data.take(SET)  # digestAlgorithms
        encapsulated = signed_data.enter(SEQUENCE)
        is_tst_info = encapsulated.take(OBJECT_IDENTIFIER) == _OID_TST_INFO
        tst_info = encapsulated.enter(CONTEXT_0).enter(OCTET_STRING).enter(SEQUENCE)
        tst_info.take(INTEGER)  # version
        tst_info.take(OBJECT_IDENTIFIER)  # policy
        echoed_imprint = tst_info.take(SEQUENCE)
        tst_info.take(INTEGER)  # serialNumber
        tst_info.take(GENERALIZED_TIME)
        if tst_info.peek() == SEQUENCE:
            tst_info.take(SEQUENCE)  # accuracy
        if tst_info.peek() == _BOOLEAN:
            tst_info.take(_BOOLEAN)  # ordering
        echoed_nonce = tst_info.take(INTEGER) if tst_info.peek() == INTEGER else None
    except ValueError as ex:
        raise TimestampFailedError("the TSA's answer is not a TimeStampResp") from ex
    if not (granted and is_tst_info and echoed_imprint == imprint and echoed_nonce == nonce):
        raise TimestampFailedError("the TSA's token does not answer the request sent")
    return token


@dataclass(frozen=True, kw_only=True)
class TsaTimestamper:
    """A :data:`~signer.cms.Timestamper` backed by a TSA: Kyso's own, called in process, or
    an external one over HTTP (:func:`http_tsa`)."""

    respond: Callable[[bytes], TimestampResult]
    """The TSA: :meth:`pki.tsa.TimeStampAuthority.respond` (``Authority.timestamp_authority``)
    or :func:`http_tsa`."""

    def __call__(self, digest: bytes) -> bytes:
        """The DER TimeStampToken (ContentInfo) over ``digest``, SHA-256 of a signature."""
        if len(digest) != _DIGEST_SIZE:
            raise ValueError("the digest to timestamp must be SHA-256")
        imprint = _IMPRINT_HEAD + digest
        nonce = _NONCE_HEAD + _nonce().to_bytes(_NONCE_SIZE, "big")
        result = self.respond(_REQUEST_HEAD + imprint + nonce + _CERT_REQ)
        if not result.granted:
            raise TimestampFailedError(
                f"the TSA refused the timestamp request ({result.failure or 'no reason given'})"
            )
        return _answered_token(result.der, imprint, nonce)


MAX_TSA_RESPONSE = 64 * 1024
"""Largest answer read from an external TSA, in bytes."""


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # the configured URL answers, or the request fails


_NO_REDIRECTS = urllib.request.build_opener(_RefuseRedirects)


def http_tsa(
    url: str, *, timeout: float = 10.0, max_bytes: int = MAX_TSA_RESPONSE
) -> Callable[[bytes], TimestampResult]:
    """An external RFC 3161 TSA over HTTP(S) (RFC 3161 §3.4: POST
    ``application/timestamp-query``). The URL is the operator's configuration, never taken
    from a document; the answer is bounded in size and time, and :class:`TsaTimestamper`
    checks it like any other (granted, imprint and nonce echoed)."""
    if not url.startswith(("https://", "http://")):
        raise ValueError("the TSA URL must be http(s)")

    def respond(request: bytes) -> TimestampResult:
        post = urllib.request.Request(  # noqa: S310 - http(s) only, checked above
            url,
            data=request,
            method="POST",
            headers={"Content-Type": "application/timestamp-query"},
        )
        try:
            with _NO_REDIRECTS.open(post, timeout=timeout) as answer:
                body: bytes = answer.read(max_bytes + 1)
                content_type = answer.headers.get_content_type()
        except (urllib.error.URLError, OSError, ValueError) as ex:
            raise TimestampFailedError(f"the TSA at {url} did not answer: {ex}") from ex
        if len(body) > max_bytes:
            raise TimestampFailedError(f"the TSA at {url} answered more than {max_bytes} bytes")
        if content_type != "application/timestamp-reply":
            raise TimestampFailedError(f"the TSA at {url} answered {content_type}, not a timestamp")
        # granted is checked on the answer itself, with the imprint and the nonce
        return TimestampResult(der=body, granted=True)

    return respond


def timestamp_reserve(timestamper: Timestamper, *, margin: int = TOKEN_SIZE_MARGIN) -> int:
    """Bytes to reserve for ``timestamper``'s tokens: one real token (over a dummy digest)
    plus ``margin`` (see :data:`TOKEN_SIZE_MARGIN`). For
    :meth:`SigningCredential.prepare`'s ``timestamp_reserve``."""
    return len(timestamper(bytes(hashlib.sha256().digest_size))) + margin
