"""Builders of signed documents and of their tampered variants for the verifier tests.

Signed documents come from the real signer (tests may use it; the verifier may not).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import BytesIO

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader

from bench.signer_bench import one_page_pdf
from hsm import BlockingSessionPool
from pki.authority import Authority
from pki.store import CredentialKind
from tests.signer.test_ltv import service
from tests.signer.test_pades import TEXT, officer
from verifier.policy import Policy, default_policy


def root_der(authority: Authority) -> bytes:
    """The demo root, DER: the anchor Kyso's own documents chain to."""
    certificate: asn1_x509.Certificate = authority.ca_certificate(CredentialKind.ROOT_CA)
    return bytes(certificate.dump())


def kyso_policy(authority: Authority, *, require_ltv: bool = False) -> Policy:
    """The default policy as the service builds it: the demo root as the anchor and the
    current CRLs of Kyso's own CAs, read from the database."""
    crls = [authority.current_crl(k) for k in (CredentialKind.ROOT_CA, CredentialKind.ISSUING_CA)]
    return default_policy([root_der(authority)], require_ltv=require_ltv, crls=crls)


def signed(authority: Authority, pool: BlockingSessionPool, level: str = "B-B") -> bytes:
    """A one-page PDF signed by a fresh officer of ``authority`` at ``level``."""
    credential = officer(authority)
    return service(authority, pool).sign(one_page_pdf(TEXT), credential.id, level=level)  # type: ignore[arg-type]


def foreign_root() -> bytes:
    """A self-signed CA certificate that has nothing to do with Kyso's hierarchy, DER."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Some other root")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.DER)


def _byte_range(data: bytes) -> tuple[int, int, int, int]:
    signature = PdfFileReader(BytesIO(data)).embedded_signatures[0]
    start1, length1, start2, length2 = (int(x) for x in signature.sig_object["/ByteRange"])
    return start1, length1, start2, length2


def flipped_signed_byte(data: bytes) -> bytes:
    """One byte of the signed content changed: the page's text, which stays parseable."""
    _, length1, _, _ = _byte_range(data)
    at = data.index(b"Tj ET")  # the page content stream precedes the signature dictionary
    assert at < length1
    return data[: at - 3] + bytes([data[at - 3] ^ 0x01]) + data[at - 2 :]


def zeroed_contents(data: bytes) -> bytes:
    """The /Contents hex string replaced by zeros: no CMS at all, same length."""
    _, length1, start2, _ = _byte_range(data)
    return data[: length1 + 1] + b"0" * (start2 - length1 - 2) + data[start2 - 1 :]


def appended_garbage(data: bytes) -> bytes:
    """Bytes after the final %%EOF that are not an incremental update."""
    return data + b"\n1 0 obj\n<< /Type /Catalog /Pages 9 0 R >>\nendobj\n% no xref, no trailer\n"


def replaced_page_content(data: bytes) -> bytes:
    """A proper incremental update that replaces page 1's content stream after signing."""
    writer = IncrementalPdfFileWriter(BytesIO(data))
    page_ref, _ = writer.find_page_for_modification(0)
    page = page_ref.get_object()
    forged = generic.StreamObject(stream_data=b"BT /F1 14 Tf 72 770 Td (Forged text) Tj ET")
    page["/Contents"] = writer.add_object(forged)
    writer.update_container(page)
    out = BytesIO()
    writer.write(out)
    return out.getvalue()
