"""The one dependency every protected route goes through: who calls (bearer token or
session cookie), what the authorisation matrix (:mod:`kyso.access.matrix`) says of that
caller for this route and this unit, and, for signing, whether the caller holds the
credential. The unit of the request comes from the path (a unit, person, credential,
document or batch) or from the body, as the route's rule says.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from audit.events import Actor
from kyso.access.matrix import MATRIX, Rule, permits
from kyso.access.model import AccessError, ForbiddenError, Principal
from kyso.routers.auth import current_principal
from kyso.routers.health import RuntimeDep
from kyso.runtime import Runtime
from pki.authority import Authority
from pki.errors import PkiError
from signer.errors import SignerError


async def authorised_principal(request: Request, runtime: RuntimeDep) -> Principal:
    """The caller, if the matrix lets them make this request; else 401 or 403."""
    route = request.scope.get("route")
    path = getattr(route, "path", request.url.path)
    method = "GET" if request.method == "HEAD" else request.method
    rule = MATRIX.get((method, path))
    if rule is None:  # every route has a rule (tests/kyso/test_matrix.py); never open by default
        raise ForbiddenError(f"{method} {path} has no rule")
    principal = await current_principal(request, runtime)
    request.state.principal = principal
    if rule.signed_in:
        return principal
    body = await _body(request, rule)
    units = await run_in_threadpool(_target_units, rule, request.path_params, body, runtime)
    if not permits(rule, principal, units):
        raise ForbiddenError("this account or client may not do that here")
    if rule.holder:
        await run_in_threadpool(_check_holder, rule, principal, request.path_params, body, runtime)
    return principal


async def authorised_actor(principal: Annotated[Principal, Depends(authorised_principal)]) -> Actor:
    """The authorised caller, as audit events name it."""
    return principal.actor()


ActorDep = Annotated[Actor, Depends(authorised_actor)]
AuthorisedDep = Annotated[Principal, Depends(authorised_principal)]


async def _body(request: Request, rule: Rule) -> dict[str, Any]:
    """The fields of the body a rule needs (the unit or the credential), read once: the
    route reads the same cached body."""
    wanted = rule.target or ""
    if not (wanted.startswith(("body:", "form:")) or rule.holder):
        return {}
    content_type = request.headers.get("content-type", "")
    try:
        if content_type.startswith("application/json"):
            parsed = json.loads(await request.body() or b"{}")
            return parsed if isinstance(parsed, dict) else {}
        if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            form: FormData = await request.form()
            return {k: v for k, v in form.items() if isinstance(v, str)}
    except (ValueError, UnicodeDecodeError):
        return {}  # the route answers the malformed body itself
    return {}


def _int(value: object) -> int | None:
    try:
        number = int(str(value))
    except (TypeError, ValueError):
        return None
    return number if 0 < number < 2**62 else None


def _target_units(
    rule: Rule, path: dict[str, Any], body: dict[str, Any], runtime: Runtime
) -> list[int] | None:
    """The unit the request is about and its ancestors (that unit first); ``None`` for a
    request about no one unit; ``[]`` when the unit cannot be found (then only a reach
    over everything passes, and the route answers 404)."""
    target = rule.target
    if target is None:
        return None
    source, _, field = target.partition(":")
    key = field if source in ("body", "form") else target
    raw = body.get(key) if source in ("body", "form") else path.get(key)
    # Documents and batches have text ids (ULIDs), accounts and clients names; units,
    # people and credentials numbers.
    value = str(raw)[:64] if key in _TEXT_KEYS and raw else _int(raw)
    if value is None:
        return []
    try:
        unit = _unit_of(key, value, runtime)
    except (PkiError, SignerError, AccessError):
        return []
    return [] if unit is None else _ancestry(unit, runtime)


_TEXT_KEYS = frozenset({"document_id", "batch_id", "username", "client_id"})


def _unit_of(key: str, value: int | str, runtime: Runtime) -> int | None:
    authority = _authority(runtime)
    if isinstance(value, str):
        if key == "document_id" and runtime.signing is not None:
            return runtime.signing.registry.document(value).unit_id
        if key == "batch_id" and runtime.batches is not None:
            return _unit_of("credential_id", runtime.batches.batch(value).credential_id, runtime)
        # A system admin's account and a client of no unit have none: only a reach over
        # everything passes. So does a revoked client (``client`` answers None).
        if key == "username" and runtime.access is not None:
            return runtime.access.user(value).unit_id
        if key == "client_id" and runtime.access is not None:
            client = runtime.access.client(value)
            return None if client is None else client.unit_id
        return None
    if key in ("unit_id", "parent_id"):
        return value
    if key == "person_id":
        return authority.person(value).unit_id
    if key == "credential_id":
        credential = authority.credential(value)
        if credential.unit_id is not None:
            return credential.unit_id
        return (
            None if credential.person_id is None else authority.person(credential.person_id).unit_id
        )
    return None


def _ancestry(unit_id: int, runtime: Runtime) -> list[int]:
    parents = {unit.id: unit.parent_id for unit in _authority(runtime).units()}
    path: list[int] = []
    current: int | None = unit_id
    while current is not None and current in parents and current not in path:
        path.append(current)
        current = parents[current]
    return path


def _check_holder(
    rule: Rule, principal: Principal, path: dict[str, Any], body: dict[str, Any], runtime: Runtime
) -> None:
    """Signing: the caller holds the credential (its officer, a clerk of the seal's unit,
    the client a seal is bound to)."""
    if principal.role is not None and principal.role not in rule.holder:
        return
    credential_id = _int(path.get("credential_id", body.get("credential_id")))
    if credential_id is None or runtime.activation is None:
        raise ForbiddenError("the credential to sign with is not named")
    try:
        credential = _authority(runtime).credential(credential_id)
    except PkiError as ex:
        raise ForbiddenError("only the credential's holder may use it") from ex
    runtime.activation.check_holder(principal, credential)


def _authority(runtime: Runtime) -> Authority:
    if runtime.pki is None:
        raise ForbiddenError("the PKI is not available in this process")
    return runtime.pki.authority
