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

Errors follow CSC: ``{"error": "invalid_request", "error_description": "..."}`` — also for
a malformed body (422), a missing or invalid token (401) and a rate limit (429), which
:class:`CscRoute` answers in that form instead of Kyso's own. Only what is answered before
or after the CSC code runs keeps Kyso's ``{"error": {"code", "message"}}``: a body beyond the
limit (413, :mod:`kyso.app`), a part of Kyso that is not available (503), the HSM (502) and,
for ``signDoc``, the PAdES signer's own refusals (409, 422). Every such answer is declared in
the OpenAPI schema with its model (``tests/kyso/test_csc_schema.py`` holds them to it).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from starlette.exceptions import HTTPException

from kyso.access.activation import MULTISIGN, SAD_LIFETIME, IssuedSad
from kyso.access.limits import RateLimitedError
from kyso.access.model import AccessError, ForbiddenError, InvalidTokenError, Principal
from kyso.access.store import CSC_SESSION
from kyso.csc import LEVELS, CscError, CscService, Description
from kyso.openapi import ErrorBody
from kyso.routers.auth import get_access, get_tokens, limit
from kyso.routers.health import RuntimeDep
from pki.errors import PkiError

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
_MAX_PROBLEMS = 5
"""Validation problems named in one error description: enough to fix a request, bounded."""
T = TypeVar("T")


# -- errors --------------------------------------------------------------------------------


class CscErrorBody(BaseModel):
    """A CSC error answer, the same in v1 and v2."""

    error: str = Field(
        description="invalid_request, authentication_error, invalid_token, access_denied "
        "or rate_limited"
    )
    error_description: str


def _error(
    status: int, error: str, description: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": error, "error_description": description}, status_code=status, headers=headers
    )


def _problems(ex: RequestValidationError) -> str:
    """What is wrong with the body: field and message, never the value (it may be a PIN)."""
    problems = [
        f"{'.'.join(str(part) for part in error['loc'][1:]) or 'body'}: {error['msg']}"
        for error in ex.errors()[:_MAX_PROBLEMS]
    ]
    return "; ".join(problems)[:1000]


_BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="kyso"'}
_BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="kyso", charset="UTF-8"'}


