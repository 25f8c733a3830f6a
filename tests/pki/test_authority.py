"""The CA service end to end on SoftHSM and both databases: hierarchy, units, people,
enrolment, suspension / resumption / revocation with CRLs and OCSP, renewal and re-key,
expiry warnings, the refusal to sign with an unusable credential, timestamp serials, and
the audit events of every step. openssl checks the results independently."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import crl as asn1_crl
from cryptography import x509 as cx509
from prometheus_client import REGISTRY
from sqlalchemy import Engine, func, select

from audit.events import Action, Actor, AuditEvent
from audit.store import audit_entries
from hsm import BlockingSessionPool
from pki import authority as authority_module
from pki.authority import Authority, AuthorityConfig, Credential
from pki.certificates import to_pem
from pki.crl import RevocationReason
from pki.errors import (
    ConflictError,
    CredentialUnusableError,
    InvalidInputError,
    NotFoundError,
)
from pki.ocsp import GOOD, CertState
from pki.store import CredentialKind, CredentialStatus, PersonRole, UnitKind, pki_timestamps
from tests.pki.test_certificates import openssl

ADMIN = Actor(id="admin-1", role="system-admin")


def make_authority(engine: Engine, pool: BlockingSessionPool, **config: Any) -> Authority:
    """An authority with its CA hierarchy; ``config`` overrides AuthorityConfig fields."""
    ca = Authority(
        engine=engine,
        pool=pool,
        config=AuthorityConfig(public_url="http://127.0.0.1:8000", **config),
    )
    ca.ensure_hierarchy(ADMIN)
    return ca


@pytest.fixture
def authority(engine: Engine, pool: BlockingSessionPool) -> Authority:
    return make_authority(engine, pool)


def audit_events(engine: Engine) -> list[AuditEvent]:
    with engine.connect() as connection:
        leaves = connection.execute(select(audit_entries.c.leaf)).scalars().all()
    return [AuditEvent.from_leaf(bytes(leaf)) for leaf in leaves]


def events(engine: Engine) -> Counter[Action]:
    return Counter(event.action for event in audit_events(engine))


def commune(authority: Authority) -> int:
    ministry = authority.add_unit(
        kind=UnitKind.MINISTRY,
        code="BCA",
        name="Bộ Công an",
        province="Hà Nội",
        locality="Hà Nội",
        parent_id=None,
        actor=ADMIN,
    )
    province = authority.add_unit(
        kind=UnitKind.PROVINCE,
        code="CAT-HCM",
        name="Công an Thành phố Hồ Chí Minh",
        province="Thành phố Hồ Chí Minh",
        locality="Thành phố Hồ Chí Minh",
        parent_id=ministry.id,
        actor=ADMIN,
    )
    return authority.add_unit(
        kind=UnitKind.COMMUNE,
        code="CAP-BT",
        name="Công an phường Bến Thành",
        province="Thành phố Hồ Chí Minh",
        locality="Phường Bến Thành",
        parent_id=province.id,
        actor=ADMIN,
    ).id


def add_officer(authority: Authority, unit_id: int) -> int:
    return authority.add_person(
        unit_id=unit_id,
        role=PersonRole.OFFICER,
        full_name="Nguyễn Văn Ánh",
        position="Trưởng Công an phường",
        cccd="079203001234",
        email="anh.nv@ca.hcm.gov.vn",
        actor=ADMIN,
    ).id


def write(path: Path, *ders: bytes) -> Path:
    path.write_bytes(b"".join(ders))
    return path


def ca_files(authority: Authority, directory: Path) -> tuple[Path, Path]:
    """Kyso's root and issuing CA certificates as PEM files."""
    return (
        write(directory / "root.pem", to_pem(authority.ca_certificate(CredentialKind.ROOT_CA))),
        write(
            directory / "issuing.pem",
            to_pem(authority.ca_certificate(CredentialKind.ISSUING_CA)),
        ),
    )


def crl_entries(authority: Authority, directory: Path) -> list[tuple[int, str | None]]:
    """(serial, reason) of the issuing CA's current CRL, after openssl verified it."""
    root, issuing = ca_files(authority, directory)
    der = authority.current_crl(CredentialKind.ISSUING_CA)
    checked = openssl(
        "crl",
        "-inform",
        "DER",
        "-in",
        write(directory / "crl.der", der),
        "-noout",
        "-CAfile",
        write(directory / "chain.pem", root.read_bytes(), issuing.read_bytes()),
    )
    assert "verify OK" in checked.stderr + checked.stdout
    revoked = asn1_crl.CertificateList.load(der)["tbs_cert_list"]["revoked_certificates"]
    return [
        (
            entry["user_certificate"].native,
            entry.crl_reason_value.native if entry.crl_reason_value else None,
        )
        for entry in revoked
    ]


