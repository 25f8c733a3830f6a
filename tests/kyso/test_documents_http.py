"""The document workflow over HTTP, in process, on SoftHSM and both databases: upload →
officer signature (PIN) → clerk's seal (PIN) → issued with its number; every revision's PDF
and hash; idempotency keys; and every kind of bad input answered with its status and stable
code — never a 5xx (each response is checked by :func:`_no_server_error`).

The service is set up as ``kyso init --demo`` does it (CA hierarchy, two communes, their
officers and seals with the demo PIN), then started through its real lifespan."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.diff_analysis import ModificationLevel
from pyhanko.sign.validation import validate_pdf_signature
from sqlalchemy import select

from audit.events import Action, AuditEvent
from audit.store import audit_entries
from hsm import BlockingSessionPool
from kyso import db
from kyso.app import create_app
from kyso.demo import DEMO_PIN, create_demo
from kyso.pki_service import make_authority
from kyso.settings import Settings
from pki.authority import Authority
from signer.issuing import OFFICER_FIELD, SEAL_FIELD
from tests.conftest import TestToken
from tests.kyso.test_pki_http import ADMIN, REMOTE, _no_server_error, error_code
from tests.signer.test_documents import pages_pdf
from tests.signer.test_ltv import offline_context
from tests.signer.test_stamps import blue_signature_png, draft_pdf, red_seal_png

MAX_BYTES = 64 * 1024
"""The test service's signing_max_bytes: small, so that the limit is easy to cross."""
MAX_PAGES = 3
WRONG_PIN = "000001"


@pytest.fixture
def settings(token: TestToken, tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        hsm_token_label=token.label,
        hsm_pin_file=token.pin_file,
        hsm_acquire_timeout=5,
        hsm_retry_interval=0,
        audit_sequence_interval=0.05,
        audit_checkpoint_interval=3600,
        public_url="https://kyso.example.gov.vn",
        signing_max_bytes=MAX_BYTES,
        signing_max_pages=MAX_PAGES,
    )


@dataclass(frozen=True)
class Demo:
    """The demo commune CAP-BT as ``kyso init --demo`` makes it."""

    unit_id: int
    officer_id: int
    """The officer (Trưởng Công an phường)."""
    officer_credential: int
    seal_credential: int
    other_officer_credential: int
    """The officer of the other demo commune."""


@pytest.fixture
def demo(settings: Settings, tmp_path: Path) -> Demo:
    engine = db.make_engine(settings.sqlalchemy_url)
    try:
        db.upgrade(engine)
        with BlockingSessionPool(settings.hsm_config()) as pool:
            authority = make_authority(settings, engine, pool)
            authority.ensure_hierarchy(ADMIN)
            create_demo(authority, ADMIN, tmp_path / "demo.json")
    finally:
        engine.dispose()
    units = json.loads((tmp_path / "demo.json").read_text(encoding="utf-8"))["units"]
    (here, other) = units

    def officer(unit: dict[str, Any]) -> dict[str, Any]:
        found: dict[str, Any] = next(p for p in unit["people"] if p["role"] == "officer")
        return found

    return Demo(
        unit_id=here["id"],
        officer_id=officer(here)["id"],
        officer_credential=officer(here)["credential_ids"][0],
        seal_credential=here["seal_credential_ids"][0],
        other_officer_credential=officer(other)["credential_ids"][0],
    )


@contextmanager
def started(settings: Settings, **options: Any) -> Iterator[TestClient]:
    with TestClient(create_app(settings), **options) as client:
        client.event_hooks = {"response": [_no_server_error]}
        yield client


@pytest.fixture
def client(settings: Settings, demo: Demo) -> Iterator[TestClient]:
    with started(settings) as running:
        yield running


# -- helpers -----------------------------------------------------------------------------


def authority_of(client: TestClient) -> Authority:
    authority: Authority = client.app.state.runtime.pki.authority  # type: ignore[attr-defined]
    return authority


