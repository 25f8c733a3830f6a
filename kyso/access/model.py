"""Roles, scopes and the principal a request acts as."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from audit.events import Actor
from kyso.errors import KysoError


class Role(enum.Enum):
    """What a person does; each is bound to a unit (a system admin to the whole system)."""

    OFFICER = "officer"
    """Signs the documents they issue, with their own credential."""
    CLERK = "clerk"
    """Văn thư: seals and issues documents with their unit's seal."""
    UNIT_ADMIN = "unit-admin"
    """Manages the people and credentials of a unit and its sub-units."""
    AUDITOR = "auditor"
    """Reads everything of a unit and its sub-units; changes nothing."""
    SYSTEM_ADMIN = "system-admin"
    """Manages the whole system."""

    @property
    def covers_sub_units(self) -> bool:
        """Whether the role's rights reach the sub-units of its unit."""
        return self in (Role.UNIT_ADMIN, Role.AUDITOR, Role.SYSTEM_ADMIN)


class Scope(enum.Enum):
    """What an OAuth2 access token of a service client allows."""

    SIGN = "sign"
    """Ask officers for signatures (queue documents for their approval)."""
    SEAL = "seal"
    """Seal with a unit seal credential bound to the client."""
    VERIFY = "verify"
    """Verify documents."""
    DOCUMENTS_READ = "documents:read"
    """Read documents and their status."""
    AUDIT_READ = "audit:read"
    """Read the audit log and its proofs."""
    ADMIN = "admin"
    """Administer units, people and credentials."""


def parse_scopes(text: str) -> frozenset[Scope]:
    """The scopes of a space-separated list; :class:`InvalidScopeError` for an unknown one."""
    known = {scope.value: scope for scope in Scope}
    found = set()
    for word in text.split():
        if word not in known:
            raise InvalidScopeError(f"unknown scope {word[:40]!r}")
        found.add(known[word])
    return frozenset(found)


def format_scopes(scopes: frozenset[Scope]) -> str:
    return " ".join(sorted(scope.value for scope in scopes))


@dataclass(frozen=True, kw_only=True)
class Principal:
    """Who a request acts as: a person (with a role) or a service client (with scopes)."""

    kind: str
    """``user`` or ``client``."""
    id: str
    """``user:<username>`` or ``client:<client_id>``: stable, written into audit events."""
    role: Role | None
    """A person's role; ``None`` for a service client."""
    unit_id: int | None
    """The unit the rights are scoped to; ``None``: the whole system."""
    scopes: frozenset[Scope] = frozenset()
    """A service client's scopes (empty for a person)."""
    second_factor: bool = False
    """The person proved a second factor (TOTP) when signing in."""

    def actor(self) -> Actor:
        role = self.role.value if self.role is not None else "service"
        return Actor(id=self.id, role=role)


class AccessError(KysoError):
    code = "access.error"


class InvalidLoginError(AccessError):
    """Wrong username, password or code, or an account that may not sign in: one message
    for all, so that an answer never tells whether an account exists."""

    code = "access.invalid_login"


class InvalidClientError(AccessError):
    code = "access.invalid_client"


class InvalidScopeError(AccessError):
    code = "access.invalid_scope"


class InvalidTokenError(AccessError):
    code = "access.invalid_token"


class ForbiddenError(AccessError):
    code = "access.forbidden"


class AccessNotFoundError(AccessError):
    code = "access.not_found"


class AccessConflictError(AccessError):
    code = "access.conflict"


class InvalidAccessInputError(AccessError):
    code = "access.invalid_input"
