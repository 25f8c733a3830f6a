"""PAdES B-LT and B-LTA: the DSS makes the signature validate with fetching disabled and
revocation checking hard-failing; B-LTA adds a document timestamp over it; the signing
service reuses a credential's preparation until the PKI status changes."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from pathlib import Path

import pytest
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.diff_analysis import ModificationLevel
from pyhanko.sign.validation import (
    DocumentSecurityStore,
    validate_pdf_signature,
    validate_pdf_timestamp,
)
from pyhanko_certvalidator import ValidationContext
from sqlalchemy import Engine

from bench.signer_bench import one_page_pdf
from hsm import BlockingSessionPool, KeySpec
from pki.authority import Authority
from pki.crl import RevocationReason
from pki.errors import CredentialUnusableError
from pki.store import CredentialKind
from signer.errors import SignerError, TimestampFailedError
from signer.ltv import DOCUMENT_TIMESTAMP_FIELD, collect_validation_data
from signer.service import SigningService
from signer.timestamps import MAX_TSA_RESPONSE, TsaTimestamper, http_tsa, timestamp_reserve
from tests.pki.test_authority import ADMIN, add_officer, commune, make_authority
from tests.signer.test_levels import kyso_tsa
from tests.signer.test_pades import TEXT, officer, tool


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: this pipeline reads the database only through the PKI, whose own tests
    run on both engines."""
    return f"sqlite:///{tmp_path / 'kyso-test.db'}"


def service(authority: Authority, pool: BlockingSessionPool) -> SigningService:
    timestamper = kyso_tsa(authority)
    return SigningService(
        authority=authority,
        pool=pool,
        timestamper=timestamper,
        timestamp_reserve=timestamp_reserve(timestamper),
    )


def offline_context(reader: PdfFileReader, authority: Authority) -> ValidationContext:
    """Trust the demo root only; revocation data only from the DSS, and required."""
    return DocumentSecurityStore.read_dss(reader).as_validation_context(
        {
            "trust_roots": [authority.ca_certificate(CredentialKind.ROOT_CA)],
            "allow_fetching": False,
            "revocation_mode": "hard-fail",
        }
    )


@pytest.mark.parametrize(
    ("level", "key_spec"),
    [("B-LT", KeySpec.EC_P256), ("B-LTA", KeySpec.EC_P256), ("B-LT", KeySpec.RSA_2048)],
)
def test_long_term_levels_validate_offline(
    engine: Engine, pool: BlockingSessionPool, tmp_path: Path, level: str, key_spec: KeySpec
) -> None:
    authority = make_authority(engine, pool, key_spec=key_spec)
    credential = officer(authority)
    signed = service(authority, pool).sign(one_page_pdf(TEXT), credential.id, level=level)  # type: ignore[arg-type]

    reader = PdfFileReader(BytesIO(signed))
    signature = reader.embedded_regular_signatures[0]
    status = validate_pdf_signature(signature, offline_context(reader, authority))
    assert status.bottom_line, status.summary()
    assert status.intact
    assert status.valid
    assert status.trusted
    assert status.revocation_details is None  # no revocation problem under hard-fail
    assert status.timestamp_validity is not None
    assert status.timestamp_validity.trusted
    # what follows the signature is only validation data (and the document timestamp)
    assert status.modification_level is ModificationLevel.LTA_UPDATES
    dss = DocumentSecurityStore.read_dss(reader)
    assert len(list(dss.ocsps)) == 2
    assert len(list(dss.crls)) == 1

    # without the DSS the same check fails: the DSS is what makes it long-term
    bare = ValidationContext(
        trust_roots=[authority.ca_certificate(CredentialKind.ROOT_CA)],
        other_certs=[authority.ca_certificate(CredentialKind.ISSUING_CA)],
        allow_fetching=False,
        revocation_mode="hard-fail",
        ocsps=[],
        crls=[],
    )
    assert not validate_pdf_signature(signature, bare).bottom_line

    timestamps = reader.embedded_timestamp_signatures
    if level == "B-LTA":
        (document_timestamp,) = timestamps
        assert document_timestamp.field_name == DOCUMENT_TIMESTAMP_FIELD
        ts_status = validate_pdf_timestamp(
            document_timestamp, validation_context=offline_context(reader, authority)
        )
        assert ts_status.intact
        assert ts_status.valid
        assert ts_status.trusted
    else:
        assert timestamps == []

    path = tmp_path / "signed.pdf"
    path.write_bytes(signed)
    assert tool("qpdf", "--check", path).returncode == 0
    assert "Signature is Valid." in tool("pdfsig", path).stdout


