"""The authorisation matrix (``kyso.access.matrix``): every route of the app is public or has
a rule, and no rule names a route that does not exist; each rule gives exactly the roles and
scopes the table below says, checked for every role and every client scope, in scope (own
unit, a sub-unit) and out of scope (a sibling unit, the parent); and the policy's
invariants hold: auditors change nothing, no service ever signs for an officer, nothing but
the officer signs a document as officer, a system-only route stays system-only."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from kyso.access.matrix import MATRIX, PUBLIC, Reach, Rule, permits
from kyso.access.model import Principal, Role, Scope
from kyso.app import create_app
from kyso.settings import Settings

# The unit tree of the cases: province 1 with communes 2 and 3; ministry 0 above.
MINISTRY, PROVINCE, COMMUNE, SIBLING = 0, 1, 2, 3
PATHS = {
    "ministry": [MINISTRY],
    "province": [PROVINCE, MINISTRY],
    "commune": [COMMUNE, PROVINCE, MINISTRY],
    "sibling": [SIBLING, PROVINCE, MINISTRY],
}
CODES = {
    "O": Role.OFFICER,
    "C": Role.CLERK,
    "A": Role.UNIT_ADMIN,
    "U": Role.AUDITOR,
    "S": Role.SYSTEM_ADMIN,
}

# route → (roles that may call it about a unit of their own scope, client scopes)
EXPECTED: dict[tuple[str, str], tuple[str, str]] = {
    ("GET", "/metrics"): ("S", "admin"),
    ("GET", "/audit/checkpoint"): ("US", "audit:read"),
    ("GET", "/audit/entries"): ("US", "audit:read"),
    ("GET", "/audit/proof/inclusion"): ("US", "audit:read"),
    ("GET", "/audit/proof/consistency"): ("US", "audit:read"),
    ("GET", "/audit/public-key"): ("US", "audit:read"),
    ("GET", "/api/v1/units"): ("AUS", "admin"),
    ("POST", "/api/v1/units"): ("AS", "admin"),
    ("POST", "/api/v1/units/{unit_id}/seal"): ("AS", "admin"),
    ("POST", "/api/v1/units/{unit_id}/csr"): ("AS", "admin"),
    ("PUT", "/api/v1/units/{unit_id}/seal-image"): ("CAS", "admin"),
    ("GET", "/api/v1/people"): ("AUS", "admin"),
    ("POST", "/api/v1/people"): ("AS", "admin"),
    ("GET", "/api/v1/people/{person_id}"): ("OCAUS", "admin"),
    ("POST", "/api/v1/people/{person_id}/enroll"): ("AS", "admin"),
    ("POST", "/api/v1/people/{person_id}/csr"): ("AS", "admin"),
    ("PUT", "/api/v1/people/{person_id}/signature-image"): ("OAS", "admin"),
    ("GET", "/api/v1/credentials/{credential_id}"): ("OCAUS", "admin seal sign"),
    ("GET", "/api/v1/credentials/{credential_id}/certificate"): ("OCAUS", "admin seal sign verify"),
    ("GET", "/api/v1/credentials/{credential_id}/csr"): ("AS", "admin"),
    ("POST", "/api/v1/credentials/{credential_id}/certificate"): ("AS", "admin"),
    ("POST", "/api/v1/credentials/{credential_id}/suspend"): ("AS", "admin"),
    ("POST", "/api/v1/credentials/{credential_id}/resume"): ("AS", "admin"),
    ("POST", "/api/v1/credentials/{credential_id}/revoke"): ("AS", "admin"),
    ("POST", "/api/v1/credentials/{credential_id}/renew"): ("AS", "admin"),
    ("PUT", "/api/v1/credentials/{credential_id}/pin"): ("OCAS", ""),
    ("POST", "/api/v1/credentials/{credential_id}/pin/unlock"): ("AS", "admin"),
    ("POST", "/api/v1/credentials/{credential_id}/authorize"): ("OC", "seal"),
    ("PUT", "/api/v1/credentials/{credential_id}/activation"): ("AS", "admin"),
    ("PUT", "/api/v1/credentials/{credential_id}/client"): ("AS", "admin"),
    ("POST", "/api/v1/pki/crl/{name}"): ("S", "admin"),
    ("GET", "/api/v1/pki/expiring"): ("AUS", "admin"),
    ("GET", "/api/v1/pki/trust"): ("AUS", "admin"),
    ("POST", "/api/v1/pki/trust"): ("S", "admin"),
    ("POST", "/api/v1/documents"): ("OC", "sign"),
    ("POST", "/api/v1/documents/{document_id}/sign"): ("O", ""),
    ("POST", "/api/v1/documents/{document_id}/seal"): ("C", "seal"),
    ("GET", "/api/v1/documents"): ("OCAUS", "documents:read"),
    ("GET", "/api/v1/documents/{document_id}"): ("OCAUS", "documents:read"),
    ("GET", "/api/v1/documents/{document_id}/pdf"): ("OCAUS", "documents:read"),
    ("POST", "/api/v1/sign"): ("OC", "seal"),
    ("POST", "/api/v1/batches"): ("OC", "seal"),
    ("GET", "/api/v1/batches/{batch_id}"): ("OCAUS", "documents:read seal sign"),
    ("POST", "/api/v1/verify"): ("OCAUS", "verify"),
    ("GET", "/api/v1/users"): ("AUS", "admin"),
    ("POST", "/api/v1/users"): ("AS", "admin"),
    ("GET", "/api/v1/users/{username}"): ("AUS", "admin"),
    ("POST", "/api/v1/users/{username}/unlock"): ("AS", "admin"),
    ("POST", "/api/v1/users/{username}/disable"): ("AS", "admin"),
    ("PUT", "/api/v1/users/{username}/role"): ("AS", "admin"),
    ("POST", "/api/v1/users/{username}/totp"): ("AS", "admin"),
    ("PUT", "/api/v1/users/{username}/password"): ("AS", "admin"),
    ("GET", "/api/v1/clients"): ("S", "admin"),
    ("POST", "/api/v1/clients"): ("S", "admin"),
    ("POST", "/api/v1/clients/{client_id}/rotate"): ("S", "admin"),
    ("POST", "/api/v1/clients/{client_id}/revoke"): ("S", "admin"),
}
WHOLE_SYSTEM = {
    ("GET", "/metrics"),
    ("POST", "/api/v1/pki/crl/{name}"),
    ("POST", "/api/v1/pki/trust"),
}
"""Routes about the whole system: a client of one unit never passes, whatever its scopes."""
SIGNED_IN_ONLY = {
    ("POST", "/api/v1/auth/logout"),
    ("GET", "/api/v1/auth/me"),
    ("PUT", "/api/v1/auth/password"),
    ("POST", "/csc/v1/auth/revoke"),
    ("POST", "/csc/v1/credentials/list"),
    ("POST", "/csc/v1/credentials/info"),
    ("POST", "/csc/v1/credentials/authorize"),
    ("POST", "/csc/v1/signatures/signHash"),
    ("POST", "/csc/v1/signatures/timestamp"),
    *(
        ("POST", f"/csc/v2/{name}")
        for name in (
            "auth/revoke",
            "credentials/list",
            "credentials/info",
            "credentials/authorize",
            "signatures/signHash",
            "signatures/signDoc",
            "signatures/timestamp",
        )
    ),
}


def person(role: Role, unit: int | None) -> Principal:
    return Principal(kind="user", id=f"user:{role.value}", role=role, unit_id=unit)


def client(scopes: frozenset[Scope], unit: int | None = None) -> Principal:
    return Principal(kind="client", id="client:x", role=None, unit_id=unit, scopes=scopes)


def home(role: Role) -> int | None:
    """Where each role sits in the cases: the system admin nowhere, admins and auditors at
    the province, officers and clerks in a commune."""
    return {Role.SYSTEM_ADMIN: None, Role.UNIT_ADMIN: PROVINCE, Role.AUDITOR: PROVINCE}.get(
        role, COMMUNE
    )


def test_every_route_is_public_or_has_a_rule(tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path))
    routes = {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    }
    assert not PUBLIC & set(MATRIX)
    assert routes - PUBLIC - set(MATRIX) == set(), "routes without a rule"
    assert (PUBLIC | set(MATRIX)) - routes == set(), "rules for routes that do not exist"
    assert set(MATRIX) == set(EXPECTED) | SIGNED_IN_ONLY


@pytest.mark.parametrize("route", sorted(EXPECTED), ids=lambda r: f"{r[0]} {r[1]}")
def test_each_route_answers_exactly_its_roles_in_and_out_of_scope(route: tuple[str, str]) -> None:
    rule = MATRIX[route]
    roles, scopes = EXPECTED[route]
    allowed_roles = {CODES[c] for c in roles}
    for role in Role:
        principal = person(role, home(role))
        for place, path in PATHS.items():
            target = None if rule.target is None else path
            in_scope = (
                rule.target is None
                or role is Role.SYSTEM_ADMIN
                or (
                    place == "commune"
                    if home(role) == COMMUNE
                    else place in ("province", "commune", "sibling")
                )
            )
            expected = role in allowed_roles and in_scope
            assert permits(rule, principal, target) is expected, (role, place)
    allowed_scopes = {Scope(s) for s in scopes.split()}
    system_route = route in WHOLE_SYSTEM
    for scope in Scope:
        for unit, place in ((None, "sibling"), (COMMUNE, "commune"), (COMMUNE, "sibling")):
            target = None if rule.target is None else PATHS[place]
            in_scope = unit is None or (
                not system_route and (rule.target is None or place == "commune")
            )
            expected = scope in allowed_scopes and in_scope
            assert permits(rule, client(frozenset({scope}), unit), target) is expected, (
                scope,
                unit,
                place,
            )


def test_auditors_change_nothing_and_writes_name_their_unit() -> None:
    for route, rule in MATRIX.items():
        if rule.writes:
            assert Role.AUDITOR not in rule.roles, route
            assert rule.target is not None or set(rule.roles) <= {Role.SYSTEM_ADMIN}, route
        if route[0] != "GET" and not rule.signed_in and route != ("POST", "/api/v1/verify"):
            assert rule.writes, route


def test_no_service_signs_for_an_officer_and_only_the_officer_signs_as_one() -> None:
    officer_signing = MATRIX[("POST", "/api/v1/documents/{document_id}/sign")]
    for scopes in itertools.chain.from_iterable(
        itertools.combinations(list(Scope), n) for n in range(1, len(Scope) + 1)
    ):
        assert not permits(officer_signing, client(frozenset(scopes)), PATHS["commune"])
    for role in Role:
        allowed = permits(officer_signing, person(role, home(role)), PATHS["commune"])
        assert allowed is (role is Role.OFFICER), role
    # every signing route asks its people to hold the credential (sole control)
    for route in (("POST", "/api/v1/sign"), ("POST", "/api/v1/batches")):
        assert MATRIX[route].holder == {Role.OFFICER, Role.CLERK}
        assert Scope.SIGN not in MATRIX[route].scopes  # a service may only queue drafts


def test_only_the_system_admin_reaches_everything() -> None:
    for route, rule in MATRIX.items():
        for role, reach in rule.roles.items():
            assert reach is not Reach.ALL or role is Role.SYSTEM_ADMIN, (route, role)
    assert isinstance(MATRIX[("POST", "/api/v1/pki/trust")], Rule)
    assert not permits(
        MATRIX[("POST", "/api/v1/pki/trust")], person(Role.UNIT_ADMIN, MINISTRY), None
    )
    # an admin client of a unit administers that unit, not the CA, its CRLs or metrics
    for route in (("POST", "/api/v1/pki/trust"), ("POST", "/api/v1/pki/crl/{name}")):
        assert not permits(MATRIX[route], client(frozenset({Scope.ADMIN}), MINISTRY), None)
        assert permits(MATRIX[route], client(frozenset({Scope.ADMIN})), None)