def upload(
    client: TestClient,
    demo: Demo,
    pdf: bytes | None = None,
    *,
    key: str | None = None,
    **fields: Any,
) -> Any:
    data = {
        "document_type": "CT07",
        "unit_id": str(demo.unit_id),
        "service": "residence",
        "subject_person_id": "079203001234",
        **fields,
    }
    headers = {"Idempotency-Key": key} if key else {}
    return client.post(
        "/api/v1/documents",
        data=data,
        files={"file": ("draft.pdf", draft_pdf() if pdf is None else pdf, "application/pdf")},
        headers=headers,
    )


def uploaded(client: TestClient, demo: Demo, pdf: bytes | None = None) -> dict[str, Any]:
    response = upload(client, demo, pdf)
    assert response.status_code == 201, response.text
    document: dict[str, Any] = response.json()
    return document


def sign(
    client: TestClient,
    document_id: str,
    credential_id: int,
    *,
    pin: str = DEMO_PIN,
    key: str | None = None,
    **body: Any,
) -> Any:
    headers = {"Idempotency-Key": key} if key else {}
    return client.post(
        f"/api/v1/documents/{document_id}/sign",
        json={"credential_id": credential_id, "pin": pin, **body},
        headers=headers,
    )


def seal(client: TestClient, document_id: str, credential_id: int, *, pin: str = DEMO_PIN) -> Any:
    return client.post(
        f"/api/v1/documents/{document_id}/seal", json={"credential_id": credential_id, "pin": pin}
    )


def audit_events(settings: Settings) -> list[AuditEvent]:
    engine = db.make_engine(settings.sqlalchemy_url)
    try:
        with engine.connect() as connection:
            leaves = (
                connection.execute(select(audit_entries.c.leaf).order_by(audit_entries.c.id))
                .scalars()
                .all()
            )
    finally:
        engine.dispose()
    return [AuditEvent.from_leaf(bytes(leaf)) for leaf in leaves]


def document_actions(settings: Settings, document_id: str) -> list[Action]:
    return [
        event.action
        for event in audit_events(settings)
        if event.details.get("document_id") == document_id
    ]


