"""Independent acceptance by poppler's ``pdfsig``: with Kyso's root in an NSS database,
every signature Kyso makes is reported "Signature is Valid" and "Certificate is Trusted".

NSS checks revocation as a relying party would: the CRLs of both CAs are imported into the
database (NSS never fetches CRLs itself), and ``pdfsig`` asks Kyso's OCSP responder,
served here on a loopback port that the certificates' AIA extension names, just as
``kyso serve`` would answer it. (poppler 22 reads NSS's last error even after a successful
verification, so an unreachable responder or a missing CRL shows as "Unknown issue with
Certificate" rather than as a revocation warning.)

:func:`nss_database` and :func:`assert_pdfsig_trusts` are meant for reuse: B-LT and B-LTA
documents, and documents with an officer's and a seal signature.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import pytest
from sqlalchemy import Engine

from bench.signer_bench import one_page_pdf
from hsm import BlockingSessionPool
from pki import ocsp
from pki.authority import Authority, AuthorityConfig
from pki.certificates import to_pem
from pki.crl import RevocationReason
from pki.errors import InvalidInputError
from pki.store import CredentialKind
from signer.cms import SigningCredential
from signer.pades import sign_pdf
from signer.service import SigningService
from signer.timestamps import TsaTimestamper, timestamp_reserve
from tests.pki.test_authority import ADMIN
from tests.signer.test_issuing import issue
from tests.signer.test_pades import TEXT, officer

TOOLS = ("pdfsig", "certutil", "crlutil")


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: pdfsig judges the PDF, and the PKI's own tests cover both databases."""
    return f"sqlite:///{tmp_path / 'kyso-test.db'}"


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(arg) for arg in args], capture_output=True, text=True, check=False, timeout=60
    )


def nss_database(directory: Path, authority: Authority) -> Path:
    """An NSS database (``sql:`` format, empty password) that trusts Kyso's root CA for
    e-mail/document signing (``CT,C,C``), holds the issuing CA as an untrusted
    intermediate, and the current CRL of each CA. Returns its directory, for
    ``pdfsig -nssdir sql:DIR``."""
    for tool in TOOLS:
        assert shutil.which(tool), f"{tool} is not installed (Makefile TEST_PACKAGES)"
    directory.mkdir(parents=True, exist_ok=True)
    steps: list[tuple[str | Path, ...]] = [("certutil", "-N", "--empty-password")]
    for kind, nickname, trust in (
        (CredentialKind.ROOT_CA, "kyso-root", "CT,C,C"),
        (CredentialKind.ISSUING_CA, "kyso-issuing", ",,"),
    ):
        pem = directory / f"{nickname}.pem"
        pem.write_bytes(to_pem(authority.ca_certificate(kind)))
        steps.append(("certutil", "-A", "-n", nickname, "-t", trust, "-i", pem))
    for kind, nickname in (
        (CredentialKind.ROOT_CA, "root"),
        (CredentialKind.ISSUING_CA, "issuing"),
    ):
        crl = directory / f"{nickname}.crl"
        crl.write_bytes(authority.current_crl(kind))
        steps.append(("crlutil", "-I", "-t", "1", "-i", crl))
    for step in steps:
        done = run(*step, "-d", f"sql:{directory}")
        assert done.returncode == 0, f"{' '.join(map(str, step))}: {done.stderr}"
    return directory


def assert_pdfsig_trusts(
    pdf: Path, nssdir: Path, *, signatures: int, document_timestamps: int = 0
) -> str:
    """Run ``pdfsig -nssdir sql:DIR FILE`` (online OCSP included, as a user would) and
    require exactly ``signatures`` signatures, each valid and trusted; returns the report.

    poppler 22 cannot validate ETSI.RFC3161 document timestamps (B-LTA): it lists them with
    type "unknown"; ``document_timestamps`` of them are expected and left to pyHanko."""
    done = run("pdfsig", "-nssdir", f"sql:{nssdir}", pdf)
    report = done.stdout + done.stderr
    blocks = re.split(r"^Signature #\d+:$", done.stdout, flags=re.MULTILINE)[1:]
    stamps = [block for block in blocks if "- Signature Type: unknown" in block]
    assert len(stamps) == document_timestamps, report
    assert done.returncode == 0 or document_timestamps, report
    blocks = [block for block in blocks if block not in stamps]
    assert len(blocks) == signatures, report
    for number, block in enumerate(blocks, start=1):
        assert "- Signature Validation: Signature is Valid." in block, (number, report)
        assert "- Certificate Validation: Certificate is Trusted." in block, (number, report)
    return report


