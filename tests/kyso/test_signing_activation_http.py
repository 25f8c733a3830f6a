"""Sole control on the REST signing routes (SQLite and PostgreSQL), with the demo's
``pin+otp`` officer credential (CAP-BT): a document is signed only with a one-time code
proven for it — inline with the PIN, or through a SAD from
``POST /api/v1/credentials/{id}/authorize`` bound to exactly that document, that batch or
that PDF's SHA-256, used once; a service client never activates an officer's credential;
nothing is signed by a refused request."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from kyso.access import factors
from kyso.access.model import Scope
from kyso.demo import DEMO_PIN, DEMO_TOTP_SECRETS
from tests.conftest import TestToken
from tests.kyso.identities import SETUP, as_service, sign_in
from tests.kyso.live import demo_service
from tests.kyso.test_documents_http import audit_events, started
from tests.kyso.test_pki_http import error_code
from tests.signer.test_stamps import draft_pdf

OFFICER = "anh.nv"


def code(offset_steps: int) -> str:
    """The officer's one-time code of the step ``offset_steps`` from now (one either side
    is accepted, so a test has three fresh codes without waiting)."""
    return factors.totp_now(DEMO_TOTP_SECRETS[OFFICER], at=time.time() + 30 * offset_steps)


def upload(client: TestClient, unit_id: int, subject: str) -> str:
    answer = client.post(
        "/api/v1/documents",
        data={
            "document_type": "CT07",
            "unit_id": str(unit_id),
            "service": "residence",
            "subject_person_id": subject,
        },
        files={"file": ("draft.pdf", draft_pdf(), "application/pdf")},
    )
    assert answer.status_code == 201, answer.text
    document_id: str = answer.json()["id"]
    return document_id


def status(client: TestClient, document_id: str) -> str:
    value: str = client.get(f"/api/v1/documents/{document_id}").json()["status"]
    return value


def test_rest_signing_needs_a_code_or_a_sad_for_exactly_what_it_signs(
    token: TestToken, tmp_path: Path, database_url: str
) -> None:
    settings, demo_file = demo_service(token, tmp_path, database_url)
    here = json.loads(demo_file.read_text(encoding="utf-8"))["units"][0]
    credential = next(p for p in here["people"] if p["role"] == "officer")["credential_ids"][0]
    authorize = f"/api/v1/credentials/{credential}/authorize"
    with started(settings) as client:
        sign_in(client, OFFICER)
        first, second, third, fourth = (
            upload(client, here["id"], f"07920300{i:04d}") for i in range(4)
        )
        signing = {"credential_id": credential, "pin": DEMO_PIN}

        # Inline: the PIN alone is not enough under pin+otp; with a fresh code it is.
        refused = client.post(f"/api/v1/documents/{first}/sign", json=signing)
        assert (refused.status_code, error_code(refused)) == (403, "access.otp_invalid")
        assert status(client, first) == "draft"
        inline = client.post(f"/api/v1/documents/{first}/sign", json=signing | {"otp": code(-1)})
        assert inline.status_code == 200, inline.text
        assert inline.json()["status"] == "signed"

        # A SAD for the second document signs that document only, once.
        issued = client.post(
            authorize, json={"documents": [second], "pin": DEMO_PIN, "otp": code(0)}
        )
        assert issued.status_code == 200, issued.text
        assert issued.json()["count"] == 1
        assert 0 < issued.json()["expires_in"] <= 300
        sad = {"credential_id": credential, "sad": issued.json()["sad"]}
        elsewhere = client.post(f"/api/v1/documents/{third}/sign", json=sad)
        assert (elsewhere.status_code, error_code(elsewhere)) == (403, "access.sad_refused")
        assert status(client, third) == "draft"
        assert client.post(f"/api/v1/documents/{second}/sign", json=sad).status_code == 200
        reused = client.post(f"/api/v1/documents/{second}/sign", json=sad)
        assert (reused.status_code, error_code(reused)) == (403, "access.sad_refused")

        # A batch needs a SAD (or code) covering every one of its documents.
        batch_sad = client.post(
            authorize, json={"documents": [third, fourth], "pin": DEMO_PIN, "otp": code(1)}
        ).json()["sad"]
        items = [{"document_id": third}, {"document_id": fourth}]
        short = client.post(
            "/api/v1/batches",
            json={
                "action": "sign",
                "credential_id": credential,
                "sad": batch_sad,
                "items": [*items, {"document_id": first}],
            },
        )
        assert (short.status_code, error_code(short)) == (403, "access.sad_refused")
        # …and a refused batch does not use the SAD up
        accepted = client.post(
            "/api/v1/batches",
            json={"action": "sign", "credential_id": credential, "sad": batch_sad, "items": items},
        )
        assert accepted.status_code == 202, accepted.text
        batch = accepted.headers["Location"]
        deadline = time.monotonic() + 60
        while client.get(batch).json()["status"] != "done" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [status(client, d) for d in (third, fourth)] == ["signed"] * 2

        # The one-shot route: a SAD for one PDF's SHA-256 signs that PDF, not another.
        pdf = draft_pdf()
        other_pdf = draft_pdf([(72, 700, 12, "Một văn bản khác", False)])
        spent = client.post(
            authorize,
            json={"hashes": [hashlib.sha256(pdf).hexdigest()], "pin": DEMO_PIN, "otp": code(1)},
        )
        assert (spent.status_code, error_code(spent)) == (403, "access.otp_invalid")
        refusals = [
            ({"documents": [], "pin": DEMO_PIN}, 422, "signer.invalid_request"),
            ({"documents": [first], "hashes": ["00" * 32]}, 422, "signer.invalid_request"),
            ({"documents": [first], "count": 2, "pin": DEMO_PIN}, 422, "access.invalid_input"),
        ]
        for body, expected_status, expected_code in refusals:
            answer = client.post(authorize, json=body)
            assert (answer.status_code, error_code(answer)) == (expected_status, expected_code)
            assert DEMO_PIN not in answer.text

        # A service client asks for signatures; it never activates the officer's key.
        as_service(client, Scope.SIGN, Scope.SEAL)
        for body in ({"documents": [first], "pin": DEMO_PIN}, {"hashes": ["00" * 32]}):
            forbidden = client.post(authorize, json=body)
            assert (forbidden.status_code, error_code(forbidden)) == (403, "access.forbidden")
        one_shot = client.post(
            "/api/v1/sign",
            data={"credential_id": str(credential), "pin": DEMO_PIN},
            files={"file": ("other.pdf", other_pdf, "application/pdf")},
        )
        assert one_shot.status_code == 403

    sad_events = [e for e in audit_events(settings) if e.action.value.startswith("sad.")]
    assert [e.action.value for e in sad_events].count("sad.used") == 3
    refused_steps: list[Any] = [
        e.details.get("reason") for e in sad_events if e.action.value == "sad.refused"
    ]
    assert {"other_hashes", "used", "access.otp_invalid"} <= set(refused_steps)


def test_inline_activations_count_against_the_activation_limit(
    token: TestToken, tmp_path: Path, database_url: str
) -> None:
    """A signing request with the PIN in it is an activation: beyond the limit it gets 429
    before anything is checked or signed. A service sealing with a seal bound to it proves
    nothing in the request, so it is held to the signing limit only."""
    settings, demo_file = demo_service(token, tmp_path, database_url, rate_authorize_per_minute=2)
    demo = json.loads(demo_file.read_text(encoding="utf-8"))
    other = demo["units"][1]
    credential = next(p for p in other["people"] if p["role"] == "officer")["credential_ids"][0]
    (seal,) = demo["service_client"]["seal_credential_ids"]
    pdf = {"file": ("draft.pdf", draft_pdf(), "application/pdf")}
    with started(settings) as client:
        sign_in(client, "dung.lh")  # CAP-SG's officer: activated by the PIN alone
        inline = {"credential_id": str(credential), "pin": DEMO_PIN}
        answers = [client.post("/api/v1/sign", data=inline, files=pdf) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert int(answers[2].headers["Retry-After"]) >= 1
        as_service(client, Scope.SEAL)
        store = client.app.state.runtime.access  # type: ignore[attr-defined]
        bound = client.app.state.runtime.activation  # type: ignore[attr-defined]
        bound.bind_client(seal, store.clients()[-1].client_id, SETUP)
        sealed = [
            client.post("/api/v1/sign", data={"credential_id": str(seal)}, files=pdf)
            for _ in range(3)
        ]
        assert [a.status_code for a in sealed] == [200] * 3