class CscRoute(APIRoute):
    """Answers what FastAPI and the shared dependencies refuse before a CSC route's code runs
    (a body it cannot parse or that does not match its model, a missing or invalid token, a
    rate limit) in the CSC error form, which CSC clients read, instead of Kyso's; anything
    else goes on to the application's handlers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as ex:
                return _error(422, "invalid_request", _problems(ex))
            except HTTPException as ex:  # FastAPI's own: a body it cannot parse (400)
                return _error(ex.status_code, "invalid_request", str(ex.detail)[:1000])
            except InvalidTokenError as ex:
                return _error(401, "invalid_token", ex.message, _BEARER_CHALLENGE)
            except RateLimitedError as ex:
                return _error(429, "rate_limited", ex.message, {"Retry-After": str(ex.retry_after)})

        return answer


def _header(description: str) -> dict[str, Any]:
    return {"description": description, "required": True, "schema": {"type": "string"}}


_KYSO_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {
        "model": ErrorBody,
        "description": "kyso.body_too_large: the body is beyond the limit (1 MiB; signDoc "
        "64 MiB), refused before it is read",
    },
    503: {
        "model": ErrorBody,
        "description": "A part of Kyso this needs (access control, tokens, signing) is not "
        "available in this process: try again later",
    },
}
_INFO_RESPONSES: dict[int | str, dict[str, Any]] = {413: _KYSO_ERRORS[413]}
_LOGIN_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_KYSO_ERRORS,
    401: {
        "model": CscErrorBody,
        "description": "authentication_error: no HTTP Basic credentials, or they are wrong",
        "headers": {"WWW-Authenticate": _header("Basic")},
    },
    429: {
        "model": CscErrorBody,
        "description": "rate_limited: too many sign-ins for this account or address",
        "headers": {"Retry-After": _header("Seconds to wait")},
    },
}
_BEARER_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_KYSO_ERRORS,
    401: {
        "model": CscErrorBody,
        "description": "invalid_token: no bearer token, or not one from auth/login or "
        "/oauth/token, or expired",
        "headers": {"WWW-Authenticate": _header("Bearer")},
    },
}
_REQUEST_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_BEARER_RESPONSES,
    400: {
        "model": CscErrorBody,
        "description": "invalid_request: the request cannot be answered as asked (no such "
        "credential for the caller, wrong algorithm, SAD refused), or its body cannot be "
        "parsed",
    },
    403: {"model": CscErrorBody, "description": "access_denied: not the caller's to use"},
    422: {
        "model": CscErrorBody,
        "description": "invalid_request: the body does not match the schema",
    },
}
_HSM_ERROR: dict[int | str, dict[str, Any]] = {
    502: {"model": ErrorBody, "description": "The HSM failed: try again later"}
}
_AUTHORIZE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_REQUEST_RESPONSES,
    429: {
        "model": CscErrorBody,
        "description": "rate_limited: too many requests of this kind by the caller or address",
        "headers": {"Retry-After": _header("Seconds to wait")},
    },
}
_SIGNING_RESPONSES: dict[int | str, dict[str, Any]] = {**_AUTHORIZE_RESPONSES, **_HSM_ERROR}
_TIMESTAMP_RESPONSES: dict[int | str, dict[str, Any]] = {**_REQUEST_RESPONSES, **_HSM_ERROR}
_SIGN_DOC_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_SIGNING_RESPONSES,
    409: {
        "model": ErrorBody,
        "description": "The PAdES signer cannot sign with this credential or at this level",
    },
    422: {
        "model": CscErrorBody | ErrorBody,
        "description": "invalid_request: the body does not match the schema; or the "
        "signer's code (signer.not_pdf, signer.damaged_pdf, ...): a document it will not sign",
    },
}

v1 = APIRouter(prefix="/csc/v1", tags=["csc v1"], route_class=CscRoute)
v2 = APIRouter(prefix="/csc/v2", tags=["csc v2"], route_class=CscRoute)


async def _answer(work: Callable[[], T], respond: Callable[[T], BaseModel]) -> Response:
    """Run ``work`` in a thread and answer with ``respond`` of its result (its fields that are
    set, as CSC leaves out what does not apply), or the CSC error."""
    try:
        result = await run_in_threadpool(work)
    except ForbiddenError as ex:
        return _error(403, "access_denied", ex.message)
    except (AccessError, PkiError, CscError) as ex:
        return _error(400, "invalid_request", ex.message)
    return JSONResponse(
        respond(result).model_dump(mode="json", exclude_none=True), headers=_NO_STORE
    )


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


# -- answers, both versions ----------------------------------------------------------------


class ServiceInfo(BaseModel):
    """``info``: what this service offers (CSC v1 §11.1, v2 §11.1)."""

    specs: str
    name: str
    logo: str
    region: str
    lang: str
    description: str
    authType: list[str]
    oauth2: str = Field(description="The OAuth2 token endpoint of service clients")
    methods: list[str]


class LoginAnswer(BaseModel):
    """``auth/login``: a token for the CSC endpoints only."""

    access_token: str
    expires_in: int = Field(description="Seconds")


class SadAnswer(BaseModel):
    """``credentials/authorize``: the SAD, bound to the hashes and their number."""

    SAD: str
    expiresIn: int = Field(description="Seconds")


class SignaturesAnswer(BaseModel):
    """``signatures/signHash``: base64 signature values, in the order of the hashes."""

    signatures: list[str]


class TimestampAnswer(BaseModel):
    """``signatures/timestamp``: a base64 DER RFC 3161 timestamp token."""

    timestamp: str


class KeyInfo(BaseModel):
    """A credential's ``key`` object."""

    status: str
    algo: list[str] = Field(description="Signature algorithm OIDs the key can be used with")
    len: int = Field(description="Key length in bits")
    curve: str | None = Field(default=None, description="The curve OID of an EC key")


class CertInfo(BaseModel):
    """A credential's ``cert`` object: certificates unless ``certificates`` is ``none``, the
    details with ``certInfo``."""

    status: str
    certificates: list[str] | None = Field(
        default=None, description="base64 DER, the signer's first"
    )
    issuerDN: str | None = None
    serialNumber: str | None = None
    subjectDN: str | None = None
    validFrom: str | None = Field(default=None, description="GeneralizedTime, YYYYMMDDHHMMSSZ")
    validTo: str | None = Field(default=None, description="GeneralizedTime, YYYYMMDDHHMMSSZ")


