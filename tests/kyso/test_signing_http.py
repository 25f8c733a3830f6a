"""One-shot signing and signing batches over HTTP, in process, on SoftHSM and both databases.

One-shot: invisible B-B and B-LT and a visible signature placed by anchor text, each
validated by pyHanko with the demo root as the only anchor, and its ``document.signed`` event
committed by the time the response is read; the bad inputs of the upload route, the
placement errors, and a PIN locked after five wrong tries, unlocked by an administrator.

Batches: partial failure reported per item; an HSM that fails in the middle of a batch
(injected around the registry's signing): the batch says exactly which documents were
signed, resubmitting the failed ones signs them, none twice, and the audit log's
``document.signed`` events match the done items one for one.

The officer signs with their own credential and the clerk seals, each signed in; an
administrator of the province unlocks a locked PIN."""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
from collections import Counter
from datetime import datetime
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature

from audit.events import Action, Actor
from hsm.errors import HsmUnavailableError
from kyso.demo import DEMO_PIN
from kyso.settings import Settings
from signer.documents import DocumentSigning
from tests.kyso.identities import as_system_admin, sign_in
from tests.kyso.test_documents_http import (
    CLERK,
    MAX_BYTES,
    OFFICER,
    UNIT_ADMIN,
    WRONG_PIN,
    Demo,
    audit_events,
    authority_of,
    bad_inputs,
    sign,
    uploaded,
)

# The fixtures, used by name.
from tests.kyso.test_documents_http import client as client
from tests.kyso.test_documents_http import demo as demo
from tests.kyso.test_documents_http import settings as settings
from tests.kyso.test_pki_http import error_code
from tests.signer.test_ltv import offline_context
from tests.signer.test_pades import validation_context
from tests.signer.test_stamps import TITLE, draft_pdf

BATCH_TIMEOUT = 60.0


def sign_once(
    client: TestClient, credential_id: int, pdf: bytes | None = None, **fields: str
) -> Any:
    return client.post(
        "/api/v1/sign",
        data={"credential_id": str(credential_id), "pin": DEMO_PIN, **fields},
        files={"file": ("in.pdf", draft_pdf() if pdf is None else pdf, "application/pdf")},
    )


def signed_events(settings: Settings) -> list[Any]:
    return [e for e in audit_events(settings) if e.action is Action.DOCUMENT_SIGNED]


# -- one-shot ------------------------------------------------------------------------------


def test_one_shot_signatures_validate_and_are_audited_first(
    client: TestClient, settings: Settings, demo: Demo
) -> None:
    original = draft_pdf()
    authority = authority_of(client)
    sign_in(client, OFFICER)
    for level in ("B-B", "B-LT"):
        response = sign_once(client, demo.officer_credential, original, level=level)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/pdf"
        signed = response.content
        assert signed.startswith(original)

        # The event was committed before the response: it is there as soon as the answer is.
        digest = hashlib.sha256(signed).hexdigest()
        (event,) = [e for e in signed_events(settings) if e.subject.document_sha256 == digest]
        assert event.details["level"] == level
        assert event.details["credential_id"] == demo.officer_credential
        assert event.details["visible"] is False
        assert event.details["input_sha256"] == hashlib.sha256(original).hexdigest()
        assert event.actor == Actor(id=f"user:{OFFICER}", role="officer")
        assert event.subject.request_id == response.headers["x-request-id"]
        assert DEMO_PIN not in event.leaf().decode()

        reader = PdfFileReader(BytesIO(signed))
        (signature,) = reader.embedded_regular_signatures
        context = (
            offline_context(reader, authority) if level == "B-LT" else validation_context(authority)
        )
        status = validate_pdf_signature(signature, context)
        assert status.bottom_line, status.summary()
        assert status.intact
        assert status.trusted
        assert (status.timestamp_validity is not None) == (level == "B-LT")
        assert "/Rect" not in signature.sig_field or [
            float(v) for v in signature.sig_field["/Rect"]
        ] == [0, 0, 0, 0]

    # Visible, below the title line (baseline 560, centred on x = 420 in the draft).
    response = sign_once(client, demo.officer_credential, level="B-B", visible="true", anchor=TITLE)
    assert response.status_code == 200, response.text
    reader = PdfFileReader(BytesIO(response.content))
    (signature,) = reader.embedded_regular_signatures
    status = validate_pdf_signature(signature, validation_context(authority))
    assert status.bottom_line, status.summary()
    x1, y1, x2, y2 = (float(v) for v in signature.sig_field["/Rect"])
    assert y2 < 560
    assert x1 < 420 < x2
    assert y2 - y1 > 20
    assert [e.details["visible"] for e in signed_events(settings)] == [False, False, True]


