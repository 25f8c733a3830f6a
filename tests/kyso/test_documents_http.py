"""The document workflow over HTTP, in process, on SoftHSM and both databases: upload →
officer signature (PIN) → clerk's seal (PIN) → issued with its number; every revision's PDF
and hash; idempotency keys; and every kind of bad input answered with its status and stable
code — never a 5xx (each response is checked by :func:`_no_server_error`).

Every request is made by whom the workflow gives it to: the public-service portal (a
service client) queues drafts, the commune's officer signs with their own credential, the
unit's clerk (văn thư) seals; a caller not signed in gets 401, one the authorisation matrix
refuses gets 403.

The service is set up as ``kyso init --demo`` does it (CA hierarchy, access-token key, two
communes, their officers and seals with the demo PIN, the demo accounts), then started
through its real lifespan."""

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

from audit.events import Action, Actor, AuditEvent
from audit.store import audit_entries
from hsm import BlockingSessionPool
from kyso import db
from kyso.access.activation import ActivationPolicy, SignatureActivation
from kyso.access.model import Role, Scope
from kyso.access.store import AccessStore
from kyso.access.tokens import ensure_token_key
from kyso.app import create_app
from kyso.demo import DEMO_PIN, create_demo
from kyso.pki_service import make_authority
from kyso.routers.auth import CSRF_HEADER
from kyso.settings import Settings
from pki.authority import Authority
from signer.issuing import OFFICER_FIELD, SEAL_FIELD
from tests.conftest import TestToken
from tests.kyso.identities import as_service, as_system_admin, sign_in, sign_in_as, store_of
from tests.kyso.test_pki_http import ADMIN, _no_server_error, error_code
from tests.signer.test_documents import pages_pdf
from tests.signer.test_ltv import offline_context
from tests.signer.test_stamps import blue_signature_png, draft_pdf, red_seal_png

MAX_BYTES = 64 * 1024
"""The test service's signing_max_bytes: small, so that the limit is easy to cross."""
MAX_PAGES = 3
WRONG_PIN = "000001"

# The demo accounts of CAP-BT (the demo commune the tests work in) and of the others.
OFFICER = "anh.nv"
"""CAP-BT's officer: holds ``Demo.officer_credential``."""
CLERK = "ngoc.ttb"
"""CAP-BT's clerk: seals with ``Demo.seal_credential``."""
OTHER_OFFICER = "dung.lh"
"""CAP-SG's officer: holds ``Demo.other_officer_credential``."""
OTHER_CLERK = "huong.ptt"
UNIT_ADMIN = "admin.hcm"
"""The unit admin of the province (CAT-HCM), over both communes."""
AUDITOR = "auditor.hcm"


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
    """The demo, with CAP-BT's officer credential activated by its PIN alone: these tests
    are about signing and the registry, and sign many times a minute, while a one-time
    code serves once per 30 s (``pin+otp`` over HTTP: test_signing_activation_http.py)."""
    engine = db.make_engine(settings.sqlalchemy_url)
    try:
        db.upgrade(engine)
        with BlockingSessionPool(settings.hsm_config()) as pool:
            authority = make_authority(settings, engine, pool)
            authority.ensure_hierarchy(ADMIN)
            ensure_token_key(pool)
            create_demo(authority, ADMIN, tmp_path / "demo.json")
            units = json.loads((tmp_path / "demo.json").read_text(encoding="utf-8"))["units"]
            (here, other) = units

            def officer(unit: dict[str, Any]) -> dict[str, Any]:
                found: dict[str, Any] = next(p for p in unit["people"] if p["role"] == "officer")
                return found

            demo = Demo(
                unit_id=here["id"],
                officer_id=officer(here)["id"],
                officer_credential=officer(here)["credential_ids"][0],
                seal_credential=here["seal_credential_ids"][0],
                other_officer_credential=officer(other)["credential_ids"][0],
            )
            SignatureActivation(
                engine=engine, authority=authority, access=AccessStore(engine)
            ).set_policy(demo.officer_credential, ActivationPolicy.PIN, ADMIN)
    finally:
        engine.dispose()
    return demo


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


