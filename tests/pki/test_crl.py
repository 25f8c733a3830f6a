"""CRLs signed with the issuing CA's key on SoftHSM, checked by openssl and cryptography."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from asn1crypto import crl, x509
from cryptography import x509 as crypto_x509
from cryptography.x509.oid import ExtensionOID

from hsm import BlockingSessionPool, HashAlg, KeySpec
from pki.certificates import MAX_SERIAL, to_pem
from pki.crl import RevocationReason, RevokedEntry, build_crl
from pki.errors import InvalidInputError, PkiError
from pki.profiles import Profile
from pki.signing import HsmX509Signer
from tests.conftest import make_token
from tests.pki.test_certificates import (
    EMAIL,
    START,
    Chain,
    SignsTheWrongBytes,
    flip_last_byte,
    issue_chain,
    issue_leaf,
    openssl,
    openssl_verify,
)

THIS_UPDATE = START + timedelta(minutes=30)
NEXT_UPDATE = THIS_UPDATE + timedelta(days=1)

# openssl's wording for each reasonCode.
OPENSSL_REASONS = {
    RevocationReason.KEY_COMPROMISE: "Key Compromise",
    RevocationReason.CA_COMPROMISE: "CA Compromise",
    RevocationReason.AFFILIATION_CHANGED: "Affiliation Changed",
    RevocationReason.SUPERSEDED: "Superseded",
    RevocationReason.CESSATION_OF_OPERATION: "Cessation Of Operation",
    RevocationReason.CERTIFICATE_HOLD: "Certificate Hold",
    RevocationReason.PRIVILEGE_WITHDRAWN: "Privilege Withdrawn",
}


@pytest.fixture(scope="module")
def crl_pool(
    softhsm_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BlockingSessionPool]:
    token = make_token(softhsm_dir, tmp_path_factory.mktemp("crl"))
    with BlockingSessionPool(token.config()) as pool:
        yield pool


@pytest.fixture(scope="module")
def chain(crl_pool: BlockingSessionPool) -> Chain:
    return issue_chain(crl_pool, KeySpec.EC_P256)


@pytest.fixture(scope="module")
def officers(chain: Chain, crl_pool: BlockingSessionPool) -> tuple[x509.Certificate, ...]:
    """Two officer certificates: the first is put on hold below, the second stays good."""
    return tuple(
        issue_leaf(
            chain,
            crl_pool.generate_key(KeySpec.EC_P256, label=label),
            Profile.OFFICER_SIGNING,
            email=EMAIL,
        )
        for label in ("on hold", "good")
    )


def entries(held: x509.Certificate) -> list[RevokedEntry]:
    """One entry per reason, in shuffled order; the held officer is one of them."""
    listed = [
        RevokedEntry(serial=1000 + index, revoked_at=START, reason=reason)
        for index, reason in enumerate(RevocationReason)
        if reason is not RevocationReason.CERTIFICATE_HOLD
    ]
    listed.append(
        RevokedEntry(
            serial=held.serial_number,
            revoked_at=START + timedelta(minutes=5),
            reason=RevocationReason.CERTIFICATE_HOLD,
        )
    )
    random.Random(7).shuffle(listed)
    return listed


def issue_crl(chain: Chain, revoked: list[RevokedEntry], number: int = 7) -> crl.CertificateList:
    return build_crl(
        issuer=chain.issuing,
        signer=chain.issuing_signer,
        number=number,
        this_update=THIS_UPDATE,
        next_update=NEXT_UPDATE,
        revoked=revoked,
    )


def openssl_crl(directory: Path, chain: Chain, der: bytes, *options: str) -> tuple[int, str, str]:
    path = directory / "issuing.crl"
    path.write_bytes(der)
    ca_file = directory / "chain.pem"
    ca_file.write_bytes(to_pem(chain.root) + to_pem(chain.issuing))
    result = openssl("crl", "-in", path, "-inform", "DER", "-CAfile", ca_file, "-noout", *options)
    return result.returncode, result.stdout, result.stderr


def test_crl_verifies_with_openssl_and_lists_the_reasons(
    chain: Chain, officers: tuple[x509.Certificate, ...], tmp_path: Path
) -> None:
    certificate_list = issue_crl(chain, entries(officers[0]))
    returncode, text, stderr = openssl_crl(tmp_path, chain, certificate_list.dump(), "-text")
    assert returncode == 0, stderr
    assert stderr.strip() == "verify OK"
    assert "Version 2 (0x1)" in text
    assert "X509v3 CRL Number: \n                7\n" in text
    for reason, wording in OPENSSL_REASONS.items():
        assert text.count(f"X509v3 CRL Reason Code: \n                {wording}\n") == 1, reason
    # RFC 5280 §5.3.1: unspecified is written as no reasonCode at all.
    assert text.count("CRL Reason Code") == len(OPENSSL_REASONS)
    assert text.count("Serial Number:") == len(RevocationReason)


def test_cryptography_reads_the_crl(chain: Chain, officers: tuple[x509.Certificate, ...]) -> None:
    listed = entries(officers[0])
    loaded = crypto_x509.load_der_x509_crl(issue_crl(chain, listed).dump())
    issuer = crypto_x509.load_der_x509_certificate(chain.issuing.dump())
    assert loaded.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    assert loaded.issuer == issuer.subject
    assert loaded.last_update_utc == THIS_UPDATE.replace(microsecond=0)
    assert loaded.next_update_utc == NEXT_UPDATE.replace(microsecond=0)
    assert {ext.oid: ext.critical for ext in loaded.extensions} == {
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER: False,
        ExtensionOID.CRL_NUMBER: False,
    }
    number = loaded.extensions.get_extension_for_class(crypto_x509.CRLNumber)
    assert number.value.crl_number == 7
    aki = loaded.extensions.get_extension_for_class(crypto_x509.AuthorityKeyIdentifier)
    assert aki.value.key_identifier == chain.issuing.key_identifier
    # Sorted by serial, whatever order they came in.
    serials = [revoked.serial_number for revoked in loaded]
    assert serials == sorted(entry.serial for entry in listed)
    reasons = {}
    for revoked in loaded:
        found = [
            ext.value for ext in revoked.extensions if isinstance(ext.value, crypto_x509.CRLReason)
        ]
        reasons[revoked.serial_number] = found[0].reason.name if found else None
    # cryptography's ReasonFlags names are the asn1crypto names the enum values use.
    assert reasons == {
        entry.serial: None if entry.reason is RevocationReason.UNSPECIFIED else entry.reason.value
        for entry in listed
    }
    held = loaded.get_revoked_certificate_by_serial_number(officers[0].serial_number)
    assert held is not None
    assert held.revocation_date_utc == (START + timedelta(minutes=5)).replace(microsecond=0)


def test_openssl_refuses_the_held_certificate_and_accepts_the_other(
    chain: Chain, officers: tuple[x509.Certificate, ...], tmp_path: Path
) -> None:
    crl_file = tmp_path / "issuing.crl.pem"
    crl_file.write_bytes(to_pem(issue_crl(chain, entries(officers[0]))))
    held, good = officers
    result = openssl_verify(tmp_path, chain, held, "-crl_check", "-CRLfile", str(crl_file))
    assert result.returncode != 0
    assert "certificate revoked" in result.stderr
    result = openssl_verify(tmp_path, chain, good, "-crl_check", "-CRLfile", str(crl_file))
    assert result.returncode == 0, result.stderr


def test_a_tampered_crl_fails(
    chain: Chain, officers: tuple[x509.Certificate, ...], tmp_path: Path
) -> None:
    tampered = flip_last_byte(issue_crl(chain, entries(officers[0])).dump())
    # openssl 3.0 crl exits 0 either way; the verdict is in the message.
    _returncode, _text, stderr = openssl_crl(tmp_path, chain, tampered)
    assert stderr.strip() == "verify failure"
    crl_file = tmp_path / "tampered.crl.pem"
    crl_file.write_bytes(to_pem(crl.CertificateList.load(tampered)))
    result = openssl_verify(tmp_path, chain, officers[1], "-crl_check", "-CRLfile", str(crl_file))
    assert result.returncode != 0
    assert "CRL signature failure" in result.stderr
    issuer = crypto_x509.load_der_x509_certificate(chain.issuing.dump())
    assert not crypto_x509.load_der_x509_crl(tampered).is_signature_valid(
        issuer.public_key()  # type: ignore[arg-type]
    )


def test_an_empty_crl_works(
    chain: Chain, officers: tuple[x509.Certificate, ...], tmp_path: Path
) -> None:
    certificate_list = issue_crl(chain, [], number=0)
    # RFC 5280 §5.1.2.6: absent rather than an empty SEQUENCE.
    reloaded = crl.CertificateList.load(certificate_list.dump())
    assert reloaded["tbs_cert_list"]["revoked_certificates"].native is None
    returncode, text, stderr = openssl_crl(tmp_path, chain, certificate_list.dump(), "-text")
    assert returncode == 0, stderr
    assert "No Revoked Certificates." in text
    assert len(crypto_x509.load_der_x509_crl(certificate_list.dump())) == 0
    crl_file = tmp_path / "empty.crl.pem"
    crl_file.write_bytes(to_pem(certificate_list))
    result = openssl_verify(tmp_path, chain, officers[0], "-crl_check", "-CRLfile", str(crl_file))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("spec", "hash_alg", "pss"),
    [
        (KeySpec.EC_P384, HashAlg.SHA384, False),
        (KeySpec.RSA_2048, HashAlg.SHA256, True),
        (KeySpec.ED25519, HashAlg.SHA256, False),
    ],
)
def test_crls_signed_with_other_key_types_verify(
    crl_pool: BlockingSessionPool, tmp_path: Path, spec: KeySpec, hash_alg: HashAlg, pss: bool
) -> None:
    other = issue_chain(crl_pool, spec, hash_alg=hash_alg, pss=pss)
    listed = [RevokedEntry(serial=5, revoked_at=START, reason=RevocationReason.SUPERSEDED)]
    returncode, _text, stderr = openssl_crl(tmp_path, other, issue_crl(other, listed).dump())
    assert returncode == 0, stderr
    assert stderr.strip() == "verify OK"


def _build(chain: Chain, **overrides: object) -> crl.CertificateList:
    arguments: dict[str, object] = {
        "issuer": chain.issuing,
        "signer": chain.issuing_signer,
        "number": 1,
        "this_update": THIS_UPDATE,
        "next_update": NEXT_UPDATE,
        "revoked": [
            RevokedEntry(serial=5, revoked_at=START, reason=RevocationReason.KEY_COMPROMISE)
        ],
    }
    arguments.update(overrides)
    return build_crl(**arguments)  # type: ignore[arg-type]


def test_the_defaults_build_a_crl(chain: Chain) -> None:
    # Guards the refusal tests below: without the override, _build succeeds.
    assert len(_build(chain)["tbs_cert_list"]["revoked_certificates"]) == 1


def _revoked(serial: int, *, minutes: int = 0) -> list[RevokedEntry]:
    return [
        RevokedEntry(
            serial=serial,
            revoked_at=START + timedelta(minutes=minutes),
            reason=RevocationReason.SUPERSEDED,
        )
    ]


@pytest.mark.parametrize(
    ("overrides", "code", "message"),
    [
        ({"this_update": THIS_UPDATE.replace(tzinfo=None)}, "pki.invalid_time", "time zone"),
        ({"next_update": THIS_UPDATE}, "pki.invalid_time", "before next_update"),
        ({"number": -1}, "pki.invalid_crl_number", "non-negative"),
        ({"number": MAX_SERIAL + 1}, "pki.invalid_crl_number", "20 octets"),
        ({"revoked": _revoked(0)}, "pki.invalid_serial", "positive"),
        ({"revoked": _revoked(MAX_SERIAL + 1)}, "pki.invalid_serial", "20 octets"),
        ({"revoked": _revoked(5) + _revoked(5, minutes=1)}, "pki.invalid_serial", "twice"),
        ({"revoked": _revoked(5, minutes=60)}, "pki.invalid_time", "after the CRL's thisUpdate"),
    ],
)
def test_build_crl_refuses_bad_requests(
    chain: Chain, overrides: dict[str, object], code: str, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message) as raised:
        _build(chain, **overrides)
    assert raised.value.code == code


def test_only_the_issuing_ca_key_signs_its_crl(chain: Chain, crl_pool: BlockingSessionPool) -> None:
    with pytest.raises(InvalidInputError, match="issuer certificate's key") as raised:
        _build(chain, signer=chain.root_signer)
    assert raised.value.code == "pki.signer_mismatch"
    officer_signer = HsmX509Signer(
        crl_pool, crl_pool.generate_key(KeySpec.EC_P256, label="officer as CRL issuer")
    )
    officer = issue_leaf(chain, officer_signer.key, Profile.OFFICER_SIGNING, email=EMAIL)
    with pytest.raises(InvalidInputError, match="not a CA") as raised:
        _build(chain, issuer=officer, signer=officer_signer)
    assert raised.value.code == "pki.profile_mismatch"


def test_a_broken_signer_is_caught(chain: Chain) -> None:
    with pytest.raises(PkiError, match="does not verify") as raised:
        _build(chain, signer=SignsTheWrongBytes(chain.issuing_signer))
    assert raised.value.code == "pki.signature_check_failed"