def test_one_shot_bad_input(
    client: TestClient, settings: Settings, demo: Demo, tmp_path: Path
) -> None:
    sign_in(client, OFFICER)
    for case, pdf, status, code in bad_inputs(tmp_path):
        response = sign_once(client, demo.officer_credential, pdf)
        assert (response.status_code, error_code(response)) == (status, code), case
        if status == 413:
            assert str(MAX_BYTES) in response.json()["error"]["message"]
    for fields, status, code in [
        ({"field": "KhongCo"}, 422, "signer.field_not_found"),
        ({"anchor": "PHÓ CHỦ TỊCH UBND"}, 422, "signer.anchor_not_found"),
        ({"anchor": TITLE, "page": "2"}, 422, "signer.bad_placement"),
        ({"visible": "true"}, 422, "signer.bad_placement"),
        ({"visible": "false", "anchor": TITLE}, 422, "signer.bad_placement"),
        ({"field": "A", "anchor": TITLE}, 422, "signer.bad_placement"),
        ({"rect": "72,72,200,140"}, 422, "signer.bad_placement"),
        ({"page": "1", "rect": "72,72,200"}, 422, "signer.bad_placement"),
        ({"page": "1", "rect": "[72, 72, 200, inf]"}, 422, "signer.bad_placement"),
        ({"page": "1"}, 422, "signer.bad_placement"),
        ({"pin": ""}, 400, "pki.pin_required"),
    ]:
        response = sign_once(client, demo.officer_credential, **fields)
        assert (response.status_code, error_code(response)) == (status, code), fields
    bad_level = sign_once(client, demo.officer_credential, level="B-XL")
    assert bad_level.status_code == 422
    assert DEMO_PIN not in bad_level.text
    sign_in(client, CLERK)
    seal_visible = sign_once(client, demo.seal_credential, level="B-B", page="1", rect="1,1,2,2")
    assert (seal_visible.status_code, error_code(seal_visible)) == (422, "signer.bad_placement")
    assert signed_events(settings) == []


def test_wrong_pins_lock_the_credential_until_an_admin_unlocks_it(
    client: TestClient, settings: Settings, demo: Demo
) -> None:
    sign_in(client, OFFICER)
    for remaining in (4, 3, 2, 1):
        wrong = sign_once(client, demo.officer_credential, pin=WRONG_PIN, level="B-B")
        assert (wrong.status_code, error_code(wrong)) == (403, "pki.pin_invalid")
        assert f"{remaining} tr" in wrong.json()["error"]["message"]
    fifth = sign_once(client, demo.officer_credential, pin=WRONG_PIN, level="B-B")
    assert (fifth.status_code, error_code(fifth)) == (423, "pki.pin_locked")
    right = sign_once(client, demo.officer_credential, level="B-B")
    assert (right.status_code, error_code(right)) == (423, "pki.pin_locked")
    # The registry's steps are refused too: the lock is the credential's.
    document = uploaded(client, demo)
    locked = sign(client, document["id"], demo.officer_credential)
    assert (locked.status_code, error_code(locked)) == (423, "pki.pin_locked")
    assert signed_events(settings) == []
    # Only an administrator unlocks: not the officer who holds the credential.
    unlock = f"/api/v1/credentials/{demo.officer_credential}/pin/unlock"
    own = client.post(unlock)
    assert (own.status_code, error_code(own)) == (403, "access.forbidden")

    sign_in(client, UNIT_ADMIN)
    unlocked = client.post(unlock)
    assert unlocked.status_code == 200, unlocked.text
    sign_in(client, OFFICER)
    assert sign_once(client, demo.officer_credential, level="B-B").status_code == 200
    assert sign(client, document["id"], demo.officer_credential).status_code == 200
    assert len(signed_events(settings)) == 2


