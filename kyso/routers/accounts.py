"""Accounts (people who sign in) and service clients over HTTP: the ``kyso users`` and
``kyso clients`` commands as routes, each change audited by the store.

Who may do what, beyond the authorisation matrix (which places every request in a unit):

- Unit admins manage the accounts of their unit and its sub-units: officers, clerks,
  auditors and unit admins. A system admin's account has no unit, so only a reach over
  everything touches it; and only a system admin *person* creates one, promotes an account
  to one, or changes one (an ``admin``-scope service never takes over a system admin).
- An account holder changes their own password at ``PUT /api/v1/auth/password`` with the
  current one; an administrator sets it at ``PUT /api/v1/users/{username}/password``.
  Either way every other session of the account ends.
- Service clients are the system admin's business (and an ``admin``-scope client's,
  within its unit). A caller never hands out a secret for more than it holds: a client
  creates or rotates only clients whose scopes it holds itself.

Secrets (TOTP seeds, client secrets) are given once, with ``Cache-Control: no-store``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Body, Path, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from kyso.access import factors
from kyso.access.matrix import visible_units
from kyso.access.model import ForbiddenError, Principal, Role, Scope
from kyso.access.store import ROTATION_GRACE, AccessStore, Client, User
from kyso.routers.auth import SESSION_COOKIE, AccessDep, limit
from kyso.routers.authorise import AuthorisedDep
from kyso.routers.pki import PkiDep

router = APIRouter(prefix="/api/v1", tags=["accounts"])

Username = Annotated[str, Path(min_length=1, max_length=64)]
ClientId = Annotated[str, Path(min_length=1, max_length=64)]
UnitId = Annotated[int | None, Field(ge=1, le=2**62, strict=True)]
Password = Annotated[SecretStr, Field(min_length=1, max_length=factors.MAX_PASSWORD)]
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_MAX_GRACE_HOURS = 24 * 30


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Account(BaseModel):
    """An account as administrators see it: never its password hash or TOTP secret."""

    username: str
    role: Role
    unit_id: int | None
    person_id: int | None
    locked: bool
    disabled: bool
    created_at: datetime

    @classmethod
    def of(cls, user: User) -> Account:
        return cls(
            username=user.username,
            role=user.role,
            unit_id=user.unit_id,
            person_id=user.person_id,
            locked=user.locked,
            disabled=user.disabled,
            created_at=user.created_at,
        )


class SecondFactor(BaseModel):
    """A TOTP secret, given once: to enrol the holder's authenticator app."""

    username: str
    totp_secret: str
    totp_uri: str = Field(description="otpauth:// URI, to show as a QR code")

    @classmethod
    def of(cls, username: str, secret: str) -> SecondFactor:
        return cls(
            username=username, totp_secret=secret, totp_uri=factors.totp_uri(secret, username)
        )


class NewAccount(_Body):
    username: str = Field(min_length=3, max_length=64, pattern=r"^[a-z0-9][a-z0-9._-]+$")
    role: Role
    unit_id: UnitId = Field(None, description="Every role but system-admin has one")
    person_id: int | None = Field(
        None, ge=1, le=2**62, description="The officer or clerk this account is"
    )
    password: Password


class CreatedAccount(BaseModel):
    account: Account
    second_factor: SecondFactor


class RoleChange(_Body):
    role: Role
    unit_id: UnitId = Field(None, description="Every role but system-admin has one")


class NewPassword(_Body):
    password: Password


class PasswordChange(_Body):
    current_password: Password
    new_password: Password


class ServiceClient(BaseModel):
    """A service client: never its secret (only its SHA-256 is stored)."""

    client_id: str
    name: str
    unit_id: int | None
    scopes: list[Scope]
    revoked: bool
    created_at: datetime
    rotated_at: datetime | None

    @classmethod
    def of(cls, client: Client) -> ServiceClient:
        return cls(
            client_id=client.client_id,
            name=client.name,
            unit_id=client.unit_id,
            scopes=sorted(client.scopes, key=lambda scope: scope.value),
            revoked=client.revoked,
            created_at=client.created_at,
            rotated_at=client.rotated_at,
        )