def portal(client: TestClient) -> Actor:
    """``client`` becomes a new service client of the public-service portal, which queues
    drafts for every unit; returns the actor its requests are audited as."""
    as_service(client, Scope.SIGN)
    newest = store_of(client).clients()[-1]
    return Actor(id=f"client:{newest.client_id}", role="service")


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
    sign_in(client, OFFICER)
    officer_image = client.put(
        f"/api/v1/people/{demo.officer_id}/signature-image",
        content=blue_signature_png(),
        headers={"Content-Type": "image/png"},
    )
    assert officer_image.status_code == 204, officer_image.text
    sign_in(client, CLERK)
    seal_image = client.put(
        f"/api/v1/units/{demo.unit_id}/seal-image",
        content=red_seal_png(),
        headers={"Content-Type": "image/png"},
    )
    assert seal_image.status_code == 204, seal_image.text

    the_portal = portal(client)
    original = draft_pdf()
    created = upload(client, demo, original, title="Xác nhận thông tin về cư trú")
    assert created.status_code == 201, created.text
    document = created.json()
    assert created.headers["location"] == f"/api/v1/documents/{document['id']}"
    assert document["status"] == "draft"
    assert document["verify_url"] == f"https://kyso.example.gov.vn/v/{document['id']}"
    assert document["revisions"][0]["sha256"] == hashlib.sha256(original).hexdigest()

    # Out of order: the clerk cannot seal a draft.
    sign_in(client, CLERK)
    early = seal(client, document["id"], demo.seal_credential)
    assert (early.status_code, error_code(early)) == (409, "signer.invalid_state")

    # The caller can no longer name itself: the audit actor is the signed-in officer.
    sign_in(client, OFFICER)
    signed = client.post(
        f"/api/v1/documents/{document['id']}/sign",
        json={"credential_id": demo.officer_credential, "pin": DEMO_PIN},
        headers={"X-Kyso-Actor": "portal"},
    )
    assert signed.status_code == 200, signed.text
    assert signed.json()["status"] == "signed"
    again = sign(client, document["id"], demo.officer_credential)
    assert (again.status_code, error_code(again)) == (409, "signer.invalid_state")

    sign_in(client, CLERK)
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

    events = [e for e in audit_events(settings) if e.details.get("document_id") == document["id"]]
    officer = Actor(id=f"user:{OFFICER}", role="officer")
    clerk = Actor(id=f"user:{CLERK}", role="clerk")
    assert [(e.action, e.actor) for e in events] == [
        (Action.DOCUMENT_UPLOADED, the_portal),
        (Action.DOCUMENT_SIGNED, officer),
        (Action.DOCUMENT_SEALED, clerk),
        (Action.DOCUMENT_ISSUED, clerk),
    ]
    assert events[1].subject.document_sha256 == shown["revisions"][1]["sha256"]


