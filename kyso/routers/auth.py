"""Signing in and access tokens.

- ``POST /oauth/token``: the OAuth2 client-credentials grant (RFC 6749 §4.4) for service
  clients; the client authenticates with HTTP Basic (or ``client_id``/``client_secret``
  form fields) and gets a short-lived bearer token (JWT, ES256, key on the HSM).
- ``POST /api/v1/auth/login``: a person signs in with username, password and TOTP code and
  gets a session cookie (``HttpOnly``, ``SameSite=Strict``) and a CSRF token, which every
  state-changing request made with the cookie repeats in ``X-CSRF-Token``.
- ``POST /api/v1/auth/logout`` ends the session; ``GET /api/v1/auth/me`` says who you are.

:func:`current_principal` is the dependency every protected route uses: a bearer token
or a session cookie, checked against the database on every request (a revoked client, a
locked or disabled account or an ended session is refused at once).
"""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from kyso.access import factors
from kyso.access.model import (
    InvalidClientError,
    InvalidScopeError,
    InvalidTokenError,
    Principal,
    format_scopes,
    parse_scopes,
)
from kyso.access.store import AccessStore, Session
from kyso.access.tokens import TokenIssuer
from kyso.errors import KysoError
from kyso.routers.health import RuntimeDep

router = APIRouter(tags=["access"])

SESSION_COOKIE = "kyso_session"
CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class AccessUnavailableError(KysoError):
    code = "kyso.unavailable"


def get_access(runtime: RuntimeDep) -> AccessStore:
    if runtime.access is None:
        raise AccessUnavailableError("access control is not available in this process")
    return runtime.access


def get_tokens(runtime: RuntimeDep) -> TokenIssuer:
    if runtime.access_tokens is None:
        raise AccessUnavailableError(
            "access tokens are not available: the token-signing key is missing (kyso init)"
        )
    return runtime.access_tokens


def limit(request: Request, action: str, *keys: str) -> None:
    """Take a token from the rate limits of ``action`` for ``keys`` and the caller's address
    (:class:`~kyso.access.limits.RateLimitedError`, 429, when one is spent)."""
    limits = request.app.state.runtime.limits
    if limits is not None:
        address = request.client.host if request.client else "unknown"
        limits.check(action, *(k[:128] for k in keys), f"address:{address}")


AccessDep = Annotated[AccessStore, Depends(get_access)]
TokensDep = Annotated[TokenIssuer, Depends(get_tokens)]


async def current_principal(request: Request, runtime: RuntimeDep) -> Principal:
    """Who the request acts as; :class:`InvalidTokenError` (401) when it proves nothing."""
    store = get_access(runtime)
    authorization = request.headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials:
        claims = get_tokens(runtime).check(credentials.strip())
        kind, _, name = claims.subject.partition(":")
        if kind != "client":
            raise InvalidTokenError("the access token is not valid")
        client = await run_in_threadpool(store.client, name)
        if client is None:
            raise InvalidTokenError("the access token is not valid")
        # Never more than the client holds now, whatever the token was issued with.
        return client.principal(parse_scopes(claims.scope) & client.scopes)
    secret = request.cookies.get(SESSION_COOKIE)
    if secret:
        session = await run_in_threadpool(store.session, secret, kind="web")
        if session is None:
            raise InvalidTokenError("the session has ended; sign in again")
        if request.method not in _SAFE_METHODS:
            _check_csrf(request, session)
        return session.principal()
    raise InvalidTokenError("sign in, or send an access token")


def _check_csrf(request: Request, session: Session) -> None:
    if not factors.digests_match(session.csrf_hash, request.headers.get(CSRF_HEADER, "")):
        raise CsrfError(f"a request made with the session cookie must repeat {CSRF_HEADER}")


class CsrfError(KysoError):
    code = "access.csrf"


PrincipalDep = Annotated[Principal, Depends(current_principal)]


# -- OAuth2 client credentials -----------------------------------------------------------


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    headers = dict(_NO_STORE)
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="kyso"'
    return JSONResponse(
        {"error": error, "error_description": description}, status_code=status, headers=headers
    )


def _basic(request: Request) -> tuple[str, str] | None:
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic" or not encoded or len(encoded) > 1024:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    return (client_id, secret) if sep else None


class TokenAnswer(BaseModel):
    access_token: str
    token_type: Literal["Bearer"]
    expires_in: int
    scope: str


class OAuthError(BaseModel):
    """RFC 6749 §5.2."""

    error: str
    error_description: str


