"""Enrolment with an external CA on SoftHSM and both databases: the key generated on the
token, the exported PKCS#10 request, a software "government CA" (root + issuing CA, made
with ``cryptography`` alone) that certifies it, and the import with its checks. openssl
checks the request and the imported chain independently."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from sqlalchemy import Engine

from audit.events import Action
from hsm import BlockingSessionPool
from pki.authority import Authority
from pki.crl import RevocationReason
from pki.errors import (
    ConflictError,
    CredentialUnusableError,
    InvalidInputError,
    NotFoundError,
)
from pki.store import CredentialKind, CredentialStatus
from tests.pki.certs import TestCa, vn_name
from tests.pki.test_authority import (
    ADMIN,
    add_officer,
    audit_events,
    commune,
    events,
    make_authority,
)
from tests.pki.test_certificates import openssl


@dataclass(frozen=True)
class GovernmentCa:
    """A two-level software CA: ``root`` is the trust anchor, ``key``/``cert`` issue."""

    root: TestCa
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls, name: str = "Cơ quan chứng thực số Chính phủ") -> GovernmentCa:
        root = TestCa.create(f"{name} – gốc")
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (
            _builder(root.cert.subject, vn_name(name), key.public_key(), root.key)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_usage(ca=True, non_repudiation=False), critical=True)
            .sign(root.key, hashes.SHA256())
        )
        return cls(root=root, key=key, cert=cert)

    @property
    def anchor(self) -> asn1_x509.Certificate:
        return asn1_x509.Certificate.load(self.root.cert.public_bytes(serialization.Encoding.DER))

    def sign(
        self,
        csr_pem: bytes,
        *,
        public_key: CertificatePublicKeyTypes | None = None,
        ca: bool = False,
        non_repudiation: bool = True,
        days: int = 30,
    ) -> x509.Certificate:
        """Certify the request's subject, its key (or ``public_key``) and its extensions."""
        request = x509.load_pem_x509_csr(csr_pem)
        assert request.is_signature_valid
        builder = (
            _builder(
                self.cert.subject,
                request.subject,
                public_key or request.public_key(),
                self.key,
                days=days,
            )
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(_usage(ca=ca, non_repudiation=non_repudiation), critical=True)
        )
        for extension in request.extensions:
            builder = builder.add_extension(extension.value, critical=extension.critical)
        return builder.sign(self.key, hashes.SHA256())

    def bundle(self, leaf: x509.Certificate, *, chain: bool = True) -> bytes:
        """The PEM answer of the CA: the certificate, then (by default) its issuing CA."""
        certs = [leaf, self.cert] if chain else [leaf]
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _builder(
    issuer: x509.Name,
    subject: x509.Name,
    public_key: CertificatePublicKeyTypes,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    days: int = 365,
) -> x509.CertificateBuilder:
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .issuer_name(issuer)
        .subject_name(subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=2))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )


def _usage(*, ca: bool, non_repudiation: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=non_repudiation,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def pem_file(path: Path, *certs: x509.Certificate) -> Path:
    path.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs))
    return path


@pytest.fixture
def authority(engine: Engine, pool: BlockingSessionPool) -> Authority:
    return make_authority(engine, pool)


@pytest.fixture
def government() -> GovernmentCa:
    return GovernmentCa.create()


def test_an_external_ca_certifies_the_exported_request(
    authority: Authority, engine: Engine, government: GovernmentCa, tmp_path: Path
) -> None:
    person_id = add_officer(authority, commune(authority))
    pending, csr_pem = authority.request_certificate(person_id=person_id, actor=ADMIN)
    assert pending.status is CredentialStatus.PENDING
    assert pending.external
    assert pending.kind is CredentialKind.OFFICER
    assert pending.certificate is None
    with pytest.raises(CredentialUnusableError, match="pending"):
        authority.usable_credential(pending.id)

    request_file = tmp_path / "request.pem"
    request_file.write_bytes(csr_pem)
    checked = openssl("req", "-in", request_file, "-verify", "-noout", "-text", "-nameopt", "utf8")
    assert checked.returncode == 0, checked.stderr
    assert "verify OK" in checked.stdout + checked.stderr
    assert "CN=Nguyễn Văn Ánh" in checked.stdout
    assert "email:anh.nv@ca.hcm.gov.vn" in checked.stdout
    request = x509.load_pem_x509_csr(csr_pem)
    again = x509.load_pem_x509_csr(authority.csr(pending.id))
    assert again.is_signature_valid
    assert again.subject == request.subject
    assert again.public_key() == request.public_key()

    leaf = government.sign(csr_pem)
    imported = authority.import_certificate(
        pending.id, government.bundle(leaf), anchors=[government.anchor], actor=ADMIN
    )
    assert imported.status is CredentialStatus.ACTIVE
    assert imported.external
    assert imported.certificate is not None
    assert imported.certificate.dump() == leaf.public_bytes(serialization.Encoding.DER)
    assert imported.serial == format(leaf.serial_number, "x")
    assert [c.dump() for c in imported.chain] == [
        c.public_bytes(serialization.Encoding.DER) for c in (government.cert, government.root.cert)
    ]
    assert authority.usable_credential(imported.id).id == pending.id
    verified = openssl(
        "verify",
        "-CAfile",
        pem_file(tmp_path / "anchor.pem", government.root.cert),
        "-untrusted",
        pem_file(
            tmp_path / "chain.pem",
            *[x509.load_der_x509_certificate(c.dump()) for c in imported.chain],
        ),
        pem_file(tmp_path / "leaf.pem", leaf),
    )
    assert verified.returncode == 0, verified.stderr

    issued = [e for e in audit_events(engine) if e.action is Action.CERTIFICATE_ISSUED][-1]
    assert issued.details["external"] is True
    assert issued.details["credential_id"] == pending.id
    assert issued.subject.key_id == pending.key_id
    assert issued.subject.certificate_serial == imported.serial

    with pytest.raises(ConflictError, match="active"):
        authority.import_certificate(
            pending.id, government.bundle(leaf), anchors=[government.anchor], actor=ADMIN
        )
    with pytest.raises(ConflictError, match="active"):
        authority.csr(pending.id)
    with pytest.raises(InvalidInputError, match="external CA"):
        authority.renew(pending.id, ADMIN)


