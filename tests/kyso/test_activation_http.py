"""A unit admin sets how a credential is activated and which service client may seal with
a seal, over HTTP (SQLite and PostgreSQL); an officer may not, and no officer's credential
is ever bound to a client."""

from __future__ import annotations

import json
from pathlib import Path

from kyso.access.activation import ActivationPolicy
from kyso.access.model import Scope
from tests.conftest import TestToken
from tests.kyso.identities import SETUP, sign_in
from tests.kyso.live import demo_service
from tests.kyso.test_documents_http import started
from tests.kyso.test_pki_http import error_code


def test_a_unit_admin_sets_activation_and_binds_a_seal(
    token: TestToken, tmp_path: Path, database_url: str
) -> None:
    settings, demo_file = demo_service(token, tmp_path, database_url)
    here = json.loads(demo_file.read_text(encoding="utf-8"))["units"][0]
    officer = next(p for p in here["people"] if p["role"] == "officer")["credential_ids"][0]
    seal = here["seal_credential_ids"][0]
    with started(settings) as client:
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        service, _ = runtime.access.add_client(
            name="Cổng", scopes=frozenset({Scope.SEAL}), unit_id=None, actor=SETUP
        )
        sign_in(client, "anh.nv")  # the officer: not his to change
        refused = client.put(f"/api/v1/credentials/{officer}/activation", json={"policy": "pin"})
        assert (refused.status_code, error_code(refused)) == (403, "access.forbidden")
        sign_in(client, "admin.hcm")
        changed = client.put(f"/api/v1/credentials/{officer}/activation", json={"policy": "pin"})
        assert changed.json() == {"credential_id": officer, "policy": "pin"}
        assert runtime.activation.policy(officer) is ActivationPolicy.PIN
        bound = client.put(
            f"/api/v1/credentials/{seal}/client", json={"client_id": service.client_id}
        )
        assert bound.status_code == 200, bound.text
        assert runtime.activation.bound_client_id(seal) == service.id
        never = client.put(
            f"/api/v1/credentials/{officer}/client", json={"client_id": service.client_id}
        )
        assert (never.status_code, error_code(never)) == (403, "access.forbidden")
        unbound = client.put(f"/api/v1/credentials/{seal}/client", json={"client_id": None})
        assert unbound.status_code == 200
        assert runtime.activation.bound_client_id(seal) is None
