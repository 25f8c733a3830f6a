"""The README's signing examples, as a person and a service do them against the demo.

The officer signs in with the demo password and a code of their TOTP secret (both from
demo.json), activates their credential for exactly the PDF's SHA-256 with its PIN and a
new one-time code, and signs it with that SAD, the session cookie and the CSRF token; the
SAD serves once. The demo service client obtains an access token with its secret and seals
a PDF with the seal bound to it, without a PIN; it may not sign with the officer's
credential."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from kyso.access import factors
from tests.conftest import TestToken
from tests.kyso.live import demo_service
from tests.kyso.test_documents_http import started
from tests.kyso.test_pki_http import error_code
from tests.signer.test_stamps import draft_pdf


def test_the_demo_officer_signs_in_and_signs(
    token: TestToken, tmp_path: Path, database_url: str
) -> None:
    settings, demo_file = demo_service(token, tmp_path, database_url)
    demo = json.loads(demo_file.read_text(encoding="utf-8"))
    account = next(a for a in demo["accounts"] if a["username"] == "anh.nv")
    here = next(u for u in demo["units"] if u["code"] == "CAP-BT")
    credential = next(p for p in here["people"] if p["role"] == "officer")["credential_ids"][0]
    assert demo["activation"]["by_credential"][str(credential)] == "pin+otp"
    pin = demo["signing_pins"]["by_credential"][str(credential)]
    draft = draft_pdf()
    with started(settings) as client:
        code = factors.totp_now(account["totp_secret"])
        signed_in = client.post(
            "/api/v1/auth/login",
            json={
                "username": account["username"],
                "password": account["password"],
                "otp": code,
            },
        )
        assert signed_in.status_code == 200, signed_in.text
        csrf = {"X-CSRF-Token": signed_in.json()["csrf_token"]}
        authorize = f"/api/v1/credentials/{credential}/authorize"
        body = {"hashes": [hashlib.sha256(draft).hexdigest()], "pin": pin}
        # The sign-in code is used up: activation needs a new one (the next 30 s step).
        reused = client.post(authorize, json=body | {"otp": code}, headers=csrf)
        assert (reused.status_code, error_code(reused)) == (403, "access.otp_invalid")
        fresh = factors.totp_now(account["totp_secret"], at=time.time() + 30)
        issued = client.post(authorize, json=body | {"otp": fresh}, headers=csrf)
        assert issued.status_code == 200, issued.text
        assert issued.headers["Cache-Control"] == "no-store"
        sad = issued.json()["sad"]
        form = {"credential_id": str(credential), "sad": sad}
        pdf = {"file": ("draft.pdf", draft, "application/pdf")}
        without = client.post("/api/v1/sign", data=form, files=pdf)
        assert without.status_code == 403  # no CSRF token
        signed = client.post("/api/v1/sign", data=form, files=pdf, headers=csrf)
        assert signed.status_code == 200, signed.text
        assert signed.content.startswith(b"%PDF")
        assert b"/ByteRange" in signed.content
        again = client.post("/api/v1/sign", data=form, files=pdf, headers=csrf)
        assert (again.status_code, error_code(again)) == (403, "access.sad_refused")

        # The demo service: a token from its secret, then a seal with the seal bound to it.
        service = demo["service_client"]
        client.cookies.clear()
        granted = client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials"},
            auth=(service["client_id"], service["client_secret"]),
        )
        assert granted.status_code == 200, granted.text
        bearer = {"Authorization": f"Bearer {granted.json()['access_token']}"}
        (seal,) = service["seal_credential_ids"]
        sealed = client.post(
            "/api/v1/sign", data={"credential_id": str(seal)}, files=pdf, headers=bearer
        )
        assert sealed.status_code == 200, sealed.text
        assert sealed.content.startswith(b"%PDF")
        # It holds no officer credential: it may not sign for him, not even with his PIN.
        refused = client.post(
            "/api/v1/sign",
            data={"credential_id": str(credential), "pin": pin},
            files=pdf,
            headers=bearer,
        )
        assert (refused.status_code, error_code(refused)) == (403, "access.forbidden")