def _sad(sad: IssuedSad) -> SadAnswer:
    return SadAnswer(SAD=sad.value, expiresIn=int(SAD_LIFETIME.total_seconds()))


def _signatures(signatures: list[bytes]) -> SignaturesAnswer:
    return SignaturesAnswer(signatures=[base64.b64encode(s).decode() for s in signatures])


def _timestamp(token: bytes) -> TimestampAnswer:
    return TimestampAnswer(timestamp=base64.b64encode(token).decode())


def _info(request: Request, specs: str) -> ServiceInfo:
    return ServiceInfo(
        specs=specs,
        name="Kyso",
        logo=f"{request.base_url}favicon.ico",
        region="VN",
        lang="vi-VN",
        description="Dịch vụ ký số Kyso / Kyso signing service",
        authType=["basic", "oauth2client"],
        oauth2=f"{request.base_url}oauth/token",
        methods=_METHODS + (["signatures/signDoc"] if specs.startswith("2") else []),
    )


async def _login(request: Request, runtime: RuntimeDep) -> Response:
    store = get_access(runtime)
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        decoded = ""
    username, sep, password = decoded.partition(":")
    if scheme.lower() != "basic" or not sep:
        return _error(
            401,
            "authentication_error",
            "HTTP Basic username:password is required",
            _BASIC_CHALLENGE,
        )
    limit(request, "sign_in", f"user:{username}")
    try:
        user = await run_in_threadpool(store.authenticate, username, password, None, kind="csc")
    except AccessError as ex:
        return _error(401, "authentication_error", ex.message, _BASIC_CHALLENGE)
    opened = await run_in_threadpool(store.open_session, user, kind="csc")
    answer = LoginAnswer(access_token=opened.secret, expires_in=int(CSC_SESSION.total_seconds()))
    return JSONResponse(answer.model_dump(mode="json"), headers=_NO_STORE)


async def _revoke(request: Request, principal: Principal, runtime: RuntimeDep) -> Response:
    token = request.headers.get("authorization", "").partition(" ")[2].strip()
    await run_in_threadpool(get_access(runtime).end_session, token, principal.actor())
    return Response(status_code=204)


# -- v1 ------------------------------------------------------------------------------------
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


class PinInfoV1(BaseModel):
    """v1 ``PIN``: whether the credential asks for one."""

    presence: str = Field(description="true or false")
    format: str = Field(description="A: alphanumeric")
    label: str


class OtpInfoV1(BaseModel):
    """v1 ``OTP``: whether the credential asks for a one-time code (TOTP, from an app)."""

    presence: str = Field(description="true or false")
    type: str
    format: str = Field(description="N: numeric")
    label: str
    description: str


class CredentialInfoV1(BaseModel):
    """v1 ``credentials/info``."""

    key: KeyInfo
    cert: CertInfo
    authMode: str
    PIN: PinInfoV1
    OTP: OtpInfoV1
    multisign: int = Field(description="Most signatures one SAD allows")
    SCAL: str = Field(description="2: the SAD is bound to the hashes")
    lang: str


class CredentialListV1(BaseModel):
    """v1 ``credentials/list``."""

    credentialIDs: list[str]


def _key(found: Description) -> KeyInfo:
    return KeyInfo(status="enabled", algo=found.algorithms, len=found.key_bits, curve=found.curve)


def _cert(found: Description, certificates: str, cert_info: bool) -> CertInfo:
    listed = None
    if certificates != "none":
        listed = [base64.b64encode(c).decode() for c in found.certificates]
    details = found.cert_info if cert_info else {}
    return CertInfo(status="valid", certificates=listed, **details)


def _describe_v1(body: InfoV1, found: Description) -> CredentialInfoV1:
    return CredentialInfoV1(
        key=_key(found),
        cert=_cert(found, body.certificates, body.certInfo),
        authMode="explicit",
        PIN=PinInfoV1(presence=str(found.pin).lower(), format="A", label="PIN"),
        OTP=OtpInfoV1(
            presence=str(found.otp).lower(),
            type="offline",
            format="N",
            label="TOTP",
            description="Mã một lần từ ứng dụng xác thực / code from the authenticator app",
        ),
        multisign=MULTISIGN,
        SCAL="2",
        lang="vi-VN",
    )


@v1.post("/info", summary="CSC v1: what this service offers", responses=_INFO_RESPONSES)
async def info_v1(request: Request) -> ServiceInfo:
    return _info(request, "1.0.4.0")


