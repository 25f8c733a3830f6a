"""The README's signing example, as a person does it against the demo: sign in with the demo
officer's password and a code of their TOTP secret (both from demo.json), then one-shot
signing with their own credential and its PIN, the session cookie and the CSRF token;
a service client with the demo's scopes may not sign for the officer."""

from __future__ import annotations

import json
from pathlib import Path

from kyso.access import factors
from kyso.access.model import Scope
from tests.conftest import TestToken
from tests.kyso.identities import as_service
from tests.kyso.live import demo_service
from tests.kyso.test_documents_http import started
from tests.signer.test_stamps import draft_pdf


def test_the_demo_officer_signs_in_and_signs(
    token: TestToken, tmp_path: Path, database_url: str
) -> None:
    settings, demo_file = demo_service(token, tmp_path, database_url)
    demo = json.loads(demo_file.read_text(encoding="utf-8"))
    account = next(a for a in demo["accounts"] if a["username"] == "anh.nv")
    here = next(u for u in demo["units"] if u["code"] == "CAP-BT")
    credential = next(p for p in here["people"] if p["role"] == "officer")["credential_ids"][0]
    pin = demo["signing_pins"]["by_credential"][str(credential)]
    with started(settings) as client:
        signed_in = client.post(
            "/api/v1/auth/login",
            json={
                "username": account["username"],
                "password": account["password"],
                "otp": factors.totp_now(account["totp_secret"]),
            },
        )
        assert signed_in.status_code == 200, signed_in.text
        csrf = signed_in.json()["csrf_token"]
        form = {"credential_id": str(credential), "pin": pin}
        pdf = {"file": ("draft.pdf", draft_pdf(), "application/pdf")}
        without = client.post("/api/v1/sign", data=form, files=pdf)
        assert without.status_code == 403  # no CSRF token
        signed = client.post("/api/v1/sign", data=form, files=pdf, headers={"X-CSRF-Token": csrf})
        assert signed.status_code == 200, signed.text
        assert signed.content.startswith(b"%PDF")
        assert b"/ByteRange" in signed.content
        # the demo's service client holds no officer credential: it may not sign for him
        as_service(client, Scope.SIGN, Scope.SEAL, Scope.VERIFY, Scope.DOCUMENTS_READ)
        refused = client.post("/api/v1/sign", data=form, files=pdf)
        assert refused.status_code == 403
