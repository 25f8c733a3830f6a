"""CMS SignedData for PAdES B-B (CAdES-detached), with per-credential parts encoded once.

The algorithms follow the credential's key: ECDSA P-256 signs over SHA-256, ECDSA P-384
over SHA-384; RSA signs over SHA-256 with PKCS#1 v1.5, or RSASSA-PSS (MGF1 with the same
hash, salt as long as the digest) when the certificate's key is an RSASSA-PSS key or the
credential is prepared with ``rsa_pss=True``.

pyHanko builds its CMS from asn1crypto values, which re-encodes every certificate on every
signature (≈ 50 ms per document on this project's machine). Here everything that does not
change between documents — the certificates, the SignerIdentifier, the
signing-certificate-v2 attribute, the algorithm identifiers — is DER-encoded once, when a
:class:`SigningCredential` is prepared, and kept as bytes. Per document only the
message-digest attribute and the signature are encoded, by hand.

Signed attributes (ETSI EN 319 142-1, PAdES baseline B-B): content-type, message-digest,
signing-certificate-v2. No signing-time: PAdES forbids it in the CMS; the claimed time is
the signature dictionary's ``/M``.

PAdES baseline B-T adds one unsigned attribute, id-aa-signatureTimeStampToken (RFC 3161
Appendix A): a TimeStampToken whose message imprint is SHA-256 of the SignerInfo's signature
value (the octets of the ``signature`` OCTET STRING, not its encoding).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from asn1crypto import algos
from asn1crypto import x509 as asn1_x509

from hsm import BlockingSessionPool, HashAlg, SignScheme
from pki.authority import Credential
from pki.der import CONTEXT_0, CONTEXT_1, OCTET_STRING, SEQUENCE, SET, integer, set_of, tlv
from signer.errors import TimestampFailedError, UnsupportedCredentialError

MIN_RSA_BITS = 2048
"""Smallest RSA key allowed to sign (Vietnamese signature rules: RSA ≥ 2048)."""

Timestamper = Callable[[bytes], bytes]
"""SHA-256 of a signature value → DER TimeStampToken (a ContentInfo) over it. Raises
:class:`~signer.errors.TimestampFailedError` when no token can be had."""

_INTEGER_1 = integer(1)

_OID_SIGNED_DATA = bytes.fromhex("06092a864886f70d010702")  # 1.2.840.113549.1.7.2
_OID_DATA = bytes.fromhex("06092a864886f70d010701")  # 1.2.840.113549.1.7.1
_OID_CONTENT_TYPE = bytes.fromhex("06092a864886f70d010903")  # 1.2.840.113549.1.9.3
_OID_MESSAGE_DIGEST = bytes.fromhex("06092a864886f70d010904")  # 1.2.840.113549.1.9.4
# id-aa-signingCertificateV2, 1.2.840.113549.1.9.16.2.47 (RFC 5035)
_OID_SIGNING_CERTIFICATE_V2 = bytes.fromhex("060b2a864886f70d010910022f")
# id-aa-signatureTimeStampToken, 1.2.840.113549.1.9.16.2.14 (RFC 3161 Appendix A)
_OID_SIGNATURE_TIME_STAMP_TOKEN = bytes.fromhex("060b2a864886f70d010910020e")

# RFC 5754: the SHA-2 AlgorithmIdentifier has absent parameters.
SHA256_ALGORITHM = tlv(SEQUENCE, bytes.fromhex("0609608648016503040201"))
SHA384_ALGORITHM = tlv(SEQUENCE, bytes.fromhex("0609608648016503040202"))
# RFC 5758: ecdsa-with-SHA256/384 have absent parameters.
ECDSA_SHA256_ALGORITHM = tlv(SEQUENCE, bytes.fromhex("06082a8648ce3d040302"))
ECDSA_SHA384_ALGORITHM = tlv(SEQUENCE, bytes.fromhex("06082a8648ce3d040303"))
# RFC 4055: sha256WithRSAEncryption carries NULL parameters.
RSA_SHA256_ALGORITHM = tlv(SEQUENCE, bytes.fromhex("06092a864886f70d01010b0500"))


def _rsassa_pss_algorithm(digest: str) -> bytes:
    """RFC 4055 RSASSA-PSS parameters: the hash, MGF1 with the same hash, salt = digest
    length, trailer field 1 (the default, so omitted)."""
    return bytes(
        algos.SignedDigestAlgorithm(
            {
                "algorithm": "rsassa_pss",
                "parameters": {
                    "hash_algorithm": {"algorithm": digest},
                    "mask_gen_algorithm": {
                        "algorithm": "mgf1",
                        "parameters": {"algorithm": digest},
                    },
                    "salt_length": HashAlg(digest).digest_size,
                },
            }
        ).dump()
    )


_CONTENT_TYPE_ATTRIBUTE = tlv(SEQUENCE, _OID_CONTENT_TYPE + tlv(SET, _OID_DATA))


def _message_digest_head(digest_size: int) -> bytes:
    """Everything of the message-digest attribute but the digest bytes at its end."""
    attribute = tlv(SEQUENCE, _OID_MESSAGE_DIGEST + tlv(SET, tlv(OCTET_STRING, bytes(digest_size))))
    return attribute[:-digest_size]


_ENCAP_CONTENT_INFO = tlv(SEQUENCE, _OID_DATA)  # detached: no eContent


def _signing_certificate_v2(certificate: asn1_x509.Certificate, der: bytes) -> bytes:
    """The signing-certificate-v2 attribute: one ESSCertIDv2 of the signer's certificate,
    hash SHA-256 (the DER default, so the algorithm is omitted), with IssuerSerial."""
    tbs = certificate["tbs_certificate"]
    # issuer and serial as they are in the certificate, not re-encoded
    general_names = tlv(SEQUENCE, tlv(0xA4, tbs["issuer"].dump()))
    issuer_serial = tlv(SEQUENCE, general_names + tbs["serial_number"].dump())
    ess_cert_id = tlv(SEQUENCE, tlv(OCTET_STRING, hashlib.sha256(der).digest()) + issuer_serial)
    value = tlv(SEQUENCE, tlv(SEQUENCE, ess_cert_id))
    return tlv(SEQUENCE, _OID_SIGNING_CERTIFICATE_V2 + tlv(SET, value))


def _signature_timestamp_attributes(token: bytes) -> bytes:
    """SignerInfo.unsignedAttrs ([1] IMPLICIT SET OF) holding one signature timestamp."""
    attribute = tlv(SEQUENCE, _OID_SIGNATURE_TIME_STAMP_TOKEN + tlv(SET, token))
    return tlv(CONTEXT_1, attribute)


def _algorithms(
    credential: Credential, certificate: asn1_x509.Certificate, rsa_pss: bool
) -> tuple[SignScheme, HashAlg, bytes]:
    """Signature scheme, digest and SignerInfo.signatureAlgorithm (DER) for the key."""
    public_key = certificate.public_key
    algorithm = public_key.algorithm
    if algorithm == "ec":
        curve = public_key.curve[1]
        if curve == "secp256r1":
            return SignScheme.ECDSA, HashAlg.SHA256, ECDSA_SHA256_ALGORITHM
        if curve == "secp384r1":
            return SignScheme.ECDSA, HashAlg.SHA384, ECDSA_SHA384_ALGORITHM
        raise UnsupportedCredentialError(
            f"credential {credential.id} has an ECDSA key on {curve}; PAdES signing here "
            "needs P-256 or P-384"
        )
    if algorithm in ("rsa", "rsassa_pss"):
        if public_key.bit_size < MIN_RSA_BITS:
            raise UnsupportedCredentialError(
                f"credential {credential.id} has a {public_key.bit_size}-bit RSA key; at "
                f"least {MIN_RSA_BITS} bits are required"
            )
        if rsa_pss or algorithm == "rsassa_pss":
            return SignScheme.RSA_PSS, HashAlg.SHA256, _rsassa_pss_algorithm("sha256")
        return SignScheme.RSA_PKCS1V15, HashAlg.SHA256, RSA_SHA256_ALGORITHM
    raise UnsupportedCredentialError(
        f"credential {credential.id} has a {algorithm} key; PAdES signing here needs ECDSA or RSA"
    )


def _max_signature_size(certificate: asn1_x509.Certificate, scheme: SignScheme) -> int:
    bit_size: int = certificate.public_key.bit_size
    if scheme is SignScheme.ECDSA:
        # ECDSA-Sig-Value with both INTEGERs at their longest (a leading 0x00)
        order_bytes = (bit_size + 7) // 8
        integer = tlv(0x02, bytes(order_bytes + 1))
        return len(tlv(SEQUENCE, integer + integer))
    return (bit_size + 7) // 8


# -- the prepared credential ---------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SigningCredential:
    """A credential ready for PAdES B-B: every constant part of the CMS already encoded.

    Plain bytes only, so it can be shared between threads and pickled to worker processes.
    """

    credential_id: int
    """The pki credential it was prepared from (to check it is still usable)."""
    key_id: bytes
    """CKA_ID of the private key on the HSM."""
    scheme: SignScheme
    """ECDSA, RSA PKCS#1 v1.5 or RSASSA-PSS."""
    hash_alg: HashAlg
    """The digest of the document and of the signed attributes: SHA-256, or SHA-384 for
    ECDSA P-384."""
    certificate: bytes
    """The signer's certificate, DER."""
    signer_name: str
    """The subject's common name, for the signature dictionary's ``/Name``."""
    max_cms_size: int
    """Upper bound of the CMS length in bytes: what the PDF reserves (hex: twice that).
    Includes a signature timestamp of up to :attr:`timestamp_reserve` bytes."""
    timestamp_reserve: int
    """Largest TimeStampToken (DER bytes) the reserved space holds; 0: B-B only."""
    signature_algorithm: bytes
    """SignerInfo.signatureAlgorithm, DER."""
    message_digest_head: bytes
    """The message-digest attribute up to its digest bytes, DER."""
    signer_info_head: bytes
    """SignerInfo version, sid (IssuerAndSerialNumber) and digestAlgorithm, DER."""
    fixed_attributes: tuple[bytes, ...]
    """The signed attributes that are the same for every document, DER."""
    signed_data_head: bytes
    """SignedData version, digestAlgorithms, encapContentInfo and certificates, DER."""

    @classmethod
    def prepare(
        cls,
        credential: Credential,
        chain: Sequence[asn1_x509.Certificate],
        *,
        timestamp_reserve: int = 0,
        rsa_pss: bool = False,
    ) -> SigningCredential:
        """Encode once what every signature of ``credential`` shares. ``chain`` is what to
        embed after the signer's certificate (Kyso's CA: :meth:`Authority.internal_chain`;
        an external certificate: :attr:`Credential.chain`).

        ``timestamp_reserve`` (bytes) makes room for a B-T signature timestamp token of at
        most that size (:func:`signer.timestamps.timestamp_reserve` measures one); a larger
        token is refused when signing rather than overflowing ``/Contents``. ``rsa_pss``
        signs with RSASSA-PSS rather than PKCS#1 v1.5 (RSA keys only; always so for a
        certificate whose key is an RSASSA-PSS key)."""
        if timestamp_reserve < 0:
            raise ValueError("timestamp_reserve must not be negative")
        certificate = credential.certificate
        if certificate is None:
            raise UnsupportedCredentialError(f"credential {credential.id} has no certificate")
        scheme, hash_alg, signature_algorithm = _algorithms(credential, certificate, rsa_pss)
        digest_algorithm = SHA384_ALGORITHM if hash_alg is HashAlg.SHA384 else SHA256_ALGORITHM
        der = certificate.dump()
        tbs = certificate["tbs_certificate"]
        sid = tlv(SEQUENCE, tbs["issuer"].dump() + tbs["serial_number"].dump())
        certificates = [der, *(issuer.dump() for issuer in chain if issuer.dump() != der)]
        signed_data_head = (
            _INTEGER_1
            + tlv(SET, digest_algorithm)
            + _ENCAP_CONTENT_INFO
            + tlv(CONTEXT_0, set_of(certificates))
        )
        subject = certificate.subject.native
        prepared = cls(
            credential_id=credential.id,
            key_id=bytes.fromhex(credential.key_id),
            scheme=scheme,
            hash_alg=hash_alg,
            certificate=der,
            signer_name=str(subject.get("common_name") or subject.get("organization_name", "")),
            max_cms_size=0,  # measured below, on a longest-possible signature
            timestamp_reserve=timestamp_reserve,
            signature_algorithm=signature_algorithm,
            message_digest_head=_message_digest_head(hash_alg.digest_size),
            signer_info_head=_INTEGER_1 + sid + digest_algorithm,
            fixed_attributes=(
                _CONTENT_TYPE_ATTRIBUTE,
                _signing_certificate_v2(certificate, der),
            ),
            signed_data_head=signed_data_head,
        )
        # A placeholder of exactly the reserved size: the DER lengths around a smaller token
        # are never longer, so the bound holds for every token that fits the reserve.
        longest = prepared.assemble(
            prepared.signed_attributes(bytes(hash_alg.digest_size)),
            bytes(_max_signature_size(certificate, scheme)),
            _signature_timestamp_attributes(bytes(timestamp_reserve)) if timestamp_reserve else b"",
        )
        return replace(prepared, max_cms_size=len(longest))

    def signed_attributes(self, document_digest: bytes) -> bytes:
        """DER of the signed attributes (tagged SET OF, as signed) for one document."""
        if len(document_digest) != self.hash_alg.digest_size:
            raise ValueError(f"the document digest must be {self.hash_alg.value}")
        attributes = (*self.fixed_attributes, self.message_digest_head + document_digest)
        return tlv(SET, set_of(attributes))

    def assemble(
        self, signed_attributes: bytes, signature: bytes, unsigned_attributes: bytes = b""
    ) -> bytes:
        """The ContentInfo around one SignerInfo, DER. ``unsigned_attributes`` is the
        encoded ``[1] unsignedAttrs`` field, or empty."""
        # In the SignerInfo the SET OF is tagged [0] IMPLICIT instead of SET.
        signer_info = tlv(
            SEQUENCE,
            self.signer_info_head
            + bytes((CONTEXT_0,))
            + signed_attributes[1:]
            + self.signature_algorithm
            + tlv(OCTET_STRING, signature)
            + unsigned_attributes,
        )
        signed_data = tlv(SEQUENCE, self.signed_data_head + tlv(SET, signer_info))
        return tlv(SEQUENCE, _OID_SIGNED_DATA + tlv(CONTEXT_0, signed_data))

    def sign(
        self,
        document_digest: bytes,
        pool: BlockingSessionPool,
        *,
        timestamper: Timestamper | None = None,
    ) -> bytes:
        """The CMS (DER) of a PAdES B-B signature over ``document_digest`` (the
        :attr:`hash_alg` digest of the PDF's byte ranges), signed on the HSM; with
        ``timestamper``, B-T: the signature value is timestamped and the token added as an
        unsigned attribute."""
        if timestamper is not None and not self.timestamp_reserve:
            raise TimestampFailedError(
                "this credential was prepared without room for a timestamp (timestamp_reserve)"
            )
        signed_attributes = self.signed_attributes(document_digest)
        signature = pool.sign_digest(
            self.key_id,
            hashlib.new(self.hash_alg.value, signed_attributes).digest(),
            scheme=self.scheme,
            hash_alg=self.hash_alg,
        )
        if timestamper is None:
            return self.assemble(signed_attributes, signature)
        token = timestamper(hashlib.sha256(signature).digest())
        if len(token) > self.timestamp_reserve:
            raise TimestampFailedError(
                f"the timestamp token has {len(token)} bytes, more than the "
                f"{self.timestamp_reserve} reserved"
            )
        return self.assemble(signed_attributes, signature, _signature_timestamp_attributes(token))
