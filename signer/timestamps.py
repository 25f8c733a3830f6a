"""Signature timestamps for PAdES B-T from Kyso's own TSA, in process (no HTTP).

:class:`TsaTimestamper` turns a TSA's ``respond`` (DER ``TimeStampReq`` in, a
:class:`~pki.tsa.TimestampResult` out) into the :data:`~signer.cms.Timestamper` that
:meth:`SigningCredential.sign` calls. The answer is checked as if it came from elsewhere:
granted, the imprint and the nonce echoed; anything else is a
:class:`~signer.errors.TimestampFailedError` and no signature is produced.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from asn1crypto import cms, tsp

from pki.tsa import TimestampResult
from signer.cms import Timestamper
from signer.errors import TimestampFailedError

TOKEN_SIZE_MARGIN = 64
"""Bytes added to a measured token to bound every later one from the same TSA.

Between two tokens of one TSA (same certificates, policy, accuracy, key) only these vary:
the serial number (≤ 20 content bytes, RFC 3161's 160 bits), genTime's fraction of a second
(DER drops trailing zeros: ≤ 4 bytes), the nonce (≤ 1 byte, see :func:`_nonce`), an ECDSA
signature (≤ 2 bytes) and the DER length octets of the ≤ 8 structures enclosing them
(≤ 1 byte each): 35 bytes at most."""

_SHA256 = "sha256"


def _nonce() -> int:
    # 62 random bits under a set bit 62: always an 8-byte positive INTEGER.
    return secrets.randbits(62) | (1 << 62)


@dataclass(frozen=True, kw_only=True)
class TsaTimestamper:
    """A :data:`~signer.cms.Timestamper` backed by a TSA called in process."""

    respond: Callable[[bytes], TimestampResult]
    """The TSA: :meth:`pki.tsa.TimeStampAuthority.respond` (``Authority.timestamp_authority``)."""

    def __call__(self, digest: bytes) -> bytes:
        """The DER TimeStampToken (ContentInfo) over ``digest``, SHA-256 of a signature."""
        if len(digest) != hashlib.sha256().digest_size:
            raise ValueError("the digest to timestamp must be SHA-256")
        nonce = _nonce()
        request = tsp.TimeStampReq(
            {
                "version": "v1",
                "message_imprint": {
                    "hash_algorithm": {"algorithm": _SHA256},
                    "hashed_message": digest,
                },
                "nonce": nonce,
                "cert_req": True,
            }
        ).dump()
        result = self.respond(request)
        if not result.granted:
            raise TimestampFailedError(
                f"the TSA refused the timestamp request ({result.failure or 'no reason given'})"
            )
        try:
            response = tsp.TimeStampResp.load(result.der)
            token: cms.ContentInfo = response["time_stamp_token"]
            tst_info = token["content"]["encap_content_info"]["content"].parsed
            imprint = tst_info["message_imprint"]
            echoed = (
                response["status"]["status"].native == "granted"
                and imprint["hash_algorithm"]["algorithm"].native == _SHA256
                and imprint["hashed_message"].native == digest
                and tst_info["nonce"].native == nonce
            )
            der: bytes = token.dump()
        except (ValueError, TypeError, KeyError) as ex:
            raise TimestampFailedError("the TSA's answer is not a TimeStampResp") from ex
        if not echoed:
            raise TimestampFailedError("the TSA's token does not answer the request sent")
        return der


def timestamp_reserve(timestamper: Timestamper, *, margin: int = TOKEN_SIZE_MARGIN) -> int:
    """Bytes to reserve for ``timestamper``'s tokens: one real token (over a dummy digest)
    plus ``margin`` (see :data:`TOKEN_SIZE_MARGIN`). For
    :meth:`SigningCredential.prepare`'s ``timestamp_reserve``."""
    return len(timestamper(bytes(hashlib.sha256().digest_size))) + margin