class NewClient(_Body):
    name: str = Field(min_length=1, max_length=128)
    scopes: list[Scope] = Field(min_length=1, max_length=len(Scope))
    unit_id: UnitId = Field(None, description="The unit the client acts in; none: everywhere")


class CreatedClient(BaseModel):
    client: ServiceClient
    client_secret: str = Field(description="Given once; only its SHA-256 is kept")


class Rotation(_Body):
    grace_hours: int = Field(
        default=int(ROTATION_GRACE.total_seconds()) // 3600,
        ge=0,
        le=_MAX_GRACE_HOURS,
        description="How long the current secret keeps working",
    )


class RotatedSecret(BaseModel):
    client_id: str
    client_secret: str = Field(description="Given once; only its SHA-256 is kept")
    previous_valid_until: datetime


# -- accounts ------------------------------------------------------------------------------


def _require_system_admin(caller: Principal, what: str) -> None:
    if caller.role is not Role.SYSTEM_ADMIN:
        raise ForbiddenError(f"only a system admin may {what}")


async def _target(store: AccessStore, caller: Principal, username: str) -> User:
    """The account a write is about; a system admin's is a system admin's business only."""
    user = await run_in_threadpool(store.user, username)
    if user.role is Role.SYSTEM_ADMIN:
        _require_system_admin(caller, "change a system admin's account")
    return user


async def _check_unit_in_reach(pki: PkiDep, caller: Principal, unit_id: int | None) -> None:
    """A role change moves an account: the unit it moves to must be the caller's too."""
    if unit_id is None:
        _require_system_admin(caller, "make a system admin")
        return
    seen = visible_units(caller, await run_in_threadpool(pki.authority.units))
    if seen is not None and unit_id not in seen:
        raise ForbiddenError("this account or client may not do that here")


@router.get("/users", summary="Accounts in the caller's reach")
async def list_users(caller: AuthorisedDep, store: AccessDep, pki: PkiDep) -> list[Account]:
    users = await run_in_threadpool(store.users)
    seen = visible_units(caller, await run_in_threadpool(pki.authority.units))
    return [Account.of(u) for u in users if seen is None or u.unit_id in seen]


@router.post("/users", status_code=201, summary="Create an account; its TOTP secret is given once")
async def add_user(
    body: NewAccount, response: Response, caller: AuthorisedDep, store: AccessDep
) -> CreatedAccount:
    if body.role is Role.SYSTEM_ADMIN:
        _require_system_admin(caller, "create a system admin")
    user, secret = await run_in_threadpool(
        lambda: store.add_user(
            username=body.username,
            role=body.role,
            unit_id=body.unit_id,
            person_id=body.person_id,
            password=body.password.get_secret_value(),
            actor=caller.actor(),
        )
    )
    response.headers.update(_NO_STORE)
    return CreatedAccount(
        account=Account.of(user), second_factor=SecondFactor.of(user.username, secret)
    )


@router.get("/users/{username}", summary="An account")
async def show_user(username: Username, _caller: AuthorisedDep, store: AccessDep) -> Account:
    return Account.of(await run_in_threadpool(store.user, username))


@router.post("/users/{username}/unlock", summary="Unlock after wrong sign-ins")
async def unlock_user(username: Username, caller: AuthorisedDep, store: AccessDep) -> Account:
    await _target(store, caller, username)
    return Account.of(await run_in_threadpool(store.unlock, username, caller.actor()))


@router.post("/users/{username}/disable", summary="Stop the account signing in; end its sessions")
async def disable_user(username: Username, caller: AuthorisedDep, store: AccessDep) -> Account:
    await _target(store, caller, username)
    return Account.of(await run_in_threadpool(store.disable, username, caller.actor()))


@router.put("/users/{username}/role", summary="Change the account's role and unit")
async def set_role(
    username: Username, body: RoleChange, caller: AuthorisedDep, store: AccessDep, pki: PkiDep
) -> Account:
    await _target(store, caller, username)
    await _check_unit_in_reach(pki, caller, body.unit_id)
    user = await run_in_threadpool(
        store.set_role, username, body.role, body.unit_id, caller.actor()
    )
    return Account.of(user)