def test_validation_data_refreshes_on_status_change(
    engine: Engine, pool: BlockingSessionPool
) -> None:
    authority = make_authority(engine, pool)
    signing = service(authority, pool)
    unit = commune(authority)
    first = authority.enroll_person(add_officer(authority, unit), ADMIN)
    second = authority.enroll_seal(unit, ADMIN)
    signing.sign(one_page_pdf(TEXT), first.id)
    data = collect_validation_data(authority, first)
    assert data.is_fresh(authority.status_generation(), data.refresh_after.replace(year=2000))

    authority.suspend(second.id, ADMIN)  # someone else's status moves the generation
    assert not data.is_fresh(authority.status_generation(), data.refresh_after.replace(year=2000))
    signing.sign(one_page_pdf(TEXT), first.id)  # re-checked, still usable

    authority.revoke(first.id, RevocationReason.KEY_COMPROMISE, ADMIN)
    with pytest.raises(CredentialUnusableError, match="revoked"):
        signing.sign(one_page_pdf(TEXT), first.id)


def test_no_validation_data_for_a_certificate_not_in_good_standing(
    engine: Engine, pool: BlockingSessionPool
) -> None:
    authority = make_authority(engine, pool)
    credential = officer(authority)
    authority.suspend(credential.id, ADMIN)
    with pytest.raises(SignerError, match="not in good standing") as raised:
        collect_validation_data(authority, credential)
    assert raised.value.code == "signer.ltv_unavailable"


class _ExternalTsa(ThreadingHTTPServer):
    """An RFC 3161 TSA over HTTP on loopback: Kyso's own TSA behind a real socket, standing
    in for an external one; ``reply`` can replace its answer."""

    def __init__(self, authority: Authority) -> None:
        tsa = authority.timestamp_authority()
        server = self
        self.reply: tuple[str, bytes] | None = None

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                request = self.rfile.read(int(self.headers["Content-Length"]))
                content_type, body = server.reply or (
                    "application/timestamp-reply",
                    tsa.respond(request).der,
                )
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}/tsa"
        threading.Thread(target=self.serve_forever, daemon=True).start()


def test_external_tsa_over_http_timestamps_b_t_and_bad_answers_stop_the_signature(
    engine: Engine, pool: BlockingSessionPool
) -> None:
    authority = make_authority(engine, pool)
    credential = officer(authority)
    tsa = _ExternalTsa(authority)
    try:
        signing = SigningService(
            authority=authority,
            pool=pool,
            timestamper=TsaTimestamper(respond=http_tsa(tsa.url, timeout=5)),
            own_tsa=False,
        )
        signed = signing.sign(one_page_pdf(TEXT), credential.id, level="B-T")
        reader = PdfFileReader(BytesIO(signed))
        status = validate_pdf_signature(
            reader.embedded_regular_signatures[0],
            ValidationContext(
                trust_roots=[authority.ca_certificate(CredentialKind.ROOT_CA)],
                other_certs=[authority.ca_certificate(CredentialKind.ISSUING_CA)],
                allow_fetching=False,
                revocation_mode="soft-fail",
            ),
        )
        assert status.bottom_line
        assert status.timestamp_validity is not None
        assert status.timestamp_validity.trusted

        with pytest.raises(SignerError, match="external TSA") as raised:
            signing.sign(one_page_pdf(TEXT), credential.id, level="B-LT")
        assert raised.value.code == "signer.ltv_unavailable"

        for reply, message in (
            (("text/html", b"<html>maintenance</html>"), "not a timestamp"),
            (("application/timestamp-reply", bytes(MAX_TSA_RESPONSE + 1)), "more than"),
            (("application/timestamp-reply", b"\x30\x03\x02\x01\x02"), "TSA"),
        ):
            tsa.reply = reply
            with pytest.raises(TimestampFailedError, match=message):
                signing.sign(one_page_pdf(TEXT), credential.id, level="B-T")
    finally:
        tsa.shutdown()
        tsa.server_close()

    with pytest.raises(TimestampFailedError, match="did not answer"):
        http_tsa(tsa.url, timeout=1)(b"\x30\x00")
    with pytest.raises(ValueError, match="http"):
        http_tsa("file:///etc/passwd")