def test_status_changes_of_an_external_credential_stay_in_kyso(
    authority: Authority, engine: Engine, government: GovernmentCa
) -> None:
    pending, csr_pem = authority.request_certificate(
        person_id=add_officer(authority, commune(authority)), actor=ADMIN
    )
    credential = authority.import_certificate(
        pending.id,
        government.bundle(government.sign(csr_pem)),
        anchors=[government.anchor],
        actor=ADMIN,
    )
    generation = authority.status_generation()
    crl = authority.current_crl(CredentialKind.ISSUING_CA)

    assert authority.suspend(credential.id, ADMIN).status is CredentialStatus.SUSPENDED
    with pytest.raises(CredentialUnusableError, match="suspended"):
        authority.usable_credential(credential.id)
    assert authority.resume(credential.id, ADMIN).status is CredentialStatus.ACTIVE
    authority.usable_credential(credential.id)
    revoked = authority.revoke(credential.id, RevocationReason.CESSATION_OF_OPERATION, ADMIN)
    assert revoked.status is CredentialStatus.REVOKED
    with pytest.raises(CredentialUnusableError, match="revoked"):
        authority.usable_credential(credential.id)

    # Only the external CA publishes its certificate's status: Kyso's CRL stays put. The
    # generation moves all the same (three changes), so signing caches re-check the credential.
    assert authority.status_generation() == generation + 3
    assert authority.current_crl(CredentialKind.ISSUING_CA) == crl
    changes = [
        e
        for e in audit_events(engine)
        if e.action
        in (Action.CERTIFICATE_SUSPENDED, Action.CERTIFICATE_RESUMED, Action.CERTIFICATE_REVOKED)
    ]
    assert [(e.details["external"], e.details.get("reason")) for e in changes] == [
        (True, "certificate_hold"),
        (True, None),
        (True, "cessation_of_operation"),
    ]


def test_imports_that_do_not_fit_are_refused(
    authority: Authority, engine: Engine, government: GovernmentCa
) -> None:
    unit_id = commune(authority)
    pending, csr_pem = authority.request_certificate(
        person_id=add_officer(authority, unit_id), actor=ADMIN
    )
    anchors = [government.anchor]
    stranger = GovernmentCa.create("CA lạ")
    other_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    refused = [
        (b"not a certificate", anchors, "pki.invalid_certificate"),
        (
            government.bundle(government.sign(csr_pem, public_key=other_key)),
            anchors,
            "pki.key_mismatch",
        ),
        (government.bundle(government.sign(csr_pem, ca=True)), anchors, "pki.profile_mismatch"),
        (
            government.bundle(government.sign(csr_pem, non_repudiation=False)),
            anchors,
            "pki.profile_mismatch",
        ),
        (stranger.bundle(stranger.sign(csr_pem)), anchors, "pki.untrusted"),
        (government.bundle(government.sign(csr_pem), chain=False), anchors, "pki.untrusted"),
        (government.bundle(government.sign(csr_pem, days=-1)), anchors, "pki.untrusted"),
        (government.bundle(government.sign(csr_pem)), [], "pki.untrusted"),
    ]
    for data, trusted, code in refused:
        with pytest.raises(InvalidInputError) as raised:
            authority.import_certificate(pending.id, data, anchors=trusted, actor=ADMIN)
        assert raised.value.code == code, raised.value.message
    assert authority.credential(pending.id).status is CredentialStatus.PENDING
    assert events(engine)[Action.CERTIFICATE_ISSUED] == 4

    internal = authority.enroll_seal(unit_id, ADMIN)
    with pytest.raises(ConflictError, match="active"):
        authority.import_certificate(
            internal.id,
            government.bundle(government.sign(csr_pem)),
            anchors=anchors,
            actor=ADMIN,
        )

    # An abandoned request is revoked: nothing can activate it any more.
    authority.revoke(pending.id, RevocationReason.KEY_COMPROMISE, ADMIN)
    with pytest.raises(ConflictError, match="revoked"):
        authority.import_certificate(
            pending.id, government.bundle(government.sign(csr_pem)), anchors=anchors, actor=ADMIN
        )


def test_a_seal_request_names_the_unit(authority: Authority, engine: Engine) -> None:
    unit_id = commune(authority)
    pending, csr_pem = authority.request_certificate(unit_id=unit_id, actor=ADMIN)
    assert pending.kind is CredentialKind.SEAL
    assert pending.person_id is None
    assert pending.unit_id == unit_id
    request = x509.load_pem_x509_csr(csr_pem)
    assert request.is_signature_valid
    common_name = request.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    assert common_name == "Công an phường Bến Thành"
    assert len(request.extensions) == 0
    generated = [e for e in audit_events(engine) if e.action is Action.KEY_GENERATED][-1]
    assert generated.subject.key_id == pending.key_id
    assert generated.details["external"] is True

    for wrong in ({}, {"person_id": 1, "unit_id": unit_id}):
        with pytest.raises(InvalidInputError, match="either a person"):
            authority.request_certificate(**wrong, actor=ADMIN)
    with pytest.raises(NotFoundError):
        authority.request_certificate(person_id=999, actor=ADMIN)