@router.post(
    "/oauth/token",
    summary="OAuth2 client-credentials grant: a short-lived access token",
    response_model=TokenAnswer,
    responses={
        400: {
            "model": OAuthError,
            "description": "invalid_request, unsupported_grant_type or invalid_scope",
        },
        401: {"model": OAuthError, "description": "invalid_client"},
    },
)
async def token(
    request: Request,
    store: AccessDep,
    tokens: TokensDep,
    grant_type: Annotated[str, Form(max_length=64)],
    scope: Annotated[str | None, Form(max_length=256)] = None,
    client_id: Annotated[str | None, Form(max_length=64)] = None,
    client_secret: Annotated[str | None, Form(max_length=256)] = None,
) -> Response:
    if grant_type != "client_credentials":
        return _oauth_error(400, "unsupported_grant_type", "only client_credentials is supported")
    basic = _basic(request)
    if basic is not None and (client_id or client_secret):
        return _oauth_error(400, "invalid_request", "authenticate one way, not two")
    pair = basic or ((client_id, client_secret) if client_id and client_secret else None)
    if pair is None:
        return _oauth_error(401, "invalid_client", "client authentication is required")
    limit(request, "sign_in", f"client:{pair[0]}")
    try:
        client = await run_in_threadpool(store.authenticate_client, *pair)
    except InvalidClientError:
        return _oauth_error(401, "invalid_client", "unknown client, wrong secret, or revoked")
    try:
        asked = parse_scopes(scope) if scope else client.scopes
    except InvalidScopeError as ex:
        return _oauth_error(400, "invalid_scope", ex.message)
    if not asked or not asked <= client.scopes:
        return _oauth_error(400, "invalid_scope", "a scope the client does not hold was asked")
    granted = format_scopes(asked)
    access_token, lifetime = await run_in_threadpool(
        tokens.issue,
        subject=f"client:{client.client_id}",
        scope=granted,
        unit_id=client.unit_id,
        client_id=client.client_id,
    )
    await run_in_threadpool(store.record_grant, client, asked)
    return JSONResponse(
        {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": lifetime,
            "scope": granted,
        },
        headers=_NO_STORE,
    )


# -- people --------------------------------------------------------------------------------


class Login(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(min_length=1, max_length=64)
    password: SecretStr = Field(min_length=1, max_length=factors.MAX_PASSWORD)
    otp: str = Field(min_length=6, max_length=6, description="The 6-digit code of the TOTP app")


class SignedIn(BaseModel):
    csrf_token: str = Field(description=f"Repeat it in {CSRF_HEADER} on every POST/PUT/DELETE")
    expires_at: datetime
    username: str
    role: str
    unit_id: int | None


class Me(BaseModel):
    id: str
    kind: str
    role: str | None
    unit_id: int | None
    scopes: list[str]
    second_factor: bool


@router.post("/api/v1/auth/login", summary="Sign in (password and TOTP code)")
async def login(body: Login, request: Request, response: Response, store: AccessDep) -> SignedIn:
    limit(request, "sign_in", f"user:{body.username}")
    user = await run_in_threadpool(
        store.authenticate,
        body.username,
        body.password.get_secret_value(),
        body.otp,
        kind="web",
    )
    opened = await run_in_threadpool(store.open_session, user, kind="web")
    runtime = request.app.state.runtime
    response.set_cookie(
        SESSION_COOKIE,
        opened.secret,
        max_age=int((opened.expires_at - datetime.now(opened.expires_at.tzinfo)).total_seconds()),
        httponly=True,
        samesite="strict",
        secure=runtime.settings.base_url.startswith("https://"),
        path="/",
    )
    response.headers.update(_NO_STORE)
    return SignedIn(
        csrf_token=opened.csrf,
        expires_at=opened.expires_at,
        username=user.username,
        role=user.role.value,
        unit_id=user.unit_id,
    )


@router.post("/api/v1/auth/logout", status_code=204, summary="Sign out (end the session)")
async def logout(request: Request, principal: PrincipalDep, store: AccessDep) -> Response:
    secret = request.cookies.get(SESSION_COOKIE, "")
    await run_in_threadpool(store.end_session, secret, principal.actor())
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/api/v1/auth/me", summary="Who the request acts as")
async def me(principal: PrincipalDep) -> Me:
    return Me(
        id=principal.id,
        kind=principal.kind,
        role=principal.role.value if principal.role else None,
        unit_id=principal.unit_id,
        scopes=sorted(scope.value for scope in principal.scopes),
        second_factor=principal.second_factor,
    )
