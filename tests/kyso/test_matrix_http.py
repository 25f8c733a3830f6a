"""The authorisation matrix as the running service enforces it (SQLite and PostgreSQL):
every protected route is called by every kind of caller — each role in scope and out of
scope of the demo commune CAP-BT, each service-client scope, and nobody — about a real
unit, person, credential and document of CAP-BT; the call is refused (401 without a
sign-in, 403 otherwise) exactly when the matrix and, for signing, holding the credential
say so. Whatever an allowed call then answers (200, 404, 409, 422...) is the route's own
business; a 5xx fails the test.

The matrix itself is checked cell by cell against a written-out copy in test_matrix.py;
this checks that every route resolves its unit and enforces its rule."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from kyso.access.matrix import MATRIX, Rule, permits
from kyso.access.model import Principal, Role, Scope
from kyso.access.store import AccessStore
from pki.authority import Authority
from pki.store import CredentialKind
from signer.documents import DraftMetadata
from tests.conftest import TestToken
from tests.kyso.identities import SETUP, as_service, sign_in, sign_in_as
from tests.kyso.live import demo_service
from tests.kyso.test_documents_http import started
from tests.signer.test_stamps import draft_pdf

MISSING_BATCH = "01JNOBATCH0000000000000000"
"""No such batch: its unit cannot be found, so only a reach over everything passes."""


@dataclass(frozen=True, kw_only=True)
class Site:
    client: TestClient
    ids: dict[str, Any]
    paths: dict[str, list[int]]
    """Unit paths (the unit first, then its ancestors) by unit code."""


@pytest.fixture
def site(token: TestToken, tmp_path: Path, database_url: str) -> Iterator[Site]:
    settings, demo_file = demo_service(token, tmp_path, database_url)
    demo = json.loads(demo_file.read_text(encoding="utf-8"))
    with started(settings) as client:
        runtime = client.app.state.runtime  # type: ignore[attr-defined]
        authority: Authority = runtime.pki.authority
        units = {u.code: u for u in authority.units()}
        parents = {u.id: u.parent_id for u in units.values()}

        def path(code: str) -> list[int]:
            found, current = [], units[code].id
            while current is not None:
                found.append(current)
                current = parents[current]
            return found

        here = next(u for u in demo["units"] if u["code"] == "CAP-BT")
        officer = next(p for p in here["people"] if p["role"] == "officer")
        seal = here["seal_credential_ids"][0]
        document = runtime.signing.registry.upload(
            draft_pdf(),
            DraftMetadata(
                document_type="CT07",
                unit_id=units["CAP-BT"].id,
                service="residence",
                subject_person_id="079203001234",
            ),
            SETUP,
        )
        store: AccessStore = runtime.access
        for username, role, code in (
            ("admin.bt", Role.UNIT_ADMIN, "CAP-BT"),
            ("auditor.sg", Role.AUDITOR, "CAP-SG"),
        ):
            sign_in_as(client, role, unit_id=units[code].id, username=username)
        # what the account and client routes are about: an account and a client of CAP-BT
        store.add_user(
            username="target.bt",
            role=Role.CLERK,
            unit_id=units["CAP-BT"].id,
            password="a long enough password",
            actor=SETUP,
        )
        service, _ = store.add_client(
            name="CAP-BT portal",
            scopes=frozenset({Scope.SIGN}),
            unit_id=units["CAP-BT"].id,
            actor=SETUP,
        )
        yield Site(
            client=client,
            ids={
                "unit": units["CAP-BT"].id,
                "person": officer["id"],
                "officer_credential": officer["credential_ids"][0],
                "seal": seal,
                "document": document.id,
                "account": "target.bt",
                "client": service.client_id,
                "store": store,
                "activation": runtime.activation,
                "authority": authority,
            },
            paths={code: path(code) for code in units},
        )


def request_for(route: tuple[str, str], ids: dict[str, Any]) -> dict[str, Any]:
    """A call of ``route`` about CAP-BT: the path filled in, the body naming the unit or
    the credential the rule reads."""
    method, template = route
    credential = (
        ids["seal"]
        if template.endswith("/seal") and "documents" in template
        else ids["officer_credential"]
    )
    url = (
        template.replace("{unit_id}", str(ids["unit"]))
        .replace("{person_id}", str(ids["person"]))
        .replace("{credential_id}", str(credential))
        .replace("{document_id}", ids["document"])
        .replace("{batch_id}", MISSING_BATCH)
        .replace("{name}", "issuing")
        .replace("{username}", ids["account"])
        .replace("{client_id}", ids["client"])
    )
    target = MATRIX[route].target or ""
    options: dict[str, Any] = {"method": method, "url": url}
    if target == "body:parent_id":
        options["json"] = {"parent_id": ids["unit"]}
    elif target == "body:unit_id":
        options["json"] = {"unit_id": ids["unit"]}
    elif template == "/api/v1/sign":
        options["data"] = {"credential_id": str(credential)}
        options["files"] = {"file": ("a.pdf", b"%PDF-1.7", "application/pdf")}
    elif template == "/api/v1/documents":
        options["data"] = {"unit_id": str(ids["unit"])}
        options["files"] = {"file": ("a.pdf", b"%PDF-1.7", "application/pdf")}
    elif method in ("POST", "PUT") and MATRIX[route].holder:
        options["json"] = {"credential_id": credential}
    elif method in ("POST", "PUT"):
        options["json"] = {}
    return options


Caller = tuple[str, Callable[[TestClient], None], Principal]


def callers(site: Site) -> list[Caller]:
    store: AccessStore = site.ids["store"]
    found: list[Caller] = []
    for username in ("anh.nv", "ngoc.ttb", "dung.lh", "huong.ptt", "admin.bt", "admin.hcm",
                     "auditor.hcm", "auditor.sg", "sysadmin"):  # fmt: skip
        user = store.user(username)
        found.append(
            (
                username,
                lambda c, name=username: sign_in(c, name),
                user.principal(second_factor=True),
            )
        )
    for scope in Scope:
        found.append(
            (
                f"client {scope.value}",
                lambda c, s=scope: as_service(c, s),
                Principal(
                    kind="client", id="client:x", role=None, unit_id=None, scopes=frozenset({scope})
                ),
            )
        )
    return found


def holds(name: str, principal: Principal, credential: int, site: Site) -> bool:
    authority: Authority = site.ids["authority"]
    target = authority.credential(credential)
    if principal.kind == "client":
        return False  # no seal is bound to these clients
    user = site.ids["store"].user(name)
    if target.kind is CredentialKind.OFFICER:
        return user.role is Role.OFFICER and user.person_id == target.person_id
    return user.role is Role.CLERK and user.unit_id == target.unit_id


def expected(
    route: tuple[str, str], rule: Rule, name: str, principal: Principal, site: Site
) -> bool:
    units = [] if "{batch_id}" in route[1] else site.paths["CAP-BT"]
    if not permits(rule, principal, None if rule.target is None else units):
        return False
    if rule.holder and (principal.kind == "client" or principal.role in rule.holder):
        credential = request_for(route, site.ids)
        named = credential.get("json", {}).get("credential_id") or credential.get("data", {}).get(
            "credential_id"
        )
        if named is None:
            named = site.ids["officer_credential"]
        return holds(name, principal, int(named), site)
    return True


def test_every_route_refuses_exactly_whom_the_matrix_refuses(site: Site) -> None:
    client = site.client
    mismatches = []
    protected = sorted(r for r, rule in MATRIX.items() if not rule.signed_in)
    for route in protected:
        client.cookies.clear()
        client.headers.pop("Authorization", None)
        anonymous = client.request(**request_for(route, site.ids))
        if anonymous.status_code != 401:
            mismatches.append((route, "nobody", anonymous.status_code))
    for name, become, principal in callers(site):
        become(client)
        for route in protected:
            rule = MATRIX[route]
            answer = client.request(**request_for(route, site.ids))
            assert answer.status_code < 500, (route, name, answer.text[:300])
            # The matrix's refusals; a 403 of the route's own (a wrong PIN) is an answer.
            refused = answer.status_code == 401 or (
                answer.status_code == 403 and _code(answer) == "access.forbidden"
            )
            if refused == expected(route, rule, name, principal, site):
                mismatches.append((route, name, answer.status_code, answer.text[:120]))
    assert not mismatches, "\n".join(map(str, mismatches))


def _code(answer: Any) -> str | None:
    try:
        return str(answer.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return None