@v1.post(
    "/auth/login",
    summary="CSC v1: log in with HTTP Basic (username:password)",
    response_model=LoginAnswer,
    responses=_LOGIN_RESPONSES,
)
async def login_v1(request: Request, runtime: RuntimeDep) -> Response:
    return await _login(request, runtime)


@v1.post(
    "/auth/revoke",
    status_code=204,
    summary="CSC v1: end the token from auth/login",
    response_class=Response,
    responses=_BEARER_RESPONSES,
)
async def revoke_v1(request: Request, principal: PrincipalDep, runtime: RuntimeDep) -> Response:
    return await _revoke(request, principal, runtime)


@v1.post(
    "/credentials/list",
    summary="CSC v1: the credentials you hold",
    response_model=CredentialListV1,
    responses=_REQUEST_RESPONSES,
)
async def list_v1(principal: PrincipalDep, csc: CscDep) -> Response:
    return await _answer(
        lambda: csc.held(principal),
        lambda held: CredentialListV1(credentialIDs=[str(c.id) for c in held]),
    )


@v1.post(
    "/credentials/info",
    summary="CSC v1: a credential's key, certificates and activation",
    response_model=CredentialInfoV1,
    responses=_REQUEST_RESPONSES,
)
async def info_credential_v1(body: InfoV1, principal: PrincipalDep, csc: CscDep) -> Response:
    return await _answer(
        lambda: csc.describe(principal, body.credentialID, chain=body.certificates == "chain"),
        lambda found: _describe_v1(body, found),
    )


@v1.post(
    "/credentials/authorize",
    summary="CSC v1: PIN (and OTP) for a SAD bound to the hashes",
    response_model=SadAnswer,
    responses=_AUTHORIZE_RESPONSES,
)
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


@v1.post(
    "/signatures/signHash",
    summary="CSC v1: sign the hashes the SAD was bound to",
    response_model=SignaturesAnswer,
    responses=_SIGNING_RESPONSES,
)
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