def verify_issued(authority: Authority, credential: Credential, directory: Path) -> None:
    """openssl accepts the credential's certificate under Kyso's root."""
    assert credential.certificate is not None
    root, issuing = ca_files(authority, directory)
    leaf = write(directory / "leaf.pem", to_pem(credential.certificate))
    verified = openssl("verify", "-CAfile", root, "-untrusted", issuing, leaf)
    assert verified.returncode == 0, verified.stderr


def test_the_hierarchy_is_created_once(authority: Authority, engine: Engine) -> None:
    assert authority.ensure_hierarchy(ADMIN) == []
    counts = events(engine)
    assert counts[Action.KEY_GENERATED] == counts[Action.CERTIFICATE_ISSUED] == 4
    kinds = {c.kind for c in authority.credentials()}
    assert kinds == {
        CredentialKind.ROOT_CA,
        CredentialKind.ISSUING_CA,
        CredentialKind.OCSP,
        CredentialKind.TSA,
    }


def test_an_enrolled_officer_chains_to_the_root_and_shows_on_crl_and_ocsp(
    authority: Authority, engine: Engine, tmp_path: Path
) -> None:
    credential = authority.enroll_person(add_officer(authority, commune(authority)), ADMIN)
    assert credential.status is CredentialStatus.ACTIVE
    assert credential.certificate is not None
    verify_issued(authority, credential, tmp_path)
    root, issuing = ca_files(authority, tmp_path)
    leaf = tmp_path / "leaf.pem"
    text = openssl("x509", "-in", leaf, "-noout", "-subject", "-nameopt", "utf8").stdout
    assert "CN=Nguyễn Văn Ánh" in text
    assert "CCCD:079203001234" in text

    def ocsp_status() -> str:
        request = tmp_path / "req.der"
        made = openssl("ocsp", "-no_nonce", "-issuer", issuing, "-cert", leaf, "-reqout", request)
        assert made.returncode == 0, made.stderr
        result = authority.ocsp_responder().respond(request.read_bytes())
        response = write(tmp_path / "resp.der", result.der)
        checked = openssl(
            "ocsp",
            "-respin",
            response,
            "-issuer",
            issuing,
            "-cert",
            leaf,
            "-CAfile",
            write(tmp_path / "chain.pem", root.read_bytes(), issuing.read_bytes()),
        )
        assert "Response verify OK" in checked.stderr, checked.stderr
        return checked.stdout

    serial = credential.certificate.serial_number
    assert ": good" in ocsp_status()
    assert crl_entries(authority, tmp_path) == []

    assert authority.suspend(credential.id, ADMIN).status is CredentialStatus.SUSPENDED
    assert "Reason: certificateHold" in ocsp_status()
    assert crl_entries(authority, tmp_path) == [(serial, "certificate_hold")]

    assert authority.resume(credential.id, ADMIN).status is CredentialStatus.ACTIVE
    assert ": good" in ocsp_status()
    assert crl_entries(authority, tmp_path) == []

    revoked = authority.revoke(credential.id, RevocationReason.KEY_COMPROMISE, ADMIN)
    assert revoked.status is CredentialStatus.REVOKED
    assert "Reason: keyCompromise" in ocsp_status()
    assert crl_entries(authority, tmp_path) == [(serial, "key_compromise")]
    for change in (authority.resume, authority.suspend):
        with pytest.raises(ConflictError, match="revoked"):
            change(credential.id, ADMIN)

    counts = events(engine)
    assert counts[Action.CERTIFICATE_SUSPENDED] == counts[Action.CERTIFICATE_RESUMED] == 1
    assert counts[Action.CERTIFICATE_REVOKED] == 1
    assert counts[Action.OFFICER_ENROLLED] == 1
    assert authority.status_generation() == 3


def test_crl_numbers_increase(authority: Authority) -> None:
    numbers = [
        asn1_crl.CertificateList.load(
            authority.publish_crl(CredentialKind.ISSUING_CA)
        ).crl_number_value.native
        for _ in range(3)
    ]
    assert numbers == sorted(set(numbers))
    assert len(numbers) == 3


