"""Test certificate chains built with ``cryptography`` alone: a software CA that issues
OCSP responder, TSA and end-entity certificates.

Independent of :mod:`pki`'s own certificate code, so that a bug there cannot hide itself.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hsm import KeyInfo

Purpose = Literal["ocsp", "tsa", "leaf"]


def vn_name(common_name: str) -> x509.Name:
    """A subject in the government CA's pattern, with Vietnamese UTF-8 values."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "Hà Giang"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Bộ Công an"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def hsm_public_key(key: KeyInfo) -> CertificatePublicKeyTypes:
    """The public half of an HSM key, as ``cryptography`` reads it from its DER SPKI."""
    assert key.public_key is not None
    public = serialization.load_der_public_key(key.public_key)
    assert isinstance(public, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
    return public


@dataclass(frozen=True)
class TestCa:
    """A self-signed software CA (EC P-256) that issues test certificates."""

    __test__ = False

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, common_name: str = "CA thử nghiệm Công an tỉnh Hà Giang") -> TestCa:
        key = ec.generate_private_key(ec.SECP256R1())
        name = vn_name(common_name)
        public = key.public_key()
        cert = (
            _builder(name, name, public, serial=1)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_usage(cert_sign=True), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(key=key, cert=cert)

    def issue(
        self,
        public_key: CertificatePublicKeyTypes,
        *,
        common_name: str,
        purpose: Purpose,
        serial: int,
    ) -> x509.Certificate:
        builder = (
            _builder(self.cert.subject, vn_name(common_name), public_key, serial=serial)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(cert_sign=False), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
        )
        if purpose == "ocsp":
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]), critical=False
            ).add_extension(x509.OCSPNoCheck(), critical=False)
        elif purpose == "tsa":
            # RFC 3161 §2.3: critical, timeStamping only (openssl ts -verify insists).
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True
            )
        return builder.sign(self.key, hashes.SHA256())

    def issue_leaf(self, *, serial: int) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = self.issue(
            key.public_key(), common_name=f"Nguyễn Văn Ấn {serial}", purpose="leaf", serial=serial
        )
        return key, cert


def write_pem(path: Path, *certs: x509.Certificate) -> Path:
    path.write_bytes(b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in certs))
    return path


def write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _builder(
    issuer: x509.Name, subject: x509.Name, public_key: CertificatePublicKeyTypes, *, serial: int
) -> x509.CertificateBuilder:
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .issuer_name(issuer)
        .subject_name(subject)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not cert_sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def run_openssl(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the real ``openssl`` binary, the independent checker; output is not checked here."""
    return subprocess.run(
        ["openssl", *map(str, args)], cwd=cwd, capture_output=True, text=True, check=False
    )