def encrypted(pdf: bytes, tmp_path: Path) -> bytes:
    source, target = tmp_path / "plain.pdf", tmp_path / "encrypted.pdf"
    source.write_bytes(pdf)
    subprocess.run(
        ["qpdf", "--encrypt", "u", "o", "256", "--", str(source), str(target)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return target.read_bytes()


def broken_xref(pdf: bytes) -> bytes:
    """``pdf`` with every cross-reference offset shifted: only a repairing reader opens it."""
    start = pdf.rindex(b"\nxref\n") + 1
    end = pdf.index(b"trailer", start)
    table = pdf[start:end].splitlines(keepends=True)
    shifted = [
        (b"%010d" % (int(line[:10]) + 7)) + line[10:]
        if len(line) >= 18 and line[17:18] == b"n"
        else line
        for line in table
    ]
    return pdf[:start] + b"".join(shifted) + pdf[end:]


def bad_inputs(tmp_path: Path) -> list[tuple[str, bytes, int, str]]:
    """(case, file, HTTP status, error code) for every refused kind of upload."""
    good = draft_pdf()
    assert len(good) < MAX_BYTES - 1024
    return [
        ("not a PDF", b"<html><body>CT07</body></html>", 422, "signer.not_pdf"),
        ("truncated", good[: len(good) // 2], 422, "signer.damaged_pdf"),
        ("broken xref", broken_xref(good), 422, "signer.damaged_pdf"),
        ("encrypted", encrypted(good, tmp_path), 422, "signer.encrypted_pdf"),
        ("too many pages", pages_pdf(MAX_PAGES + 1), 422, "signer.too_many_pages"),
        # Over the limit by a little (the registry's check) and by a lot (the body limit).
        ("too large", good + b"%" + b"x" * (MAX_BYTES - len(good)), 413, "signer.too_large"),
        ("far too large", good + b"%" + b"x" * (4 * MAX_BYTES), 413, "signer.too_large"),
    ]


# -- the workflow -----------------------------------------------------------------------------


def test_upload_sign_seal_issue_over_http(
    client: TestClient, settings: Settings, demo: Demo, tmp_path: Path
) -> None:
    officer_image = client.put(
        f"/api/v1/people/{demo.officer_id}/signature-image",
        content=blue_signature_png(),
        headers={"Content-Type": "image/png"},
    )
    assert officer_image.status_code == 204, officer_image.text
    seal_image = client.put(
        f"/api/v1/units/{demo.unit_id}/seal-image",
        content=red_seal_png(),
        headers={"Content-Type": "image/png"},
    )
    assert seal_image.status_code == 204, seal_image.text

    original = draft_pdf()
    created = upload(client, demo, original, title="Xác nhận thông tin về cư trú")
    assert created.status_code == 201, created.text
    document = created.json()
    assert created.headers["location"] == f"/api/v1/documents/{document['id']}"
    assert document["status"] == "draft"
    assert document["verify_url"] == f"https://kyso.example.gov.vn/v/{document['id']}"
    assert document["revisions"][0]["sha256"] == hashlib.sha256(original).hexdigest()

    # Out of order: the clerk cannot seal a draft.
    early = seal(client, document["id"], demo.seal_credential)
    assert (early.status_code, error_code(early)) == (409, "signer.invalid_state")

    signed = sign(client, document["id"], demo.officer_credential)
    assert signed.status_code == 200, signed.text
    assert signed.json()["status"] == "signed"
    again = sign(client, document["id"], demo.officer_credential)
    assert (again.status_code, error_code(again)) == (409, "signer.invalid_state")

    issued = seal(client, document["id"], demo.seal_credential)
    assert issued.status_code == 200, issued.text
    body = issued.json()
    assert body["status"] == "issued"
    assert body["number_text"] == "Số: 01/XN-CAP-BT"
    assert body["issued_at"].endswith("+07:00")

    shown = client.get(f"/api/v1/documents/{document['id']}").json()
    assert shown == body
    assert [(r["revision"], r["kind"]) for r in shown["revisions"]] == [
        (0, "draft"),
        (1, "signed"),
        (2, "sealed"),
    ]
    pdfs = []
    for revision in shown["revisions"]:
        response = client.get(
            f"/api/v1/documents/{document['id']}/pdf", params={"revision": revision["revision"]}
        )
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/pdf"
        assert hashlib.sha256(response.content).hexdigest() == revision["sha256"]
        assert response.headers["etag"] == f'"{revision["sha256"]}"'
        assert len(response.content) == revision["size"]
        pdfs.append(response.content)
    assert pdfs[0] == original
    latest = client.get(f"/api/v1/documents/{document['id']}/pdf")
    assert latest.content == pdfs[2]
    unchanged = client.get(
        f"/api/v1/documents/{document['id']}/pdf", headers={"If-None-Match": latest.headers["etag"]}
    )
    assert (unchanged.status_code, unchanged.content) == (304, b"")
    missing = client.get(f"/api/v1/documents/{document['id']}/pdf", params={"revision": 3})
    assert (missing.status_code, error_code(missing)) == (404, "signer.document_not_found")

    # The issued PDF: officer then seal, both intact and trusted with the demo root alone.
    reader = PdfFileReader(BytesIO(pdfs[2]))
    signatures = reader.embedded_regular_signatures
    assert [s.field_name for s in signatures] == [OFFICER_FIELD, SEAL_FIELD]
    context = offline_context(reader, authority_of(client))
    for signature in signatures:
        status = validate_pdf_signature(signature, context)
        assert status.bottom_line, status.summary()
        assert status.intact
        assert status.trusted
    assert validate_pdf_signature(signatures[0], context).modification_level in (
        ModificationLevel.FORM_FILLING,
    )

    assert document_actions(settings, document["id"]) == [
        Action.DOCUMENT_UPLOADED,
        Action.DOCUMENT_SIGNED,
        Action.DOCUMENT_SEALED,
        Action.DOCUMENT_ISSUED,
    ]
    signed_event = next(
        e
        for e in audit_events(settings)
        if e.action is Action.DOCUMENT_SIGNED and e.details.get("document_id") == document["id"]
    )
    assert signed_event.actor.id == "local"
    assert signed_event.subject.document_sha256 == shown["revisions"][1]["sha256"]


def test_idempotency_keys_over_http(client: TestClient, settings: Settings, demo: Demo) -> None:
    pdf = draft_pdf()
    first = upload(client, demo, pdf, key="upload-0001")
    second = upload(client, demo, pdf, key="upload-0001")
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    document_id = first.json()["id"]
    other = upload(client, demo, pdf + b"\n%another\n", key="upload-0001")
    assert (other.status_code, error_code(other)) == (409, "signer.idempotency_conflict")

    signed = sign(client, document_id, demo.officer_credential, key="sign-0001")
    repeated = sign(client, document_id, demo.officer_credential, key="sign-0001")
    assert signed.status_code == repeated.status_code == 200
    assert signed.json() == repeated.json()
    # The key is scoped by the caller: another service's same key is its own request.
    foreign = client.post(
        f"/api/v1/documents/{document_id}/sign",
        json={"credential_id": demo.officer_credential, "pin": DEMO_PIN},
        headers={"Idempotency-Key": "sign-0001", "X-Kyso-Actor": "portal"},
    )
    assert (foreign.status_code, error_code(foreign)) == (409, "signer.invalid_state")

    assert document_actions(settings, document_id) == [
        Action.DOCUMENT_UPLOADED,
        Action.DOCUMENT_SIGNED,
    ]
    bad_key = upload(client, demo, key="has space")
    assert (bad_key.status_code, error_code(bad_key)) == (422, "signer.invalid_request")


# -- bad input ------------------------------------------------------------------------------


def test_bad_uploads_are_refused_with_their_codes(
    client: TestClient, settings: Settings, demo: Demo, tmp_path: Path
) -> None:
    for case, pdf, status, code in bad_inputs(tmp_path):
        response = upload(client, demo, pdf)
        assert (response.status_code, error_code(response)) == (status, code), case
        if status == 413:
            assert str(MAX_BYTES) in response.json()["error"]["message"], case
        if code == "signer.too_many_pages":
            assert str(MAX_PAGES) in response.json()["error"]["message"]

    for fields, code in [
        ({"document_type": "CT99"}, "signer.unknown_document_type"),
        ({"unit_id": "999999"}, "signer.invalid_request"),
        ({"service": "has space"}, "signer.invalid_request"),
        ({"title": "bad\u202etitle"}, "signer.invalid_request"),
    ]:
        response = upload(client, demo, **fields)
        assert (response.status_code, error_code(response)) == (422, code), fields
    missing = client.post(
        "/api/v1/documents", files={"file": ("d.pdf", draft_pdf(), "application/pdf")}
    )
    assert missing.status_code == 422
    assert "detail" in missing.json()
    as_json = client.post("/api/v1/documents", json={"document_type": "CT07"})
    assert as_json.status_code == 422

    # Nothing was stored: only the last good upload below makes a document.
    assert not [e for e in audit_events(settings) if e.action is Action.DOCUMENT_UPLOADED]


def test_bad_signing_requests(client: TestClient, settings: Settings, demo: Demo) -> None:
    document = uploaded(client, demo)
    unknown = "0" * 26
    for response, status, code in [
        (client.get(f"/api/v1/documents/{unknown}"), 404, "signer.document_not_found"),
        (client.get("/api/v1/documents/not-an-id"), 404, "signer.document_not_found"),
        (client.get(f"/api/v1/documents/{unknown}/pdf"), 404, "signer.document_not_found"),
        (sign(client, unknown, demo.officer_credential), 404, "signer.document_not_found"),
        (seal(client, unknown, demo.seal_credential), 404, "signer.document_not_found"),
        (
            sign(client, document["id"], demo.officer_credential, placement={"field": "Nope"}),
            422,
            "signer.field_not_found",
        ),
        (
            sign(
                client,
                document["id"],
                demo.officer_credential,
                placement={"anchor": "PHÓ CHỦ TỊCH"},
            ),
            422,
            "signer.anchor_not_found",
        ),
        (
            sign(
                client,
                document["id"],
                demo.officer_credential,
                placement={"page": 2, "rect": [72, 72, 240, 140]},
            ),
            422,
            "signer.bad_placement",
        ),
        (sign(client, document["id"], demo.seal_credential), 409, "signer.wrong_credential"),
        (
            sign(client, document["id"], demo.other_officer_credential),
            409,
            "signer.wrong_credential",
        ),
        (seal(client, document["id"], demo.seal_credential), 409, "signer.invalid_state"),
        (
            client.post(
                f"/api/v1/documents/{document['id']}/sign",
                json={"credential_id": demo.officer_credential},
            ),
            400,
            "pki.pin_required",
        ),
        (sign(client, document["id"], 999_999), 404, "pki.not_found"),
    ]:
        assert (response.status_code, error_code(response)) == (status, code), response.text

    malformed = sign(client, document["id"], demo.officer_credential, placement={"rect": [1, 2, 3]})
    assert malformed.status_code == 422
    assert DEMO_PIN not in malformed.text
    nan = client.post(
        f"/api/v1/documents/{document['id']}/sign",
        content=b'{"credential_id": 1, "pin": "482915", "placement": {"page": 1, '
        b'"rect": [NaN, 0, 100, 100]}}',
        headers={"Content-Type": "application/json"},
    )
    assert nan.status_code == 422
    assert DEMO_PIN not in nan.text
    bad_actor = client.get(
        f"/api/v1/documents/{document['id']}",
        headers={"X-Kyso-Actor": "ai\u0111o".encode()},  # type: ignore[arg-type]
    )
    assert (bad_actor.status_code, error_code(bad_actor)) == (422, "kyso.invalid_request")
    huge = client.post(
        f"/api/v1/documents/{document['id']}/sign",
        content=b'{"credential_id": 1, "pin": "' + b"1" * (3 * 1024 * 1024) + b'"}',
        headers={"Content-Type": "application/json"},
    )
    assert (huge.status_code, error_code(huge)) == (413, "kyso.body_too_large")

    # Still a draft, and only the upload was audited.
    assert client.get(f"/api/v1/documents/{document['id']}").json()["status"] == "draft"
    assert document_actions(settings, document["id"]) == [Action.DOCUMENT_UPLOADED]

    # Stamp images.
    path = f"/api/v1/people/{demo.officer_id}/signature-image"
    for content, content_type, status, code in [
        (b"GIF89a....", "image/png", 422, "signer.bad_image"),
        (blue_signature_png(), "image/jpeg", 415, "kyso.unsupported_media_type"),
        (b"\x89PNG\r\n\x1a\n" + bytes(3 * 1024 * 1024), "image/png", 413, "kyso.body_too_large"),
    ]:
        response = client.put(path, content=content, headers={"Content-Type": content_type})
        assert (response.status_code, error_code(response)) == (status, code)
    nobody = client.put(
        "/api/v1/people/999999/signature-image",
        content=blue_signature_png(),
        headers={"Content-Type": "image/png"},
    )
    assert (nobody.status_code, error_code(nobody)) == (404, "pki.not_found")


def test_signing_routes_answer_this_machine_only(settings: Settings, demo: Demo) -> None:
    with started(settings, client=REMOTE) as remote:
        for response in (
            remote.get(f"/api/v1/documents/{'0' * 26}"),
            remote.post(f"/api/v1/documents/{'0' * 26}/sign", json={"credential_id": 1}),
            upload(remote, demo),
            remote.post("/api/v1/sign", data={"credential_id": "1"}, files={"file": b"%PDF-"}),
            remote.get(f"/api/v1/batches/{'0' * 26}"),
        ):
            assert (response.status_code, error_code(response)) == (403, "kyso.forbidden")
