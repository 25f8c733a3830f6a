"""PAdES B-B signing end to end on SoftHSM: pyHanko, openssl, qpdf and pdfsig check what
Kyso produces; tampering breaks it; an unusable credential is refused."""

from __future__ import annotations

import hashlib
import pickle
import shutil
import subprocess
from io import BytesIO
from pathlib import Path

import pytest
from asn1crypto import cms, tsp
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext
from sqlalchemy import Engine

from bench.signer_bench import one_page_pdf
from hsm import BlockingSessionPool, KeySpec
from pki.authority import Authority, Credential
from pki.certificates import to_pem
from pki.errors import CredentialUnusableError
from pki.store import CredentialKind
from signer.cms import SigningCredential
from signer.errors import InvalidDocumentError
from signer.pades import sign_pdf
from tests.pki.test_authority import ADMIN, add_officer, commune, make_authority

TEXT = "Giấy xác nhận thông tin về cư trú"

# signed attributes PAdES B-B allows here, by OID
CONTENT_TYPE = "1.2.840.113549.1.9.3"
MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
SIGNING_TIME = "1.2.840.113549.1.9.5"
SIGNING_CERTIFICATE_V2 = "1.2.840.113549.1.9.16.2.47"


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: this pipeline reads the database only through the PKI, whose own tests
    run on both engines."""
    return f"sqlite:///{tmp_path / 'kyso-test.db'}"


def officer(authority: Authority) -> Credential:
    return authority.enroll_person(add_officer(authority, commune(authority)), ADMIN)


def prepared(authority: Authority, credential: Credential) -> SigningCredential:
    return SigningCredential.prepare(credential, authority.internal_chain())


def validation_context(authority: Authority) -> ValidationContext:
    return ValidationContext(
        trust_roots=[authority.ca_certificate(CredentialKind.ROOT_CA)],
        other_certs=[authority.ca_certificate(CredentialKind.ISSUING_CA)],
        allow_fetching=False,
        revocation_mode="soft-fail",
    )


def signed_content(signed: bytes) -> tuple[bytes, bytes]:
    """The bytes the signature covers (its /ByteRange) and the CMS."""
    signature = PdfFileReader(BytesIO(signed)).embedded_signatures[0]
    start1, length1, start2, length2 = (int(x) for x in signature.sig_object["/ByteRange"])
    covered = signed[start1 : start1 + length1] + signed[start2 : start2 + length2]
    return covered, signature.pkcs7_content


def tool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(arg) for arg in args], capture_output=True, text=True, check=False, timeout=30
    )


@pytest.mark.parametrize(
    ("key_spec", "rsa_pss", "digest", "algorithm"),
    [
        (KeySpec.EC_P256, False, "sha256", "sha256_ecdsa"),
        (KeySpec.EC_P384, False, "sha384", "sha384_ecdsa"),
        (KeySpec.RSA_2048, False, "sha256", "sha256_rsa"),
        (KeySpec.RSA_2048, True, "sha256", "rsassa_pss"),
    ],
)
def test_signature_validates_in_pyhanko_and_openssl(
    engine: Engine,
    pool: BlockingSessionPool,
    tmp_path: Path,
    key_spec: KeySpec,
    rsa_pss: bool,
    digest: str,
    algorithm: str,
) -> None:
    """The algorithms follow the credential's key: P-384 signs over SHA-384, RSA with
    PKCS#1 v1.5 or, when asked, RSASSA-PSS."""
    authority = make_authority(engine, pool, key_spec=key_spec)
    credential = officer(authority)
    assert credential.certificate is not None
    signed = sign_pdf(
        one_page_pdf(TEXT),
        SigningCredential.prepare(credential, authority.internal_chain(), rsa_pss=rsa_pss),
        pool,
        usable=authority.usable_credential,
        field_name="Officer",
        reason="Xác nhận",
        location="Phường Bến Thành",
    )

    signature = PdfFileReader(BytesIO(signed)).embedded_signatures[0]
    assert signature.field_name == "Officer"
    assert signature.sig_object["/SubFilter"] == "/ETSI.CAdES.detached"
    assert "/M" in signature.sig_object
    status = validate_pdf_signature(signature, validation_context(authority))
    assert status.intact
    assert status.valid
    assert status.trusted
    assert status.coverage is SignatureCoverageLevel.ENTIRE_FILE
    assert status.signing_cert.dump() == credential.certificate.dump()
    assert status.md_algorithm == digest

    signer_info = cms.ContentInfo.load(signature.pkcs7_content)["content"]["signer_infos"][0]
    assert signer_info["digest_algorithm"]["algorithm"].native == digest
    assert signer_info["signature_algorithm"]["algorithm"].native == algorithm
    attributes = {attribute["type"].dotted for attribute in signer_info["signed_attrs"]}
    assert attributes == {CONTENT_TYPE, MESSAGE_DIGEST, SIGNING_CERTIFICATE_V2}
    assert SIGNING_TIME not in attributes
    (ess,) = (
        attribute["values"][0]
        for attribute in signer_info["signed_attrs"]
        if attribute["type"].dotted == SIGNING_CERTIFICATE_V2
    )
    cert_id = tsp.SigningCertificateV2.load(ess.dump())["certs"][0]
    assert cert_id["cert_hash"].native == hashlib.sha256(credential.certificate.dump()).digest()
    assert cert_id["issuer_serial"]["serial_number"].native == credential.certificate.serial_number
    assert cert_id["issuer_serial"]["issuer"][0].chosen == credential.certificate.issuer

    covered, cms_der = signed_content(signed)
    root = tmp_path / "root.pem"
    root.write_bytes(to_pem(authority.ca_certificate(CredentialKind.ROOT_CA)))
    issuing = tmp_path / "issuing.pem"
    issuing.write_bytes(to_pem(authority.ca_certificate(CredentialKind.ISSUING_CA)))
    (tmp_path / "content.bin").write_bytes(covered)
    (tmp_path / "sig.der").write_bytes(cms_der)
    verified = tool(
        "openssl", "cms", "-verify", "-binary", "-inform", "DER",
        "-in", tmp_path / "sig.der", "-content", tmp_path / "content.bin",
        "-CAfile", root, "-certfile", issuing, "-purpose", "any", "-out", "/dev/null",
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    assert "Verification successful" in verified.stderr


def test_qpdf_and_pdfsig_accept_the_signed_file(
    engine: Engine, pool: BlockingSessionPool, tmp_path: Path
) -> None:
    # make test installs both (Debian qpdf, poppler-utils): a missing checker is a failure.
    assert shutil.which("qpdf"), "qpdf is not installed"
    assert shutil.which("pdfsig"), "pdfsig (poppler-utils) is not installed"
    authority = make_authority(engine, pool)
    credential = prepared(authority, officer(authority))
    path = tmp_path / "signed.pdf"
    path.write_bytes(sign_pdf(one_page_pdf(TEXT), credential, pool, usable=None))

    checked = tool("qpdf", "--check", path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "No syntax or stream encoding errors" in checked.stdout
    reported = tool("pdfsig", path)
    assert reported.returncode == 0, reported.stderr
    assert "Signature is Valid" in reported.stdout
    assert "ETSI.CAdES.detached" in reported.stdout


def test_tampered_document_fails_validation(engine: Engine, pool: BlockingSessionPool) -> None:
    authority = make_authority(engine, pool)
    credential = prepared(authority, officer(authority))
    signed = sign_pdf(one_page_pdf("Hello"), credential, pool, usable=None)
    assert signed.count(b"(Hello)") == 1
    tampered = signed.replace(b"(Hello)", b"(Jello)")

    signature = PdfFileReader(BytesIO(tampered)).embedded_signatures[0]
    status = validate_pdf_signature(signature, validation_context(authority))
    assert not status.intact
    assert not status.bottom_line


def test_suspended_credential_is_refused(engine: Engine, pool: BlockingSessionPool) -> None:
    authority = make_authority(engine, pool)
    credential = officer(authority)
    ready = prepared(authority, credential)
    document = one_page_pdf(TEXT)
    sign_pdf(document, ready, pool, usable=authority.usable_credential)

    authority.suspend(credential.id, ADMIN)
    with pytest.raises(CredentialUnusableError, match="suspended"):
        sign_pdf(document, ready, pool, usable=authority.usable_credential)


def test_not_a_pdf_is_a_clear_error(engine: Engine, pool: BlockingSessionPool) -> None:
    authority = make_authority(engine, pool)
    credential = prepared(authority, officer(authority))
    with pytest.raises(InvalidDocumentError, match="cannot be prepared"):
        sign_pdf(b"%PDF-1.7\nnot really", credential, pool, usable=None)
    with pytest.raises(InvalidDocumentError, match="larger than"):
        sign_pdf(one_page_pdf(TEXT), credential, pool, usable=None, max_size=100)


def test_prepared_credential_is_plain_bytes(engine: Engine, pool: BlockingSessionPool) -> None:
    """Shared across threads and pickled to worker processes; the chain is embedded."""
    authority = make_authority(engine, pool)
    credential = officer(authority)
    ready = prepared(authority, credential)
    assert pickle.loads(pickle.dumps(ready)) == ready
    signed = sign_pdf(one_page_pdf(TEXT), ready, pool, usable=None)
    _, contents = signed_content(signed)
    content_info = cms.ContentInfo.load(contents)  # /Contents is zero-padded
    assert len(content_info.dump()) <= ready.max_cms_size == len(contents)
    embedded = {c.chosen.dump() for c in content_info["content"]["certificates"]}
    assert embedded == {c.dump() for c in (credential.certificate, *authority.internal_chain())}
