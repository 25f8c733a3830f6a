"""The Cloud Signature Consortium API: v1 (1.0.4.0) under ``/csc/v1/`` and v2 (2.0.0.2)
under ``/csc/v2/``, one implementation (:mod:`kyso.csc`) behind both.

Remote signing clients (pyHanko's ``CSCSigner``, commercial tools) sign through Kyso with
the keys on its HSM: ``auth/login`` (HTTP Basic) gives a person a token limited to these
endpoints; ``credentials/list`` and ``credentials/info`` describe the credentials they
hold; ``credentials/authorize`` checks the PIN (and the one-time code under ``pin+otp``)
and returns a SAD bound to the hashes (SCAL 2) and their number (``multisign``);
``signatures/signHash`` uses the SAD up and signs exactly those hashes on the HSM;
``signatures/timestamp`` asks Kyso's TSA; v2's ``signatures/signDoc`` signs whole PDFs
with Kyso's own PAdES signer. Service clients call with their OAuth2 token and reach only
the seals bound to them.

Errors follow CSC: ``{"error": "invalid_request", "error_description": "..."}``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from kyso.access.activation import MULTISIGN, SAD_LIFETIME, IssuedSad
from kyso.access.model import AccessError, ForbiddenError, InvalidTokenError, Principal
from kyso.access.store import CSC_SESSION
from kyso.csc import LEVELS, CscError, CscService, Description
from kyso.routers.auth import get_access, get_tokens, limit
from kyso.routers.health import RuntimeDep
from pki.errors import PkiError

v1 = APIRouter(prefix="/csc/v1", tags=["csc v1"])
v2 = APIRouter(prefix="/csc/v2", tags=["csc v2"])

_NO_STORE = {"Cache-Control": "no-store"}
_METHODS = [
    "auth/login",
    "auth/revoke",
    "credentials/list",
    "credentials/info",
    "credentials/authorize",
    "signatures/signHash",
    "signatures/timestamp",
]
T = TypeVar("T")


def _error(status: int, error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


async def _answer(work: Callable[[], T], respond: Callable[[T], dict[str, Any]]) -> Response:
    """Run ``work`` in a thread and answer with ``respond`` of its result, or the CSC error."""
    try:
        result = await run_in_threadpool(work)
    except ForbiddenError as ex:
        return _error(403, "access_denied", ex.message)
    except (AccessError, PkiError, CscError) as ex:
        return _error(400, "invalid_request", ex.message)
    return JSONResponse(respond(result), headers=_NO_STORE)


async def csc_principal(request: Request, runtime: RuntimeDep) -> Principal:
    """A person's CSC token (from ``auth/login``) or a service client's OAuth2 token."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidTokenError("send the token from auth/login, or an OAuth2 access token")
    token = token.strip()
    store = get_access(runtime)
    if token.count(".") == 2:
        claims = get_tokens(runtime).check(token)
        client = await run_in_threadpool(store.client, claims.subject.removeprefix("client:"))
        if client is None or not claims.subject.startswith("client:"):
            raise InvalidTokenError("the access token is not valid")
        return client.principal()
    session = await run_in_threadpool(store.session, token, kind="csc")
    if session is None:
        raise InvalidTokenError("the token is not valid; log in again")
    return session.principal()


def get_csc(runtime: RuntimeDep) -> CscService:
    if runtime.csc is None:
        raise CscError("signing is not available in this process")
    return runtime.csc


