"""The CA service end to end on SoftHSM and both databases: hierarchy, units, people,
enrolment, suspension / resumption / revocation with CRLs and OCSP, timestamp serials,
and the audit events of every step. openssl checks the results independently."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from asn1crypto import crl as asn1_crl
from sqlalchemy import Engine, select

from audit.events import Action, Actor, AuditEvent
from audit.store import audit_entries
from hsm import BlockingSessionPool
from pki.authority import Authority, AuthorityConfig
from pki.certificates import to_pem
from pki.crl import RevocationReason
from pki.errors import ConflictError, InvalidInputError, NotFoundError
from pki.store import CredentialKind, CredentialStatus, PersonRole, UnitKind
from tests.pki.test_certificates import openssl

ADMIN = Actor(id="admin-1", role="system-admin")


@pytest.fixture
def authority(engine: Engine, pool: BlockingSessionPool) -> Authority:
    ca = Authority(
        engine=engine, pool=pool, config=AuthorityConfig(public_url="http://127.0.0.1:8000")
    )
    ca.ensure_hierarchy(ADMIN)
    return ca


def events(engine: Engine) -> Counter[Action]:
    with engine.connect() as connection:
        leaves = connection.execute(select(audit_entries.c.leaf)).scalars().all()
    return Counter(AuditEvent.from_leaf(bytes(leaf)).action for leaf in leaves)


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


def write(path: Path, *ders: bytes) -> Path:
    path.write_bytes(b"".join(ders))
    return path


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
    unit_id = commune(authority)
    officer = authority.add_person(
        unit_id=unit_id,
        role=PersonRole.OFFICER,
        full_name="Nguyễn Văn Ánh",
        position="Trưởng Công an phường",
        cccd="079203001234",
        email="anh.nv@ca.hcm.gov.vn",
        actor=ADMIN,
    )
    credential = authority.enroll_person(officer.id, ADMIN)
    assert credential.status is CredentialStatus.ACTIVE
    assert credential.certificate is not None
    root = write(tmp_path / "root.pem", to_pem(authority.ca_certificate(CredentialKind.ROOT_CA)))
    issuing = write(
        tmp_path / "issuing.pem", to_pem(authority.ca_certificate(CredentialKind.ISSUING_CA))
    )
    leaf = write(tmp_path / "leaf.pem", to_pem(credential.certificate))
    verified = openssl("verify", "-CAfile", root, "-untrusted", issuing, leaf)
    assert verified.returncode == 0, verified.stderr
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

    def crl_reasons() -> list[object]:
        der = authority.current_crl(CredentialKind.ISSUING_CA)
        crl_file = write(tmp_path / "crl.der", der)
        checked = openssl(
            "crl",
            "-inform",
            "DER",
            "-in",
            crl_file,
            "-noout",
            "-CAfile",
            write(tmp_path / "chain.pem", root.read_bytes(), issuing.read_bytes()),
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

    serial = credential.certificate.serial_number
    assert ": good" in ocsp_status()
    assert crl_reasons() == []

    assert authority.suspend(credential.id, ADMIN).status is CredentialStatus.SUSPENDED
    assert "Reason: certificateHold" in ocsp_status()
    assert crl_reasons() == [(serial, "certificate_hold")]

    assert authority.resume(credential.id, ADMIN).status is CredentialStatus.ACTIVE
    assert ": good" in ocsp_status()
    assert crl_reasons() == []

    revoked = authority.revoke(credential.id, RevocationReason.KEY_COMPROMISE, ADMIN)
    assert revoked.status is CredentialStatus.REVOKED
    assert "Reason: keyCompromise" in ocsp_status()
    assert crl_reasons() == [(serial, "key_compromise")]
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


def test_timestamp_serials_are_unique_and_increasing(authority: Authority) -> None:
    serials = [authority.next_timestamp_serial() for _ in range(5)]
    assert serials == sorted(set(serials))