class _OcspHandler(BaseHTTPRequestHandler):
    """Kyso's OCSP responder over HTTP, as ``/pki/ocsp`` serves it (POST and GET)."""

    responder: ocsp.OcspResponder
    answered: list[str]
    """The status of every response sent."""

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._answer(self.rfile.read(min(length, ocsp.MAX_REQUEST_BYTES)))

    def do_GET(self) -> None:
        try:
            request = ocsp.parse_get_path(unquote(self.path.rsplit("/", 1)[-1]))
        except InvalidInputError:
            request = b""
        self._answer(request)

    def _answer(self, request: bytes) -> None:
        result = self.responder.respond(request)
        self.answered.append(result.status)
        der = result.der
        self.send_response(200)
        self.send_header("Content-Type", "application/ocsp-response")
        self.send_header("Content-Length", str(len(der)))
        self.end_headers()
        self.wfile.write(der)

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass(frozen=True, kw_only=True)
class ServedCa:
    authority: Authority
    ocsp_answers: list[str]
    """The status of every OCSP response the responder sent."""


@pytest.fixture
def served(engine: Engine, pool: BlockingSessionPool) -> Iterator[ServedCa]:
    """Kyso's CA whose certificates name a loopback port as their OCSP responder, with the
    responder answering there."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    authority = Authority(
        engine=engine,
        pool=pool,
        config=AuthorityConfig(public_url=f"http://127.0.0.1:{port}"),
    )
    authority.ensure_hierarchy(ADMIN)
    answers: list[str] = []
    handler = type(
        "Handler",
        (_OcspHandler,),
        {"responder": authority.ocsp_responder(), "answered": answers},
    )
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield ServedCa(authority=authority, ocsp_answers=answers)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.parametrize("level", ["B-LT", "B-LTA"])
def test_pdfsig_trusts_long_term_signatures(
    served: ServedCa, pool: BlockingSessionPool, tmp_path: Path, level: str
) -> None:
    authority = served.authority
    credential = officer(authority)
    service = SigningService(
        authority=authority,
        pool=pool,
        timestamper=TsaTimestamper(respond=authority.timestamp_authority().respond),
    )
    pdf = tmp_path / f"{level}.pdf"
    pdf.write_bytes(service.sign(one_page_pdf(TEXT), credential.id, level=level))  # type: ignore[arg-type]
    nssdir = nss_database(tmp_path / "nss", authority)
    assert_pdfsig_trusts(
        pdf, nssdir, signatures=1, document_timestamps=1 if level == "B-LTA" else 0
    )


def test_pdfsig_trusts_both_signatures_of_an_issued_document(
    served: ServedCa, engine: Engine, pool: BlockingSessionPool, tmp_path: Path
) -> None:
    """The officer's certifying signature and the clerk's seal, as the registry issues them."""
    authority = served.authority
    pdf = tmp_path / "issued.pdf"
    pdf.write_bytes(issue(engine, pool, authority, tmp_path, with_images=False).pdf)
    nssdir = nss_database(tmp_path / "nss", authority)
    report = assert_pdfsig_trusts(pdf, nssdir, signatures=2)
    assert "Công an phường Bến Thành" in report


@pytest.mark.parametrize("level", ["B-B", "B-T"])
def test_pdfsig_trusts_every_signature(
    served: ServedCa, pool: BlockingSessionPool, tmp_path: Path, level: str
) -> None:
    authority = served.authority
    credential = officer(authority)
    timestamper = None
    reserve = 0
    if level == "B-T":
        timestamper = TsaTimestamper(respond=authority.timestamp_authority().respond)
        reserve = timestamp_reserve(timestamper)
    prepared = SigningCredential.prepare(
        credential, authority.internal_chain(), timestamp_reserve=reserve
    )
    pdf = tmp_path / f"{level}.pdf"
    pdf.write_bytes(
        sign_pdf(
            one_page_pdf(TEXT),
            prepared,
            pool,
            usable=authority.usable_credential,
            level=level,  # type: ignore[arg-type]
            timestamper=timestamper,
        )
    )
    nssdir = nss_database(tmp_path / "nss", authority)
    report = assert_pdfsig_trusts(pdf, nssdir, signatures=1)
    assert "Nguyễn Văn Ánh" in report
    assert "ETSI.CAdES.detached" in report
    assert "successful" in served.ocsp_answers, "pdfsig asked Kyso's OCSP responder"


def test_pdfsig_reports_a_revoked_signer(
    served: ServedCa, pool: BlockingSessionPool, tmp_path: Path
) -> None:
    """The check can fail: once the officer's certificate is revoked, OCSP and the CRL
    say so and pdfsig no longer calls it trusted."""
    authority = served.authority
    credential = officer(authority)
    pdf = tmp_path / "signed.pdf"
    prepared = SigningCredential.prepare(credential, authority.internal_chain())
    pdf.write_bytes(sign_pdf(one_page_pdf(TEXT), prepared, pool, usable=None))
    authority.revoke(credential.id, RevocationReason.KEY_COMPROMISE, ADMIN)
    nssdir = nss_database(tmp_path / "nss", authority)
    with pytest.raises(AssertionError, match="Certificate is Trusted"):
        assert_pdfsig_trusts(pdf, nssdir, signatures=1)
    done = run("pdfsig", "-nssdir", f"sql:{nssdir}", pdf)
    assert "Certificate has been Revoked." in done.stdout, done.stdout
