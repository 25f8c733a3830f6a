"""The validation policy: which anchors, whether LTV is required, algorithm constraints.

The policy is named in every report, so a verdict can always be traced to the rules
that produced it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

from asn1crypto import crl, x509

from verifier.errors import InvalidPolicyError
from verifier.fetching import FetchPolicy

DEFAULT_POLICY_NAME = "kyso-default"
FORBIDDEN_DIGESTS = frozenset({"sha1", "md5"})


@dataclass(frozen=True, kw_only=True)
class Policy:
    """Rules one validation runs under."""

    name: str
    """Named in the report (``policy``)."""
    trust_anchors: tuple[bytes, ...]
    """DER certificates a signing (or TSA) certificate must chain to."""
    other_certificates: tuple[bytes, ...] = ()
    """DER certificates that only help path building (intermediates); never trusted."""
    require_ltv: bool = False
    """The proof of revocation status must be in the document itself (PAdES B-LT and up):
    :attr:`crls` and fetching are not used. Under every policy a signature whose
    revocation status cannot be determined is INDETERMINATE, never passed."""
    crls: tuple[bytes, ...] = ()
    """DER CRLs of the service's own CAs, read from its database: the status of the
    certificates it issued, with no network round trip. Ignored when :attr:`require_ltv`."""
    fetch: FetchPolicy | None = None
    """Fetch missing certificates and revocation data over the network under this fetch
    policy (``None``, the default: only what the document and the policy carry is used).
    Never used when :attr:`require_ltv`."""
    min_rsa_bits: int = 2048
    """Smallest RSA modulus accepted for a signing certificate's key."""
    min_ec_bits: int = 256
    """Smallest elliptic curve (field size in bits) accepted."""
    forbidden_digests: frozenset[str] = field(default_factory=lambda: FORBIDDEN_DIGESTS)
    """Message digest algorithms (asn1crypto names) that make a signature fail."""

    def __post_init__(self) -> None:
        if not self.trust_anchors:
            raise InvalidPolicyError(f"policy {self.name!r} has no trust anchor")
        for der in (*self.trust_anchors, *self.other_certificates):
            try:
                x509.Certificate.load(der).native  # noqa: B018  (forces a full parse)
            except (ValueError, TypeError) as ex:
                raise InvalidPolicyError(
                    f"policy {self.name!r} holds a certificate that is not DER"
                ) from ex
        for der in self.crls:
            try:
                crl.CertificateList.load(der).native  # noqa: B018
            except (ValueError, TypeError) as ex:
                raise InvalidPolicyError(
                    f"policy {self.name!r} holds a CRL that is not DER"
                ) from ex

    # Parsed once per policy and shared by every document validated under it: asn1crypto
    # objects cache what they parse, so the trust material is decoded a single time.
    @cached_property
    def _anchors(self) -> tuple[x509.Certificate, ...]:
        return tuple(x509.Certificate.load(der) for der in self.trust_anchors)

    @cached_property
    def _others(self) -> tuple[x509.Certificate, ...]:
        return tuple(x509.Certificate.load(der) for der in self.other_certificates)

    @cached_property
    def _crls(self) -> tuple[crl.CertificateList, ...]:
        return tuple(crl.CertificateList.load(der) for der in self.crls)

    @cached_property
    def digest(self) -> str:
        """SHA-256 over everything in the policy, lowercase hex: equal digests, equal rules."""
        digest = hashlib.sha256()
        for part in (
            self.name.encode(),
            *self.trust_anchors,
            b"|",
            *self.other_certificates,
            b"|",
            *self.crls,
            repr(
                (
                    self.require_ltv,
                    self.fetch,
                    self.min_rsa_bits,
                    self.min_ec_bits,
                    sorted(self.forbidden_digests),
                )
            ).encode(),
        ):
            digest.update(hashlib.sha256(part).digest())
        return digest.hexdigest()

    def anchors(self) -> list[x509.Certificate]:
        return list(self._anchors)

    def others(self) -> list[x509.Certificate]:
        return list(self._others)

    def revocation_lists(self) -> list[crl.CertificateList]:
        """The CRLs this policy contributes (none when the document must prove status)."""
        return [] if self.require_ltv else list(self._crls)


def default_policy(
    anchors: Iterable[bytes | x509.Certificate],
    *,
    require_ltv: bool = False,
    crls: Iterable[bytes] = (),
    name: str = DEFAULT_POLICY_NAME,
) -> Policy:
    """The default rules (no fetching, SHA-1/MD5 and RSA < 2048 rejected) over ``anchors``."""
    ders = tuple(a if isinstance(a, bytes) else a.dump() for a in anchors)
    return Policy(name=name, trust_anchors=ders, require_ltv=require_ltv, crls=tuple(crls))