# -- batches -------------------------------------------------------------------------------


def submit(client: TestClient, action: str, credential_id: int, items: list[Any]) -> Any:
    return client.post(
        "/api/v1/batches",
        json={"action": action, "credential_id": credential_id, "pin": DEMO_PIN, "items": items},
    )


def finished(client: TestClient, batch_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + BATCH_TIMEOUT
    while True:
        batch: dict[str, Any] = client.get(f"/api/v1/batches/{batch_id}").json()
        if batch["status"] != "running":
            return batch
        assert time.monotonic() < deadline, batch
        time.sleep(0.05)


def signed_per_document(settings: Settings) -> Counter[str]:
    return Counter(str(e.details["document_id"]) for e in signed_events(settings))


def test_batch_reports_partial_failure_per_item(
    client: TestClient, settings: Settings, demo: Demo
) -> None:
    sign_in(client, OFFICER)
    ids = [uploaded(client, demo)["id"] for _ in range(5)]
    assert sign(client, ids[2], demo.officer_credential).status_code == 200

    accepted = submit(client, "sign", demo.officer_credential, [{"document_id": i} for i in ids])
    assert accepted.status_code == 202, accepted.text
    body = accepted.json()
    assert (body["status"], body["total"]) == ("running", 5)
    assert accepted.headers["location"] == f"/api/v1/batches/{body['id']}"

    batch = finished(client, body["id"])
    assert (batch["status"], batch["done"], batch["failed"]) == ("failed-partly", 4, 1)
    assert [item["document_id"] for item in batch["items"]] == ids
    failed = batch["items"][2]
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "signer.invalid_state"
    assert "revision" not in failed
    for index in (0, 1, 3, 4):
        assert batch["items"][index] == {"document_id": ids[index], "status": "done", "revision": 1}
    assert signed_per_document(settings) == Counter(ids)  # the manual one, then 4 from the batch
    # Batch items are signed in the name of whoever submitted the batch.
    assert {e.actor for e in signed_events(settings)} == {
        Actor(id=f"user:{OFFICER}", role="officer")
    }

    # Seal them all, in one batch: numbered 01 to 05 in the order of the items.
    sign_in(client, CLERK)
    sealed = submit(client, "seal", demo.seal_credential, [{"document_id": i} for i in ids])
    assert sealed.status_code == 202, sealed.text
    assert finished(client, sealed.json()["id"])["status"] == "done"
    numbers = [client.get(f"/api/v1/documents/{i}").json()["number_text"] for i in ids]
    assert numbers == [f"Số: {n:02d}/XN-CAP-BT" for n in range(1, 6)]


class FailingAfter:
    """The registry's signing, with the HSM gone after ``after`` officer signatures."""

    def __init__(self, inner: DocumentSigning, after: int) -> None:
        self._inner = inner
        self._after = after
        self._count = itertools.count(1)
        self._lock = threading.Lock()
        self.down = True

    def officer(
        self, pdf: bytes, credential_id: int, *, placement: object | None, document_id: str
    ) -> bytes:
        with self._lock:
            failing = self.down and next(self._count) > self._after
        if failing:
            raise HsmUnavailableError("the token is unreachable")
        return self._inner.officer(pdf, credential_id, placement=placement, document_id=document_id)

    def seal(
        self, pdf: bytes, credential_id: int, *, number: str, issued_at: datetime, verify_url: str
    ) -> bytes:
        return self._inner.seal(
            pdf, credential_id, number=number, issued_at=issued_at, verify_url=verify_url
        )


@pytest.fixture
def outage(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> FailingAfter:
    registry = client.app.state.runtime.signing.registry  # type: ignore[attr-defined]
    failing = FailingAfter(registry._signing, after=2)
    monkeypatch.setattr(registry, "_signing", failing)
    return failing


def test_hsm_outage_mid_batch(
    client: TestClient, settings: Settings, demo: Demo, outage: FailingAfter
) -> None:
    sign_in(client, OFFICER)
    ids = [uploaded(client, demo)["id"] for _ in range(5)]
    accepted = submit(client, "sign", demo.officer_credential, [{"document_id": i} for i in ids])
    assert accepted.status_code == 202, accepted.text
    batch = finished(client, accepted.json()["id"])

    assert (batch["status"], batch["done"], batch["failed"]) == ("failed-partly", 2, 3)
    done = [item["document_id"] for item in batch["items"] if item["status"] == "done"]
    failed = [item["document_id"] for item in batch["items"] if item["status"] == "failed"]
    assert done == ids[:2]
    assert {item["error"]["code"] for item in batch["items"][2:]} == {"hsm.unavailable"}
    # What the batch says was signed is exactly what the registry and the audit log say.
    statuses = {i: client.get(f"/api/v1/documents/{i}").json()["status"] for i in ids}
    assert [i for i in ids if statuses[i] == "signed"] == done
    assert signed_per_document(settings) == Counter(done)

    # The HSM is back: the failed ones again, plus one already signed by mistake.
    outage.down = False
    again = submit(
        client,
        "sign",
        demo.officer_credential,
        [{"document_id": i} for i in [*failed, done[0]]],
    )
    assert again.status_code == 202, again.text
    retried = finished(client, again.json()["id"])
    assert [item["status"] for item in retried["items"]] == ["done", "done", "done", "failed"]
    assert retried["items"][3]["error"]["code"] == "signer.invalid_state"
    assert signed_per_document(settings) == Counter(ids)  # each exactly once


def test_bad_batches(client: TestClient, settings: Settings, demo: Demo) -> None:
    sign_in(client, OFFICER)
    document = uploaded(client, demo)["id"]
    one = [{"document_id": document}]
    officer = [
        (submit(client, "sign", demo.officer_credential, []), 422, None),
        (
            submit(client, "sign", demo.officer_credential, [{"document_id": "x"}] * 1001),
            422,
            None,
        ),
        (submit(client, "stamp", demo.officer_credential, one), 422, None),
        (
            submit(client, "sign", demo.officer_credential, one * 2),
            422,
            "signer.invalid_request",
        ),
        (
            submit(client, "sign", demo.officer_credential, [{"document_id": "not-an-id"}]),
            422,
            "signer.invalid_request",
        ),
        (submit(client, "seal", demo.officer_credential, one), 409, "signer.wrong_credential"),
        (
            client.post(
                "/api/v1/batches",
                json={"action": "sign", "credential_id": demo.officer_credential, "items": one},
            ),
            400,
            "pki.pin_required",
        ),
        # Not the officer's: the unit's seal.
        (submit(client, "seal", demo.seal_credential, one), 403, "access.forbidden"),
    ]
    sign_in(client, CLERK)
    clerk = [
        (
            submit(
                client,
                "seal",
                demo.seal_credential,
                [{"document_id": document, "placement": {"field": "CoQuanKy"}}],
            ),
            422,
            "signer.invalid_request",
        ),
        (submit(client, "sign", demo.seal_credential, one), 409, "signer.wrong_credential"),
        # Not the clerk's: the officer's credential.
        (submit(client, "sign", demo.officer_credential, one), 403, "access.forbidden"),
    ]
    # Batches of no unit: only a reach over every unit gets the route's own answer.
    as_system_admin(client)
    unknown = [
        (client.get(f"/api/v1/batches/{'0' * 26}"), 404, "signer.batch_not_found"),
        (client.get("/api/v1/batches/nope"), 404, "signer.batch_not_found"),
    ]
    for response, status, code in [*officer, *clerk, *unknown]:
        assert response.status_code == status, response.text
        if code is not None:
            assert error_code(response) == code
        assert DEMO_PIN not in response.text
    assert signed_events(settings) == []