def test_seal_credential_has_the_unit_as_subject(authority: Authority) -> None:
    unit_id = commune(authority)
    seal = authority.enroll_seal(unit_id, ADMIN)
    assert seal.kind is CredentialKind.SEAL
    assert seal.certificate is not None
    assert seal.certificate.subject.native["common_name"] == "Công an phường Bến Thành"


def test_unit_tree_and_people_are_validated(authority: Authority) -> None:
    with pytest.raises(InvalidInputError, match="belongs to a province"):
        authority.add_unit(
            kind=UnitKind.COMMUNE,
            code="X",
            name="Công an xã X",
            province="Hà Nội",
            locality="X",
            parent_id=None,
            actor=ADMIN,
        )
    unit_id = commune(authority)
    with pytest.raises(ConflictError):
        commune(authority)
    with pytest.raises(InvalidInputError) as bad:
        authority.add_person(
            unit_id=unit_id,
            role=PersonRole.CLERK,
            full_name="Trần Thị B",
            position="Văn thư",
            cccd="12345",
            email="b@ca.gov.vn",
            actor=ADMIN,
        )
    assert bad.value.code == "pki.invalid_cccd"
    with pytest.raises(NotFoundError):
        authority.enroll_person(999, ADMIN)


def test_timestamp_serials_are_unique_across_authorities_sharing_a_database(
    authority: Authority, engine: Engine, pool: BlockingSessionPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two authorities on one database stand for two processes: each draws from blocks of
    its own, with one database write per block rather than per token."""
    monkeypatch.setattr(authority_module, "TIMESTAMP_SERIAL_BLOCK", 16)
    other = Authority(engine=engine, pool=pool, config=authority.config)
    ours = [authority.next_timestamp_serial() for _ in range(16 + 5)]
    theirs = [other.next_timestamp_serial() for _ in range(5)]
    assert ours == sorted(ours)
    assert len(set(ours + theirs)) == len(ours) + len(theirs)
    assert all(serial > 0 for serial in ours + theirs)
    with engine.connect() as connection:
        blocks = connection.execute(select(func.count()).select_from(pki_timestamps)).scalar()
    assert blocks == 3  # two blocks for us, one for them


def certificate_status(authority: Authority, serial: str | None) -> tuple[CertState, str | None]:
    assert serial is not None
    issuer = cx509.load_der_x509_certificate(
        authority.ca_certificate(CredentialKind.ISSUING_CA).dump()
    )
    status = authority.certificate_status(issuer, int(serial, 16))
    return status.state, status.reason


def test_renew_keeps_the_key_and_rekey_revokes_the_old_certificate(
    authority: Authority, engine: Engine, tmp_path: Path
) -> None:
    first = authority.enroll_person(add_officer(authority, commune(authority)), ADMIN)

    renewed = authority.renew(first.id, ADMIN)
    assert renewed.status is CredentialStatus.ACTIVE
    assert renewed.replaces_id == first.id
    assert renewed.key_id == first.key_id
    assert renewed.serial != first.serial
    assert renewed.certificate is not None
    assert first.certificate is not None
    assert renewed.certificate.subject == first.certificate.subject
    verify_issued(authority, renewed, tmp_path)
    assert authority.credential(first.id).status is CredentialStatus.SUPERSEDED
    # A renewal retires no key: the old certificate stays good until it expires.
    assert certificate_status(authority, first.serial) == (GOOD.state, None)
    assert crl_entries(authority, tmp_path) == []

    rekeyed = authority.renew(renewed.id, ADMIN, rekey=True)
    assert rekeyed.status is CredentialStatus.ACTIVE
    assert rekeyed.replaces_id == renewed.id
    assert rekeyed.key_id not in (first.key_id, renewed.key_id)
    assert rekeyed.serial not in (first.serial, renewed.serial)
    verify_issued(authority, rekeyed, tmp_path)
    assert authority.credential(renewed.id).status is CredentialStatus.SUPERSEDED
    assert certificate_status(authority, renewed.serial) == (CertState.REVOKED, "superseded")
    assert crl_entries(authority, tmp_path) == [(int(renewed.serial or "", 16), "superseded")]
    assert [c.id for c in authority.credentials()][-3:] == [first.id, renewed.id, rekeyed.id]

    for superseded in (first, renewed):
        with pytest.raises(ConflictError, match="superseded"):
            authority.renew(superseded.id, ADMIN)
    authority.suspend(rekeyed.id, ADMIN)
    with pytest.raises(ConflictError, match="suspended"):
        authority.renew(rekeyed.id, ADMIN, rekey=True)
    authority.revoke(rekeyed.id, RevocationReason.AFFILIATION_CHANGED, ADMIN)
    with pytest.raises(ConflictError, match="revoked"):
        authority.renew(rekeyed.id, ADMIN)
    issuing_ca = authority.credentials()[1]
    assert issuing_ca.kind is CredentialKind.ISSUING_CA
    with pytest.raises(InvalidInputError, match="only officer and seal"):
        authority.renew(issuing_ca.id, ADMIN)

    counts = events(engine)
    # Hierarchy 4 + enrolment + re-key; the renewal generated no key.
    assert counts[Action.KEY_GENERATED] == 6
    assert counts[Action.CERTIFICATE_ISSUED] == 7
    assert counts[Action.CERTIFICATE_REVOKED] == 2
    issued = [e for e in audit_events(engine) if e.action is Action.CERTIFICATE_ISSUED][-3:]
    assert [(e.subject.key_id, e.subject.certificate_serial) for e in issued] == [
        (c.key_id, c.serial) for c in (first, renewed, rekeyed)
    ]
    assert [e.details.get("rekey") for e in issued] == [None, False, True]


def test_expiring_credentials_and_the_gauge(engine: Engine, pool: BlockingSessionPool) -> None:
    authority = make_authority(engine, pool, officer_validity=timedelta(days=10))
    unit_id = commune(authority)
    officer = authority.enroll_person(add_officer(authority, unit_id), ADMIN)
    seal = authority.enroll_seal(unit_id, ADMIN)

    def gauge(kind: CredentialKind) -> float | None:
        return REGISTRY.get_sample_value("kyso_pki_certificates_expiring", {"kind": kind.value})

    assert [c.id for c in authority.expiring(timedelta(days=30))] == [officer.id]
    assert authority.expiring(timedelta(days=1)) == []
    # Four years: the officer (10 days), the OCSP responder (2 years), the seal (3 years).
    soonest_first = authority.expiring(timedelta(days=4 * 365))
    assert [c.kind for c in soonest_first] == [
        CredentialKind.OFFICER,
        CredentialKind.OCSP,
        CredentialKind.SEAL,
    ]
    assert soonest_first[-1].id == seal.id
    with pytest.raises(InvalidInputError, match="negative"):
        authority.expiring(timedelta(days=-1))

    authority.update_expiry_metric(timedelta(days=30))
    assert gauge(CredentialKind.OFFICER) == 1
    assert gauge(CredentialKind.SEAL) == gauge(CredentialKind.ROOT_CA) == 0

    authority.suspend(officer.id, ADMIN)
    assert authority.expiring(timedelta(days=30)) == []
    authority.update_expiry_metric(timedelta(days=30))
    assert gauge(CredentialKind.OFFICER) == 0


def test_usable_credential_refuses_every_state_that_must_not_sign(
    authority: Authority, engine: Engine, pool: BlockingSessionPool
) -> None:
    credential = authority.enroll_person(add_officer(authority, commune(authority)), ADMIN)
    assert credential.certificate is not None
    assert credential.not_after is not None
    assert authority.usable_credential(credential.id).id == credential.id
    assert authority.usable_credential(credential.id, at=credential.not_after).serial

    def refused(credential_id: int, match: str, at: datetime | None = None) -> None:
        with pytest.raises(CredentialUnusableError, match=match) as raised:
            authority.usable_credential(credential_id, at=at)
        assert raised.value.code == "pki.credential_unusable"

    second = timedelta(seconds=1)
    refused(credential.id, "expired", credential.not_after + second)
    refused(credential.id, "not yet valid", credential.certificate.not_valid_before - second)
    with pytest.raises(InvalidInputError) as naive:
        authority.usable_credential(credential.id, at=datetime(2030, 1, 1))
    assert naive.value.code == "pki.invalid_time"

    # Another process changes the status: the very next check sees it, no cache in between.
    other = Authority(engine=engine, pool=pool, config=authority.config)
    other.suspend(credential.id, ADMIN)
    refused(credential.id, "suspended")
    other.resume(credential.id, ADMIN)
    assert authority.usable_credential(credential.id, at=datetime.now(UTC)).id == credential.id

    renewed = authority.renew(credential.id, ADMIN)
    refused(credential.id, "superseded")
    authority.usable_credential(renewed.id)
    authority.revoke(renewed.id, RevocationReason.KEY_COMPROMISE, ADMIN)
    refused(renewed.id, "revoked")
    with pytest.raises(NotFoundError):
        authority.usable_credential(999)