@v1.post(
    "/signatures/timestamp",
    summary="CSC v1: an RFC 3161 timestamp from Kyso's TSA",
    response_model=TimestampAnswer,
    responses=_TIMESTAMP_RESPONSES,
)
async def timestamp_v1(body: TimestampV1, principal: PrincipalDep, csc: CscDep) -> Response:
    return await _answer(
        lambda: csc.timestamp(body.hash, body.hashAlgo, body.nonce),
        _timestamp,
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


class AuthObject(BaseModel):
    """v2: one factor ``credentials/authorize`` asks for in ``authData``."""

    type: str
    id: str = Field(description="The authData id: PIN or OTP")
    format: str = Field(description="A: alphanumeric, N: numeric")
    label: str
    generator: str | None = Field(
        default=None, description="totp: the code of an authenticator app"
    )


class AuthInfoV2(BaseModel):
    """v2 ``auth``: explicit authorisation, with its factors under ``authInfo``."""

    mode: str
    expression: str | None = Field(default=None, description="e.g. PIN AND OTP")
    objects: list[AuthObject] | None = None


class CredentialInfoV2(BaseModel):
    """v2 ``credentials/info``."""

    key: KeyInfo
    cert: CertInfo
    multisign: int = Field(description="Most signatures one SAD allows")
    SCAL: str = Field(description="2: the SAD is bound to the hashes")
    lang: str
    auth: AuthInfoV2


class _Listed(BaseModel):
    credentialID: str


class ListedCredentialV2(CredentialInfoV2, _Listed):
    """v2 ``credentials/list`` with ``credentialInfo``: a credential's ID and description
    (``credentialID`` first: pydantic orders fields from the last base)."""


class CredentialListV2(BaseModel):
    """v2 ``credentials/list``."""

    credentialIDs: list[str]
    credentialInfos: list[ListedCredentialV2] | None = Field(
        default=None, description="With credentialInfo"
    )


class SignedDocuments(BaseModel):
    """v2 ``signatures/signDoc``: the signed PDFs, base64, in the order sent."""

    DocumentWithSignature: list[str]


def _auth_v2(found: Description, auth_info: bool) -> AuthInfoV2:
    if not auth_info:
        return AuthInfoV2(mode="explicit")
    objects = []
    if found.pin:
        objects.append(AuthObject(type="Password", id="PIN", format="A", label="PIN"))
    if found.otp:
        objects.append(
            AuthObject(type="Password", id="OTP", format="N", label="TOTP", generator="totp")
        )
    return AuthInfoV2(
        mode="explicit", expression=" AND ".join(o.id for o in objects), objects=objects
    )


def _describe_v2(
    found: Description, *, certificates: str, cert_info: bool, auth_info: bool
) -> dict[str, Any]:
    """The fields of :class:`CredentialInfoV2` (also those of a listed credential)."""
    return {
        "key": _key(found),
        "cert": _cert(found, certificates, cert_info),
        "multisign": MULTISIGN,
        "SCAL": "2",
        "lang": "vi-VN",
        "auth": _auth_v2(found, auth_info),
    }


def _auth_value(items: list[AuthData], name: str) -> str | None:
    for item in items:
        if item.id == name:
            return item.value.get_secret_value()
    return None


@v2.post("/info", summary="CSC v2: what this service offers", responses=_INFO_RESPONSES)
async def info_v2(request: Request) -> ServiceInfo:
    return _info(request, "2.0.0.2")


@v2.post(
    "/auth/login",
    summary="CSC v2: log in with HTTP Basic (username:password)",
    response_model=LoginAnswer,
    responses=_LOGIN_RESPONSES,
)
async def login_v2(request: Request, runtime: RuntimeDep) -> Response:
    return await _login(request, runtime)


@v2.post(
    "/auth/revoke",
    status_code=204,
    summary="CSC v2: end the token from auth/login",
    response_class=Response,
    responses=_BEARER_RESPONSES,
)
async def revoke_v2(request: Request, principal: PrincipalDep, runtime: RuntimeDep) -> Response:
    return await _revoke(request, principal, runtime)


@v2.post(
    "/credentials/list",
    summary="CSC v2: the credentials you hold",
    response_model=CredentialListV2,
    responses=_REQUEST_RESPONSES,
)
async def list_v2(body: ListV2, principal: PrincipalDep, csc: CscDep) -> Response:
    def work() -> CredentialListV2:
        held = csc.held(principal)
        answer = CredentialListV2(credentialIDs=[str(c.id) for c in held])
        if body.credentialInfo:
            answer.credentialInfos = [
                ListedCredentialV2(
                    credentialID=str(c.id),
                    **_describe_v2(
                        csc.describe(principal, str(c.id), chain=body.certificates == "chain"),
                        certificates=body.certificates,
                        cert_info=body.certInfo,
                        auth_info=body.authInfo,
                    ),
                )
                for c in held
            ]
        return answer

    return await _answer(work, lambda answer: answer)


@v2.post(
    "/credentials/info",
    summary="CSC v2: a credential's key, certificates and activation",
    response_model=CredentialInfoV2,
    responses=_REQUEST_RESPONSES,
)
async def info_credential_v2(body: InfoV2, principal: PrincipalDep, csc: CscDep) -> Response:
    return await _answer(
        lambda: csc.describe(principal, body.credentialID, chain=body.certificates == "chain"),
        lambda found: CredentialInfoV2(
            **_describe_v2(
                found,
                certificates=body.certificates,
                cert_info=body.certInfo,
                auth_info=body.authInfo,
            )
        ),
    )


@v2.post(
    "/credentials/authorize",
    summary="CSC v2: authData (PIN, OTP) for a SAD bound to the hashes",
    response_model=SadAnswer,
    responses=_AUTHORIZE_RESPONSES,
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


@v2.post(
    "/signatures/signHash",
    summary="CSC v2: sign the hashes the SAD was bound to",
    response_model=SignaturesAnswer,
    responses=_SIGNING_RESPONSES,
)
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
    response_model=SignedDocuments,
    responses=_SIGN_DOC_RESPONSES,
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
        lambda signed: SignedDocuments(
            DocumentWithSignature=[base64.b64encode(p).decode() for p in signed]
        ),
    )


@v2.post(
    "/signatures/timestamp",
    summary="CSC v2: an RFC 3161 timestamp from Kyso's TSA",
    response_model=TimestampAnswer,
    responses=_TIMESTAMP_RESPONSES,
)
async def timestamp_v2(body: TimestampV2, principal: PrincipalDep, csc: CscDep) -> Response:
    return await _answer(
        lambda: csc.timestamp(body.hash, body.hashAlgorithmOID, body.nonce),
        _timestamp,
    )
