"""The authorisation matrix: for every route, which roles (and how far across the unit
tree) and which service-client scopes may call it. One table, written as data, so that
it can be read, reviewed and tested as a whole.

A rule names the unit the request is about (:attr:`Rule.target`): the unit in the path,
or the unit of the person, credential, document or batch in the path, or a field of the
body. A role reaches its own unit (:attr:`Reach.OWN_UNIT`), its unit and every sub-unit
(:attr:`Reach.SUBTREE`) or everything (:attr:`Reach.ALL`, the system admin only). A
service client reaches the sub-tree of its unit, or everything when it has none. Signing
rules also ask that the caller *hold* the credential (:attr:`Rule.holder`), which the
signature activation checks (an officer's own credential, a clerk's unit seal, a seal
bound to the client).

Routes that answer anyone are in :data:`PUBLIC`; routes that answer any signed-in caller
and check the rest themselves (sign out, who am I, the CSC API, which checks holders on
every call) have :data:`SIGNED_IN`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from kyso.access.model import Principal, Role, Scope


class Reach(enum.Enum):
    OWN_UNIT = "own-unit"
    SUBTREE = "subtree"
    ALL = "all"


@dataclass(frozen=True, kw_only=True)
class Rule:
    roles: Mapping[Role, Reach] = field(default_factory=dict)
    """Roles that may call, and how far."""
    scopes: frozenset[Scope] = frozenset()
    """Service-client scopes that may call (any one of them suffices)."""
    target: str | None = None
    """Where the unit the request is about comes from: a path parameter (``unit_id``,
    ``person_id``, ``credential_id``, ``document_id``, ``batch_id``), ``body:<field>``
    or ``form:<field>``; ``None`` for a request about no one unit (lists are filtered)."""
    holder: frozenset[Role] = frozenset()
    """Roles that must also hold the credential of the request (sole control)."""
    signed_in: bool = False
    """Any signed-in caller; the route checks the rest itself."""
    writes: bool = False
    """The request changes something (so an auditor must never pass)."""
    whole_system: bool = False
    """About the whole system (the CA's trust anchors and CRLs, metrics): a client of one
    unit never passes, whatever its scopes."""


SIGNED_IN = Rule(signed_in=True)

_PEOPLE_ADMIN = {Role.UNIT_ADMIN: Reach.SUBTREE, Role.SYSTEM_ADMIN: Reach.ALL}
_READERS = {
    Role.UNIT_ADMIN: Reach.SUBTREE,
    Role.AUDITOR: Reach.SUBTREE,
    Role.SYSTEM_ADMIN: Reach.ALL,
}
_EVERYONE = {
    Role.OFFICER: Reach.OWN_UNIT,
    Role.CLERK: Reach.OWN_UNIT,
    **_READERS,
}
_SYSTEM = {Role.SYSTEM_ADMIN: Reach.ALL}
_AUDIT_READERS = {Role.AUDITOR: Reach.SUBTREE, **_SYSTEM}
_ADMIN = frozenset({Scope.ADMIN})


def _admin(target: str | None, roles: Mapping[Role, Reach] = _PEOPLE_ADMIN) -> Rule:
    return Rule(roles=roles, scopes=_ADMIN, target=target, writes=True)


def _read(
    target: str | None, roles: Mapping[Role, Reach] = _READERS, scopes: frozenset[Scope] = _ADMIN
) -> Rule:
    return Rule(roles=roles, scopes=scopes, target=target)


PUBLIC = frozenset(
    {
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("POST", "/oauth/token"),
        ("POST", "/api/v1/auth/login"),
        ("POST", "/csc/v1/info"),
        ("POST", "/csc/v1/auth/login"),
        ("POST", "/csc/v2/info"),
        ("POST", "/csc/v2/auth/login"),
        ("GET", "/pki/ca/{name}.crt"),
        ("GET", "/pki/crl/{name}.crl"),
        ("POST", "/pki/ocsp"),
        ("GET", "/pki/ocsp/{encoded}"),
        ("POST", "/tsa"),
    }
)
"""Routes that answer anyone: health, the token endpoints, the PKI protocols."""

MATRIX: Mapping[tuple[str, str], Rule] = {
    # signing in
    ("POST", "/api/v1/auth/logout"): SIGNED_IN,
    ("GET", "/api/v1/auth/me"): SIGNED_IN,
    ("POST", "/csc/v1/auth/revoke"): SIGNED_IN,
    ("POST", "/csc/v1/credentials/list"): SIGNED_IN,
    ("POST", "/csc/v1/credentials/info"): SIGNED_IN,
    ("POST", "/csc/v1/credentials/authorize"): SIGNED_IN,
    ("POST", "/csc/v1/signatures/signHash"): SIGNED_IN,
    ("POST", "/csc/v1/signatures/timestamp"): SIGNED_IN,
    ("POST", "/csc/v2/auth/revoke"): SIGNED_IN,
    ("POST", "/csc/v2/credentials/list"): SIGNED_IN,
    ("POST", "/csc/v2/credentials/info"): SIGNED_IN,
    ("POST", "/csc/v2/credentials/authorize"): SIGNED_IN,
    ("POST", "/csc/v2/signatures/signHash"): SIGNED_IN,
    ("POST", "/csc/v2/signatures/signDoc"): SIGNED_IN,
    ("POST", "/csc/v2/signatures/timestamp"): SIGNED_IN,
    # operations
    ("GET", "/metrics"): replace(_read(None, _SYSTEM), whole_system=True),
    # the audit log is one tree: its readers read all of it (no unit target)
    ("GET", "/audit/checkpoint"): _read(None, _AUDIT_READERS, frozenset({Scope.AUDIT_READ})),
    ("GET", "/audit/entries"): _read(None, _AUDIT_READERS, frozenset({Scope.AUDIT_READ})),
    ("GET", "/audit/proof/inclusion"): _read(None, _AUDIT_READERS, frozenset({Scope.AUDIT_READ})),
    ("GET", "/audit/proof/consistency"): _read(None, _AUDIT_READERS, frozenset({Scope.AUDIT_READ})),
    ("GET", "/audit/public-key"): _read(None, _AUDIT_READERS, frozenset({Scope.AUDIT_READ})),
    # units, people, credentials
    ("GET", "/api/v1/units"): _read(None),
    ("POST", "/api/v1/units"): _admin("body:parent_id"),
    ("POST", "/api/v1/units/{unit_id}/seal"): _admin("unit_id"),
    ("POST", "/api/v1/units/{unit_id}/csr"): _admin("unit_id"),
    ("PUT", "/api/v1/units/{unit_id}/seal-image"): _admin(
        "unit_id", {Role.CLERK: Reach.OWN_UNIT, **_PEOPLE_ADMIN}
    ),
    ("GET", "/api/v1/people"): _read(None),
    ("POST", "/api/v1/people"): _admin("body:unit_id"),
    ("GET", "/api/v1/people/{person_id}"): _read("person_id", _EVERYONE),
    ("POST", "/api/v1/people/{person_id}/enroll"): _admin("person_id"),
    ("POST", "/api/v1/people/{person_id}/csr"): _admin("person_id"),
    ("PUT", "/api/v1/people/{person_id}/signature-image"): _admin(
        "person_id", {Role.OFFICER: Reach.OWN_UNIT, **_PEOPLE_ADMIN}
    ),
    ("GET", "/api/v1/credentials/{credential_id}"): _read(
        "credential_id", _EVERYONE, frozenset({Scope.ADMIN, Scope.SIGN, Scope.SEAL})
    ),
    ("GET", "/api/v1/credentials/{credential_id}/certificate"): _read(
        "credential_id", _EVERYONE, frozenset({Scope.ADMIN, Scope.SIGN, Scope.SEAL, Scope.VERIFY})
    ),
    ("GET", "/api/v1/credentials/{credential_id}/csr"): _read("credential_id", _PEOPLE_ADMIN),
    ("POST", "/api/v1/credentials/{credential_id}/certificate"): _admin("credential_id"),
    ("POST", "/api/v1/credentials/{credential_id}/suspend"): _admin("credential_id"),
    ("POST", "/api/v1/credentials/{credential_id}/resume"): _admin("credential_id"),
    ("POST", "/api/v1/credentials/{credential_id}/revoke"): _admin("credential_id"),
    ("POST", "/api/v1/credentials/{credential_id}/renew"): _admin("credential_id"),
    # a PIN: changed by its holder, set or reset by an administrator; unlocked by one only
    ("PUT", "/api/v1/credentials/{credential_id}/pin"): Rule(
        roles={Role.OFFICER: Reach.OWN_UNIT, Role.CLERK: Reach.OWN_UNIT, **_PEOPLE_ADMIN},
        target="credential_id",
        holder=frozenset({Role.OFFICER, Role.CLERK}),
        writes=True,
    ),
    ("POST", "/api/v1/credentials/{credential_id}/pin/unlock"): _admin("credential_id"),
    # signature activation (a SAD): the credential's holder only, as for signing with it
    ("POST", "/api/v1/credentials/{credential_id}/authorize"): Rule(
        roles={Role.OFFICER: Reach.OWN_UNIT, Role.CLERK: Reach.OWN_UNIT},
        scopes=frozenset({Scope.SEAL}),
        target="credential_id",
        holder=frozenset({Role.OFFICER, Role.CLERK}),
        writes=True,
    ),
    # how a credential is activated, and which client may seal with a seal: its admins
    ("PUT", "/api/v1/credentials/{credential_id}/activation"): _admin("credential_id"),
    ("PUT", "/api/v1/credentials/{credential_id}/client"): _admin("credential_id"),
    # the CA itself
    ("POST", "/api/v1/pki/crl/{name}"): replace(_admin(None, _SYSTEM), whole_system=True),
    ("GET", "/api/v1/pki/expiring"): _read(None),
    ("GET", "/api/v1/pki/trust"): _read(None),
    ("POST", "/api/v1/pki/trust"): replace(_admin(None, _SYSTEM), whole_system=True),
    # documents: services queue drafts; the officer signs; the clerk seals and issues
    ("POST", "/api/v1/documents"): Rule(
        roles={Role.OFFICER: Reach.OWN_UNIT, Role.CLERK: Reach.OWN_UNIT},
        scopes=frozenset({Scope.SIGN}),
        target="form:unit_id",
        writes=True,
    ),
    ("POST", "/api/v1/documents/{document_id}/sign"): Rule(
        roles={Role.OFFICER: Reach.OWN_UNIT},
        target="document_id",
        holder=frozenset({Role.OFFICER}),
        writes=True,
    ),
    ("POST", "/api/v1/documents/{document_id}/seal"): Rule(
        roles={Role.CLERK: Reach.OWN_UNIT},
        scopes=frozenset({Scope.SEAL}),
        target="document_id",
        holder=frozenset({Role.CLERK}),
        writes=True,
    ),
    ("GET", "/api/v1/documents"): _read(None, _EVERYONE, frozenset({Scope.DOCUMENTS_READ})),
    ("GET", "/api/v1/documents/{document_id}"): _read(
        "document_id", _EVERYONE, frozenset({Scope.DOCUMENTS_READ})
    ),
    ("GET", "/api/v1/documents/{document_id}/pdf"): _read(
        "document_id", _EVERYONE, frozenset({Scope.DOCUMENTS_READ})
    ),
    # one-shot signing and batches: the holder of the credential only
    ("POST", "/api/v1/sign"): Rule(
        roles={Role.OFFICER: Reach.OWN_UNIT, Role.CLERK: Reach.OWN_UNIT},
        scopes=frozenset({Scope.SEAL}),
        target="body:credential_id",
        holder=frozenset({Role.OFFICER, Role.CLERK}),
        writes=True,
    ),
    ("POST", "/api/v1/batches"): Rule(
        roles={Role.OFFICER: Reach.OWN_UNIT, Role.CLERK: Reach.OWN_UNIT},
        scopes=frozenset({Scope.SEAL}),
        target="body:credential_id",
        holder=frozenset({Role.OFFICER, Role.CLERK}),
        writes=True,
    ),
    ("GET", "/api/v1/batches/{batch_id}"): _read(
        "batch_id", _EVERYONE, frozenset({Scope.SIGN, Scope.SEAL, Scope.DOCUMENTS_READ})
    ),
    # accounts and service clients: people by the admins of their unit (a system admin's
    # account has no unit, so only a reach over everything touches it; the routes also
    # keep system admins a system admin's business); a holder changes their own password;
    # clients by the system admin, or an admin client within its unit
    ("GET", "/api/v1/users"): _read(None),
    ("POST", "/api/v1/users"): _admin("body:unit_id"),
    ("GET", "/api/v1/users/{username}"): _read("username"),
    ("POST", "/api/v1/users/{username}/unlock"): _admin("username"),
    ("POST", "/api/v1/users/{username}/disable"): _admin("username"),
    ("PUT", "/api/v1/users/{username}/role"): _admin("username"),
    ("POST", "/api/v1/users/{username}/totp"): _admin("username"),
    ("PUT", "/api/v1/users/{username}/password"): _admin("username"),
    ("PUT", "/api/v1/auth/password"): SIGNED_IN,
    ("GET", "/api/v1/clients"): _read(None, _SYSTEM),
    ("POST", "/api/v1/clients"): _admin("body:unit_id", _SYSTEM),
    ("POST", "/api/v1/clients/{client_id}/rotate"): _admin("client_id", _SYSTEM),
    ("POST", "/api/v1/clients/{client_id}/revoke"): _admin("client_id", _SYSTEM),
    # verification: anyone signed in, and services with the verify scope
    ("POST", "/api/v1/verify"): Rule(
        roles=dict.fromkeys(Role, Reach.SUBTREE),
        scopes=frozenset({Scope.VERIFY}),
    ),
}


def permits(rule: Rule, principal: Principal, target_units: Sequence[int] | None) -> bool:
    """Whether ``principal`` may make a request under ``rule`` about the unit whose path up
    the tree (that unit first, the root last) is ``target_units``; ``None`` when the
    request is about no one unit. Holding the credential is checked apart."""
    if rule.signed_in:
        return True
    if principal.kind == "client":
        if not rule.scopes & principal.scopes:
            return False
        if principal.unit_id is not None and rule.whole_system:
            return False
        reach = Reach.ALL if principal.unit_id is None else Reach.SUBTREE
    else:
        if principal.role is None or principal.role not in rule.roles:
            return False
        reach = rule.roles[principal.role]
    if rule.target is None or reach is Reach.ALL:
        return True
    if not target_units:
        return False
    if reach is Reach.OWN_UNIT:
        return principal.unit_id == target_units[0]
    return principal.unit_id in target_units


def visible_units(principal: Principal, units: Sequence[Any]) -> set[int] | None:
    """The ids of the units whose records ``principal`` may list (``units``: every unit,
    with ``id`` and ``parent_id``); ``None``: all of them."""
    if principal.unit_id is None:
        return None if principal.kind == "client" or principal.role is Role.SYSTEM_ADMIN else set()
    parents = {unit.id: unit.parent_id for unit in units}
    if principal.role in (Role.OFFICER, Role.CLERK):
        return {principal.unit_id}
    seen = set()
    for unit in parents:
        current: int | None = unit
        while current is not None and current in parents:
            if current == principal.unit_id:
                seen.add(unit)
                break
            current = parents[current]
    return seen
