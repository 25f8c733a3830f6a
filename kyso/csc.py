"""What the Cloud Signature Consortium API does, once for both versions (v1 1.0.4.0 and v2
2.0.0.2, which differ in field names only): the credentials a caller holds, their
description, authorisation (a SAD pinned to the hashes: SCAL 2), hash signing on the HSM,
document signing through Kyso's PAdES signer, and timestamps from Kyso's TSA.

Blocking (database, argon2, HSM): the routes call it from a worker thread.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from typing import Any

from asn1crypto import algos, tsp

from hsm import BlockingSessionPool, HashAlg, SignScheme
from kyso.access.activation import Binding, IssuedSad, SignatureActivation
from kyso.access.model import Principal, Role
from kyso.access.store import AccessStore
from kyso.errors import KysoError
from pki.authority import Authority, Credential
from pki.store import CredentialKind, CredentialStatus
from signer.service import SigningService

HASH_OIDS = {
    algos.DigestAlgorithmId(h.value).dotted: h
    for h in (HashAlg.SHA256, HashAlg.SHA384, HashAlg.SHA512)
}
"""Digest algorithm OIDs a client may name, and Kyso's hash for each."""

SIGN_ALGOS = {
    "ec": {
        algos.SignedDigestAlgorithmId(f"{h}_ecdsa").dotted: HashAlg(h)
        for h in ("sha256", "sha384", "sha512")
    },
    "rsa": {
        algos.SignedDigestAlgorithmId(f"{h}_rsa").dotted: HashAlg(h)
        for h in ("sha256", "sha384", "sha512")
    },
}
"""Signature algorithm OIDs per key family (ECDSA, RSA PKCS#1 v1.5), with their hash."""

LEVELS = {"AdES-B-B": "B-B", "AdES-B-T": "B-T", "AdES-B-LT": "B-LT", "AdES-B-LTA": "B-LTA"}
"""CSC v2 ``conformance_level`` → Kyso's PAdES level."""

MAX_DOCUMENT_BYTES = 16 * 1024 * 1024


class CscError(KysoError):
    """The request cannot be answered as asked (CSC ``invalid_request``)."""

    code = "csc.invalid_request"


@dataclass(frozen=True, kw_only=True)
class Description:
    """A credential as ``credentials/info`` describes it, in neutral terms."""

    credential: Credential
    algorithms: list[str]
    key_bits: int
    curve: str | None
    certificates: list[bytes]
    """The signer's certificate first, then its chain."""
    pin: bool
    otp: bool
    cert_info: dict[str, str]