def test_idempotency_keys_over_http(client: TestClient, settings: Settings, demo: Demo) -> None:
    pdf = draft_pdf()
    portal(client)
    first = upload(client, demo, pdf, key="upload-0001")
    second = upload(client, demo, pdf, key="upload-0001")
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    document_id = first.json()["id"]
    other = upload(client, demo, pdf + b"\n%another\n", key="upload-0001")
    assert (other.status_code, error_code(other)) == (409, "signer.idempotency_conflict")
    # Another caller's same key is its own request: the clerk's upload is a new document.
    sign_in(client, CLERK)
    clerks = upload(client, demo, pdf + b"\n%another\n", key="upload-0001")
    assert clerks.status_code == 201, clerks.text
    assert clerks.json()["id"] != document_id

    sign_in(client, OFFICER)
    signed = sign(client, document_id, demo.officer_credential, key="sign-0001")
    repeated = sign(client, document_id, demo.officer_credential, key="sign-0001")
    assert signed.status_code == repeated.status_code == 200
    assert signed.json() == repeated.json()
    # The key is scoped by the caller: the same officer's other account, with the same key,
    # makes a request of its own (refused: the document is signed already).
    sign_in_as(
        client,
        Role.OFFICER,
        unit_id=demo.unit_id,
        person_id=demo.officer_id,
        username=f"{OFFICER}.tablet",
    )
    foreign = sign(client, document_id, demo.officer_credential, key="sign-0001")
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
    # The portal reaches every unit: the route itself answers an unknown one.
    portal(client)
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
    sign_in(client, CLERK)
    document = uploaded(client, demo)
    unknown = "0" * 26

    # The system admin reaches every unit, so the routes answer unknown documents.
    as_system_admin(client)
    for response in (
        client.get(f"/api/v1/documents/{unknown}"),
        client.get("/api/v1/documents/not-an-id"),
        client.get(f"/api/v1/documents/{unknown}/pdf"),
    ):
        assert (response.status_code, error_code(response)) == (404, "signer.document_not_found")

    sign_in(client, OFFICER)
    for response, status, code in [
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
        (
            client.post(
                f"/api/v1/documents/{document['id']}/sign",
                json={"credential_id": demo.officer_credential},
            ),
            400,
            "pki.pin_required",
        ),
        # Credentials the officer does not hold (a seal, another officer's, none at all)
        # and documents of no unit they reach are refused before the registry is asked.
        (sign(client, document["id"], demo.seal_credential), 403, "access.forbidden"),
        (sign(client, document["id"], demo.other_officer_credential), 403, "access.forbidden"),
        (sign(client, document["id"], 999_999), 403, "access.forbidden"),
        (sign(client, unknown, demo.officer_credential), 403, "access.forbidden"),
    ]:
        assert (response.status_code, error_code(response)) == (status, code), response.text

    malformed = sign(client, document["id"], demo.officer_credential, placement={"rect": [1, 2, 3]})
    assert malformed.status_code == 422
    assert DEMO_PIN not in malformed.text
    nan = client.post(
        f"/api/v1/documents/{document['id']}/sign",
        content=b'{"credential_id": %d, "pin": "482915", "placement": {"page": 1, '
        b'"rect": [NaN, 0, 100, 100]}}' % demo.officer_credential,
        headers={"Content-Type": "application/json"},
    )
    assert nan.status_code == 422
    assert DEMO_PIN not in nan.text
    huge = client.post(
        f"/api/v1/documents/{document['id']}/sign",
        content=b'{"credential_id": 1, "pin": "' + b"1" * (3 * 1024 * 1024) + b'"}',
        headers={"Content-Type": "application/json"},
    )
    assert (huge.status_code, error_code(huge)) == (413, "kyso.body_too_large")

    sign_in(client, CLERK)
    for response, status, code in [
        (seal(client, document["id"], demo.seal_credential), 409, "signer.invalid_state"),
        (seal(client, document["id"], demo.officer_credential), 403, "access.forbidden"),
        (seal(client, unknown, demo.seal_credential), 403, "access.forbidden"),
    ]:
        assert (response.status_code, error_code(response)) == (status, code), response.text

    # Still a draft, and only the upload was audited.
    assert client.get(f"/api/v1/documents/{document['id']}").json()["status"] == "draft"
    assert document_actions(settings, document["id"]) == [Action.DOCUMENT_UPLOADED]

    # Stamp images: the officer's own.
    sign_in(client, OFFICER)
    path = f"/api/v1/people/{demo.officer_id}/signature-image"
    for content, content_type, status, code in [
        (b"GIF89a....", "image/png", 422, "signer.bad_image"),
        (blue_signature_png(), "image/jpeg", 415, "kyso.unsupported_media_type"),
        (b"\x89PNG\r\n\x1a\n" + bytes(3 * 1024 * 1024), "image/png", 413, "kyso.body_too_large"),
    ]:
        response = client.put(path, content=content, headers={"Content-Type": content_type})
        assert (response.status_code, error_code(response)) == (status, code)
    as_system_admin(client)
    nobody = client.put(
        "/api/v1/people/999999/signature-image",
        content=blue_signature_png(),
        headers={"Content-Type": "image/png"},
    )
    assert (nobody.status_code, error_code(nobody)) == (404, "pki.not_found")