@router.post("/users/{username}/totp", summary="A new TOTP secret, given once")
async def reset_totp(
    username: Username, response: Response, caller: AuthorisedDep, store: AccessDep
) -> SecondFactor:
    await _target(store, caller, username)
    secret = await run_in_threadpool(store.reset_totp, username, caller.actor())
    response.headers.update(_NO_STORE)
    return SecondFactor.of(username, secret)


@router.put(
    "/users/{username}/password",
    summary="Set the account's password (an administrator); its sessions end",
)
async def set_password(
    username: Username, body: NewPassword, caller: AuthorisedDep, store: AccessDep
) -> Account:
    await _target(store, caller, username)
    user = await run_in_threadpool(
        store.set_password, username, body.password.get_secret_value(), caller.actor()
    )
    return Account.of(user)


@router.put(
    "/auth/password",
    status_code=204,
    summary="Change your own password; your other sessions end",
)
async def change_own_password(
    body: PasswordChange, request: Request, caller: AuthorisedDep, store: AccessDep
) -> Response:
    kind, _, username = caller.id.partition(":")
    if kind != "user":
        raise ForbiddenError("only a person who signed in has a password to change")
    limit(request, "sign_in", caller.id)
    await run_in_threadpool(
        store.check_password, username, body.current_password.get_secret_value()
    )
    await run_in_threadpool(
        lambda: store.set_password(
            username,
            body.new_password.get_secret_value(),
            caller.actor(),
            keep_session=request.cookies.get(SESSION_COOKIE),
        )
    )
    return Response(status_code=204)


# -- service clients -----------------------------------------------------------------------


def _check_scopes_held(caller: Principal, scopes: frozenset[Scope]) -> None:
    """A service never hands out a secret for more than it holds itself."""
    if caller.kind == "client" and not scopes <= caller.scopes:
        raise ForbiddenError("a client may only give out the scopes it holds itself")


@router.get("/clients", summary="Service clients in the caller's reach")
async def list_clients(caller: AuthorisedDep, store: AccessDep, pki: PkiDep) -> list[ServiceClient]:
    clients = await run_in_threadpool(store.clients)
    seen = visible_units(caller, await run_in_threadpool(pki.authority.units))
    return [ServiceClient.of(c) for c in clients if seen is None or c.unit_id in seen]


@router.post(
    "/clients", status_code=201, summary="Register a service client; its secret is given once"
)
async def add_client(
    body: NewClient, response: Response, caller: AuthorisedDep, store: AccessDep
) -> CreatedClient:
    scopes = frozenset(body.scopes)
    _check_scopes_held(caller, scopes)
    client, secret = await run_in_threadpool(
        lambda: store.add_client(
            name=body.name, scopes=scopes, unit_id=body.unit_id, actor=caller.actor()
        )
    )
    response.headers.update(_NO_STORE)
    return CreatedClient(client=ServiceClient.of(client), client_secret=secret)


@router.post(
    "/clients/{client_id}/rotate",
    summary="A new secret, given once; the current one works for the grace period",
)
async def rotate_client(
    client_id: ClientId,
    response: Response,
    caller: AuthorisedDep,
    store: AccessDep,
    body: Annotated[Rotation | None, Body()] = None,
) -> RotatedSecret:
    grace = timedelta(hours=(body or Rotation()).grace_hours)
    client = await run_in_threadpool(store.client, client_id)
    if client is not None:
        _check_scopes_held(caller, client.scopes)
    secret = await run_in_threadpool(
        lambda: store.rotate_client(client_id, caller.actor(), grace=grace)
    )
    response.headers.update(_NO_STORE)
    return RotatedSecret(
        client_id=client_id, client_secret=secret, previous_valid_until=datetime.now(UTC) + grace
    )


@router.post("/clients/{client_id}/revoke", summary="End the client and its tokens now")
async def revoke_client(
    client_id: ClientId, caller: AuthorisedDep, store: AccessDep
) -> ServiceClient:
    return ServiceClient.of(await run_in_threadpool(store.revoke_client, client_id, caller.actor()))