class CscService:
    """The CSC operations over Kyso's access control, PKI, HSM and signer."""

    def __init__(
        self,
        *,
        access: AccessStore,
        activation: SignatureActivation,
        authority: Authority,
        pool: BlockingSessionPool,
        signer: SigningService | None,
    ) -> None:
        self._access = access
        self._activation = activation
        self._authority = authority
        self._pool = pool
        self._signer = signer

    def held(self, principal: Principal) -> list[Credential]:
        """The active signing credentials ``principal`` may activate: an officer's own, the
        seals of a clerk's unit, the seals bound to a service client."""
        if principal.kind == "client":
            client = self._access.client(principal.id.removeprefix("client:"))
            if client is None:
                return []
            bound = self._activation.bound_seals(client.id)
            found = [c for c in self._authority.credentials() if c.id in bound]
        else:
            user = self._access.user(principal.id.removeprefix("user:"))
            if user.role is Role.OFFICER and user.person_id is not None:
                found = [
                    c
                    for c in self._authority.credentials(person_id=user.person_id)
                    if c.kind is CredentialKind.OFFICER
                ]
            elif user.role is Role.CLERK and user.unit_id is not None:
                found = [
                    c
                    for c in self._authority.credentials(unit_id=user.unit_id)
                    if c.kind is CredentialKind.SEAL
                ]
            else:
                found = []
        return [c for c in found if c.status is CredentialStatus.ACTIVE]

    def credential(self, principal: Principal, credential_id: str) -> Credential:
        for credential in self.held(principal):
            if str(credential.id) == credential_id:
                return credential
        raise CscError(f"no credential {credential_id[:32]!r} for this caller")

    def describe(self, principal: Principal, credential_id: str, *, chain: bool) -> Description:
        credential = self.credential(principal, credential_id)
        certificate = credential.certificate
        if certificate is None:
            raise CscError("the credential has no certificate")
        key = certificate.public_key
        others = list(credential.chain or self._authority.internal_chain()) if chain else []
        automated = principal.kind == "client"
        validity = certificate["tbs_certificate"]["validity"]
        return Description(
            credential=credential,
            algorithms=sorted(SIGN_ALGOS[_family(credential)]),
            key_bits=key.bit_size,
            curve=key["algorithm"]["parameters"].chosen.dotted if key.algorithm == "ec" else None,
            certificates=[certificate.dump(), *(c.dump() for c in others)],
            pin=not automated,
            otp=not automated and self._activation.policy(credential.id).value == "pin+otp",
            cert_info={
                "issuerDN": certificate.issuer.human_friendly,
                "serialNumber": str(certificate.serial_number),
                "subjectDN": certificate.subject.human_friendly,
                "validFrom": validity["not_before"].native.strftime("%Y%m%d%H%M%SZ"),
                "validTo": validity["not_after"].native.strftime("%Y%m%d%H%M%SZ"),
            },
        )

    def authorize(
        self,
        principal: Principal,
        credential_id: str,
        hashes_b64: list[str],
        *,
        count: int,
        pin: str | None,
        otp: str | None,
    ) -> IssuedSad:
        """A SAD for ``count`` signatures over exactly ``hashes_b64`` (SCAL 2)."""
        credential = self.credential(principal, credential_id)
        if not hashes_b64:
            raise CscError("this service binds a SAD to the hashes it signs (SCAL 2): send them")
        hashes = decode_hashes(hashes_b64, None)
        return self._activation.authorize(
            principal,
            credential.id,
            Binding(hashes=hashes, hash_algorithm=_hash_of_size(hashes).value),
            count=count,
            pin=pin,
            otp=otp,
        )

    def sign_hashes(
        self,
        principal: Principal,
        credential_id: str,
        sad: str,
        hashes_b64: list[str],
        *,
        sign_algo: str,
        hash_algo: str | None,
    ) -> list[bytes]:
        """The signatures (DER ECDSA or PKCS#1 v1.5) of the hashes the SAD was bound to."""
        credential = self.credential(principal, credential_id)
        family = _family(credential)
        algorithm = SIGN_ALGOS[family].get(sign_algo)
        if algorithm is None:
            raise CscError(f"signAlgo {sign_algo[:64]} is not one of this key's algorithms")
        if hash_algo is not None and HASH_OIDS.get(hash_algo) is not algorithm:
            raise CscError("the hash algorithm does not match signAlgo")
        hashes = decode_hashes(hashes_b64, algorithm)
        self._authority.usable_credential(credential.id)
        self._activation.consume(
            principal, sad, credential.id, Binding(hashes=hashes, hash_algorithm=algorithm.value)
        )
        scheme = SignScheme.ECDSA if family == "ec" else SignScheme.RSA_PKCS1V15
        key_id = bytes.fromhex(credential.key_id)
        return [
            self._pool.sign_digest(key_id, digest, scheme=scheme, hash_alg=algorithm)
            for digest in hashes
        ]

    def sign_documents(
        self,
        principal: Principal,
        credential_id: str,
        sad: str,
        documents: list[bytes],
        *,
        level: str,
    ) -> list[bytes]:
        """The PDFs signed by Kyso's PAdES signer at ``level``; the SAD must have been bound
        to their SHA-256 digests (the documents as sent)."""
        if self._signer is None:
            raise CscError("document signing is not available in this process")
        credential = self.credential(principal, credential_id)
        if any(len(d) > MAX_DOCUMENT_BYTES for d in documents):
            raise CscError(f"a document may have at most {MAX_DOCUMENT_BYTES} bytes")
        digests = tuple(hashlib.sha256(d).digest() for d in documents)
        self._activation.consume(
            principal, sad, credential.id, Binding(hashes=digests, hash_algorithm="sha256")
        )
        return [self._signer.sign(pdf, credential.id, level=level) for pdf in documents]  # type: ignore[arg-type]

    def timestamp(self, hash_b64: str, hash_algo: str, nonce_hex: str | None) -> bytes:
        """A DER RFC 3161 timestamp token from Kyso's TSA over ``hash_b64``."""
        algorithm = HASH_OIDS.get(hash_algo)
        if algorithm is None:
            raise CscError("the hash algorithm must be SHA-256, SHA-384 or SHA-512")
        (digest,) = decode_hashes([hash_b64], algorithm)
        try:
            nonce = int(nonce_hex, 16) if nonce_hex else None
        except ValueError as ex:
            raise CscError("the nonce is hexadecimal") from ex
        request = tsp.TimeStampReq(
            {
                "version": "v1",
                "message_imprint": {
                    "hash_algorithm": {"algorithm": algorithm.value},
                    "hashed_message": digest,
                },
                "nonce": nonce,
                "cert_req": True,
            }
        )
        reply = self._authority.timestamp_authority().respond(request.dump())
        if not reply.granted:
            raise CscError("the timestamp authority refused the request")
        token: Any = tsp.TimeStampResp.load(reply.der)["time_stamp_token"]
        return bytes(token.dump())


def decode_hashes(values: list[str], algorithm: HashAlg | None) -> tuple[bytes, ...]:
    try:
        decoded = tuple(base64.b64decode(v, validate=True) for v in values)
    except (binascii.Error, ValueError) as ex:
        raise CscError("every hash is base64") from ex
    if algorithm is not None and any(len(h) != algorithm.digest_size for h in decoded):
        raise CscError(f"every {algorithm.value} hash is {algorithm.digest_size} bytes")
    return decoded


def _hash_of_size(values: tuple[bytes, ...]) -> HashAlg:
    sizes = {len(v) for v in values}
    for algorithm in (HashAlg.SHA256, HashAlg.SHA384, HashAlg.SHA512):
        if sizes == {algorithm.digest_size}:
            return algorithm
    raise CscError("the hashes must all be SHA-256, SHA-384 or SHA-512 digests")


def _family(credential: Credential) -> str:
    certificate = credential.certificate
    assert certificate is not None
    return "ec" if certificate.public_key.algorithm == "ec" else "rsa"