PrincipalDep = Annotated[Principal, Depends(csc_principal)]
CscDep = Annotated[CscService, Depends(get_csc)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Credential(_Body):
    credentialID: str = Field(min_length=1, max_length=32)


def _sad(sad: IssuedSad) -> dict[str, Any]:
    return {"SAD": sad.value, "expiresIn": int(SAD_LIFETIME.total_seconds())}


def _signatures(signatures: list[bytes]) -> dict[str, Any]:
    return {"signatures": [base64.b64encode(s).decode() for s in signatures]}


def _info(request: Request, specs: str) -> dict[str, Any]:
    return {
        "specs": specs,
        "name": "Kyso",
        "logo": f"{request.base_url}favicon.ico",
        "region": "VN",
        "lang": "vi-VN",
        "description": "Dịch vụ ký số Kyso / Kyso signing service",
        "authType": ["basic", "oauth2client"],
        "oauth2": f"{request.base_url}oauth/token",
        "methods": _METHODS + (["signatures/signDoc"] if specs.startswith("2") else []),
    }


async def _login(request: Request, runtime: RuntimeDep) -> Response:
    store = get_access(runtime)
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        decoded = ""
    username, sep, password = decoded.partition(":")
    if scheme.lower() != "basic" or not sep:
        return _error(401, "authentication_error", "HTTP Basic username:password is required")
    limit(request, "sign_in", f"user:{username}")
    try:
        user = await run_in_threadpool(store.authenticate, username, password, None, kind="csc")
    except AccessError as ex:
        return _error(401, "authentication_error", ex.message)
    opened = await run_in_threadpool(store.open_session, user, kind="csc")
    return JSONResponse(
        {"access_token": opened.secret, "expires_in": int(CSC_SESSION.total_seconds())},
        headers=_NO_STORE,
    )


async def _revoke(request: Request, principal: Principal, runtime: RuntimeDep) -> Response:
    token = request.headers.get("authorization", "").partition(" ")[2].strip()
    await run_in_threadpool(get_access(runtime).end_session, token, principal.actor())
    return Response(status_code=204)


# -- v1 ------------------------------------------------------------------------------------


class InfoV1(_Credential):
    certificates: str = Field("single", pattern="^(none|single|chain)$")
    certInfo: bool = False
    authInfo: bool = False


class AuthorizeV1(_Credential):
    numSignatures: int = Field(ge=1, le=MULTISIGN)
    hash: list[str] = Field(default_factory=list, max_length=MULTISIGN)
    PIN: SecretStr | None = Field(None, max_length=64)
    OTP: SecretStr | None = Field(None, max_length=16)
    description: str | None = Field(None, max_length=500)


class SignHashV1(_Credential):
    SAD: SecretStr = Field(min_length=1, max_length=256)
    hash: list[str] = Field(min_length=1, max_length=MULTISIGN)
    hashAlgo: str | None = Field(None, max_length=64)
    signAlgo: str = Field(max_length=64)
    signAlgoParams: str | None = Field(None, max_length=1024)


class TimestampV1(_Body):
    hash: str = Field(max_length=128)
    hashAlgo: str = Field(max_length=64)
    nonce: str | None = Field(None, max_length=64)


def _key_and_cert(found: Description, certificates: str, cert_info: bool) -> dict[str, Any]:
    """The ``key`` and ``cert`` objects, the same in v1 and v2."""
    key: dict[str, Any] = {"status": "enabled", "algo": found.algorithms, "len": found.key_bits}
    if found.curve:
        key["curve"] = found.curve
    cert: dict[str, Any] = {"status": "valid"}
    if certificates != "none":
        cert["certificates"] = [base64.b64encode(c).decode() for c in found.certificates]
    if cert_info:
        cert |= found.cert_info
    return {"key": key, "cert": cert}


def _describe_v1(body: InfoV1, found: Description) -> dict[str, Any]:
    return {
        **_key_and_cert(found, body.certificates, body.certInfo),
        "authMode": "explicit",
        "PIN": {"presence": str(found.pin).lower(), "format": "A", "label": "PIN"},
        "OTP": {
            "presence": str(found.otp).lower(),
            "type": "offline",
            "format": "N",
            "label": "TOTP",
            "description": "Mã một lần từ ứng dụng xác thực / code from the authenticator app",
        },
        "multisign": MULTISIGN,
        "SCAL": "2",
        "lang": "vi-VN",
    }


@v1.post("/info", summary="CSC v1: what this service offers")
async def info_v1(request: Request) -> dict[str, Any]:
    return _info(request, "1.0.4.0")


@v1.post("/auth/login", summary="CSC v1: log in with HTTP Basic (username:password)")
async def login_v1(request: Request, runtime: RuntimeDep) -> Response:
    return await _login(request, runtime)


@v1.post("/auth/revoke", status_code=204, summary="CSC v1: end the token from auth/login")
async def revoke_v1(request: Request, principal: PrincipalDep, runtime: RuntimeDep) -> Response:
    return await _revoke(request, principal, runtime)


@v1.post("/credentials/list", summary="CSC v1: the credentials you hold")
async def list_v1(principal: PrincipalDep, csc: CscDep) -> Response:
    return await _answer(
        lambda: csc.held(principal), lambda held: {"credentialIDs": [str(c.id) for c in held]}
    )


@v1.post("/credentials/info", summary="CSC v1: a credential's key, certificates and activation")
async def info_credential_v1(body: InfoV1, principal: PrincipalDep, csc: CscDep) -> Response:
    return await _answer(
        lambda: csc.describe(principal, body.credentialID, chain=body.certificates == "chain"),
        lambda found: _describe_v1(body, found),
    )


@v1.post("/credentials/authorize", summary="CSC v1: PIN (and OTP) for a SAD bound to the hashes")
async def authorize_v1(
    body: AuthorizeV1, request: Request, principal: PrincipalDep, csc: CscDep
) -> Response:
    limit(request, "authorize", principal.id)
    return await _answer(
        lambda: csc.authorize(
            principal,
            body.credentialID,
            body.hash,
            count=body.numSignatures,
            pin=body.PIN.get_secret_value() if body.PIN else None,
            otp=body.OTP.get_secret_value() if body.OTP else None,
        ),
        _sad,
    )


@v1.post("/signatures/signHash", summary="CSC v1: sign the hashes the SAD was bound to")
async def sign_hash_v1(
    body: SignHashV1, request: Request, principal: PrincipalDep, csc: CscDep
) -> Response:
    limit(request, "sign", principal.id)
    return await _answer(
        lambda: csc.sign_hashes(
            principal,
            body.credentialID,
            body.SAD.get_secret_value(),
            body.hash,
            sign_algo=body.signAlgo,
            hash_algo=body.hashAlgo,
        ),
        _signatures,
    )


@v1.post("/signatures/timestamp", summary="CSC v1: an RFC 3161 timestamp from Kyso's TSA")
async def timestamp_v1(body: TimestampV1, principal: PrincipalDep, csc: CscDep) -> Response:
    return await _answer(
        lambda: csc.timestamp(body.hash, body.hashAlgo, body.nonce),
        lambda token: {"timestamp": base64.b64encode(token).decode()},
    )


# -- v2 ------------------------------------------------------------------------------------


class AuthData(_Body):
    id: str = Field(max_length=32)
    value: SecretStr = Field(max_length=64)


class ListV2(_Body):
    credentialInfo: bool = False
    certificates: str = Field("single", pattern="^(none|single|chain)$")
    certInfo: bool = False
    authInfo: bool = False


class InfoV2(_Credential):
    certificates: str = Field("single", pattern="^(none|single|chain)$")
    certInfo: bool = False
    authInfo: bool = False


class AuthorizeV2(_Credential):
    numSignatures: int = Field(ge=1, le=MULTISIGN)
    hashes: list[str] = Field(default_factory=list, max_length=MULTISIGN)
    hashAlgorithmOID: str | None = Field(None, max_length=64)
    authData: list[AuthData] = Field(default_factory=list, max_length=4)
    description: str | None = Field(None, max_length=500)


class SignHashV2(_Credential):
    SAD: SecretStr = Field(min_length=1, max_length=256)
    hashes: list[str] = Field(min_length=1, max_length=MULTISIGN)
    hashAlgorithmOID: str | None = Field(None, max_length=64)
    signAlgo: str = Field(max_length=64)
    signAlgoParams: str | None = Field(None, max_length=1024)
    operationMode: str = Field("S", pattern="^S$")


class Document(_Body):
    document: str = Field(max_length=24 * 1024 * 1024, description="base64 PDF")
    signature_format: str = Field("P", pattern="^P$", description="P: PAdES")
    conformance_level: str = Field("AdES-B-B", pattern="^AdES-B-(B|T|LT|LTA)$")
    signAlgo: str | None = Field(None, max_length=64)


class SignDocV2(_Credential):
    SAD: SecretStr = Field(min_length=1, max_length=256)
    documents: list[Document] = Field(min_length=1, max_length=10)
    operationMode: str = Field("S", pattern="^S$")


class TimestampV2(_Body):
    hash: str = Field(max_length=128)
    hashAlgorithmOID: str = Field(max_length=64)
    nonce: str | None = Field(None, max_length=64)


def _describe_v2(
    found: Description, *, certificates: str, cert_info: bool, auth_info: bool
) -> dict[str, Any]:
    objects = []
    if found.pin:
        objects.append({"type": "Password", "id": "PIN", "format": "A", "label": "PIN"})
    if found.otp:
        objects.append(
            {"type": "Password", "id": "OTP", "format": "N", "label": "TOTP", "generator": "totp"}
        )
    answer: dict[str, Any] = {
        **_key_and_cert(found, certificates, cert_info),
        "multisign": MULTISIGN,
        "SCAL": "2",
        "lang": "vi-VN",
    }
    answer["auth"] = {"mode": "explicit"}
    if auth_info:
        answer["auth"] |= {
            "expression": " AND ".join(o["id"] for o in objects) or "",
            "objects": objects,
        }
    return answer


def _auth_value(items: list[AuthData], name: str) -> str | None:
    for item in items:
        if item.id == name:
            return item.value.get_secret_value()
    return None


@v2.post("/info", summary="CSC v2: what this service offers")
async def info_v2(request: Request) -> dict[str, Any]:
    return _info(request, "2.0.0.2")


@v2.post("/auth/login", summary="CSC v2: log in with HTTP Basic (username:password)")
async def login_v2(request: Request, runtime: RuntimeDep) -> Response:
    return await _login(request, runtime)


@v2.post("/auth/revoke", status_code=204, summary="CSC v2: end the token from auth/login")
async def revoke_v2(request: Request, principal: PrincipalDep, runtime: RuntimeDep) -> Response:
    return await _revoke(request, principal, runtime)


@v2.post("/credentials/list", summary="CSC v2: the credentials you hold")
async def list_v2(body: ListV2, principal: PrincipalDep, csc: CscDep) -> Response:
    def work() -> dict[str, Any]:
        held = csc.held(principal)
        answer: dict[str, Any] = {"credentialIDs": [str(c.id) for c in held]}
        if body.credentialInfo:
            answer["credentialInfos"] = [
                {"credentialID": str(c.id)}
                | _describe_v2(
                    csc.describe(principal, str(c.id), chain=body.certificates == "chain"),
                    certificates=body.certificates,
                    cert_info=body.certInfo,
                    auth_info=body.authInfo,
                )
                for c in held
            ]
        return answer

    return await _answer(work, lambda answer: answer)


@v2.post("/credentials/info", summary="CSC v2: a credential's key, certificates and activation")
async def info_credential_v2(body: InfoV2, principal: PrincipalDep, csc: CscDep) -> Response:
    return await _answer(
        lambda: csc.describe(principal, body.credentialID, chain=body.certificates == "chain"),
        lambda found: _describe_v2(
            found, certificates=body.certificates, cert_info=body.certInfo, auth_info=body.authInfo
        ),
    )


@v2.post(
    "/credentials/authorize", summary="CSC v2: authData (PIN, OTP) for a SAD bound to the hashes"
)
async def authorize_v2(
    body: AuthorizeV2, request: Request, principal: PrincipalDep, csc: CscDep
) -> Response:
    limit(request, "authorize", principal.id)
    return await _answer(
        lambda: csc.authorize(
            principal,
            body.credentialID,
            body.hashes,
            count=body.numSignatures,
            pin=_auth_value(body.authData, "PIN"),
            otp=_auth_value(body.authData, "OTP"),
        ),
        _sad,
    )


@v2.post("/signatures/signHash", summary="CSC v2: sign the hashes the SAD was bound to")
async def sign_hash_v2(
    body: SignHashV2, request: Request, principal: PrincipalDep, csc: CscDep
) -> Response:
    limit(request, "sign", principal.id)
    return await _answer(
        lambda: csc.sign_hashes(
            principal,
            body.credentialID,
            body.SAD.get_secret_value(),
            body.hashes,
            sign_algo=body.signAlgo,
            hash_algo=body.hashAlgorithmOID,
        ),
        _signatures,
    )


@v2.post(
    "/signatures/signDoc",
    summary="CSC v2: sign PDFs as PAdES with Kyso's signer (SAD bound to their SHA-256)",
)
async def sign_doc_v2(
    body: SignDocV2, request: Request, principal: PrincipalDep, csc: CscDep
) -> Response:
    limit(request, "sign", principal.id)
    levels = {LEVELS[d.conformance_level] for d in body.documents}
    if len(levels) != 1:
        return _error(400, "invalid_request", "one conformance_level for all documents")
    try:
        pdfs = [base64.b64decode(d.document, validate=True) for d in body.documents]
    except (binascii.Error, ValueError):
        return _error(400, "invalid_request", "every document is base64")
    return await _answer(
        lambda: csc.sign_documents(
            principal, body.credentialID, body.SAD.get_secret_value(), pdfs, level=levels.pop()
        ),
        lambda signed: {"DocumentWithSignature": [base64.b64encode(p).decode() for p in signed]},
    )


@v2.post("/signatures/timestamp", summary="CSC v2: an RFC 3161 timestamp from Kyso's TSA")
async def timestamp_v2(body: TimestampV2, principal: PrincipalDep, csc: CscDep) -> Response:
    return await _answer(
        lambda: csc.timestamp(body.hash, body.hashAlgorithmOID, body.nonce),
        lambda token: {"timestamp": base64.b64encode(token).decode()},
    )