def test_signing_routes_refuse_callers_not_signed_in_or_not_allowed(
    settings: Settings, demo: Demo
) -> None:
    with started(settings) as client:
        sign_in(client, CLERK)
        document = uploaded(client, demo)["id"]
        client.cookies.clear()
        client.headers.pop(CSRF_HEADER)

        for response in (
            client.get(f"/api/v1/documents/{document}"),
            client.get(f"/api/v1/documents/{document}/pdf"),
            sign(client, document, demo.officer_credential),
            seal(client, document, demo.seal_credential),
            upload(client, demo),
            client.post("/api/v1/sign", data={"credential_id": "1"}, files={"file": b"%PDF-"}),
            client.post("/api/v1/batches", json={"action": "sign", "credential_id": 1}),
            client.get(f"/api/v1/batches/{'0' * 26}"),
        ):
            assert (response.status_code, error_code(response)) == (401, "access.invalid_token")

        refused = [
            # An auditor only reads; another commune's officer neither reads nor signs here.
            (AUDITOR, lambda: upload(client, demo)),
            (OTHER_OFFICER, lambda: client.get(f"/api/v1/documents/{document}")),
            (OTHER_OFFICER, lambda: sign(client, document, demo.other_officer_credential)),
            (OTHER_CLERK, lambda: seal(client, document, demo.seal_credential)),
            (OTHER_CLERK, lambda: upload(client, demo)),
            # Signing is the holder's: not the clerk, not the unit admin.
            (CLERK, lambda: sign(client, document, demo.officer_credential)),
            (UNIT_ADMIN, lambda: sign(client, document, demo.officer_credential)),
            (OFFICER, lambda: seal(client, document, demo.seal_credential)),
            (CLERK, lambda: upload(client, demo, unit_id="999999")),
        ]
        for username, request in refused:
            sign_in(client, username)
            response = request()
            assert (response.status_code, error_code(response)) == (403, "access.forbidden"), (
                username
            )
            assert DEMO_PIN not in response.text
        # A service queues drafts but never signs for the officer.
        portal(client)
        response = sign(client, document, demo.officer_credential)
        assert (response.status_code, error_code(response)) == (403, "access.forbidden")

        sign_in(client, OFFICER)
        assert client.get(f"/api/v1/documents/{document}").json()["status"] == "draft"
    assert document_actions(settings, document) == [Action.DOCUMENT_UPLOADED]


def test_officers_find_the_drafts_waiting_for_them(client: TestClient, demo: Demo) -> None:
    """Drafts a service queued for CAP-BT are listed to its officer (newest first, in
    pages), to the province's auditor, never to the other commune's officer; a signed
    document leaves the drafts for the clerk's list."""
    portal(client)
    first, second = (uploaded(client, demo)["id"] for _ in range(2))
    drafts = "/api/v1/documents?status=draft"
    sign_in(client, OFFICER)
    assert [d["id"] for d in client.get(drafts).json()] == [second, first]
    page = client.get(f"{drafts}&limit=1").json()
    assert [d["id"] for d in page] == [second]
    assert [d["id"] for d in client.get(f"{drafts}&limit=1&before={second}").json()] == [first]
    assert client.get(f"{drafts}&unit_id={demo.unit_id + 1}").json() == []
    assert sign(client, first, demo.officer_credential).status_code == 200
    assert [d["id"] for d in client.get(drafts).json()] == [second]
    assert [d["id"] for d in client.get("/api/v1/documents?status=signed").json()] == [first]
    sign_in(client, AUDITOR)
    assert {d["id"] for d in client.get("/api/v1/documents").json()} == {first, second}
    sign_in(client, OTHER_OFFICER)
    assert client.get("/api/v1/documents").json() == []
    for query in ("limit=0", "limit=501", "status=lost", f"before={'z' * 26}"):
        answer = client.get(f"/api/v1/documents?{query}")
        assert answer.status_code in (404, 422), (query, answer.text)
