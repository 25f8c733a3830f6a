"""The Cloud Signature Consortium API, v1 (1.0.4.0), under ``/csc/v1/``.

Remote signing clients (pyHanko's ``CSCSigner``, commercial tools) sign through Kyso with
the keys on its HSM: ``auth/login`` (HTTP Basic) gives a person a token limited to these
endpoints; ``credentials/list`` and ``credentials/info`` describe the credentials they
hold; ``credentials/authorize`` checks the PIN (and the one-time code under ``pin+otp``)
and returns a SAD bound to the hashes (SCAL 2) and their number (``multisign``);
``signatures/signHash`` uses the SAD up and signs exactly those hashes on the HSM;
``signatures/timestamp`` asks Kyso's TSA. Service clients call with their OAuth2 token
and reach only the seals bound to them.

Errors follow CSC: ``{"error": "invalid_request", "error_description": "..."}``.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any

from asn1crypto import algos, tsp
from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from hsm import HashAlg, SignScheme
from kyso.access.activation import MULTISIGN, SAD_LIFETIME, Binding, SignatureActivation
from kyso.access.model import AccessError, InvalidLoginError, InvalidTokenError, Principal, Role
from kyso.access.store import CSC_SESSION, AccessStore
from kyso.errors import KysoError
from kyso.routers.auth import get_access, get_tokens
from kyso.routers.health import RuntimeDep
from kyso.runtime import Runtime
from pki.authority import Authority, Credential
from pki.errors import PkiError
from pki.store import CredentialKind, CredentialStatus

router = APIRouter(prefix="/csc/v1", tags=["csc"])

SPECS = "1.0.4.0"
MAX_HASHES = MULTISIGN
_HASHES = {
    algos.DigestAlgorithmId("sha256").dotted: HashAlg.SHA256,
    algos.DigestAlgorithmId("sha384").dotted: HashAlg.SHA384,
    algos.DigestAlgorithmId("sha512").dotted: HashAlg.SHA512,
}
_SIGN_ALGOS = {
    "ec": {
        algos.SignedDigestAlgorithmId(f"{h}_ecdsa").dotted: h
        for h in ("sha256", "sha384", "sha512")
    },
    "rsa": {
        algos.SignedDigestAlgorithmId(f"{h}_rsa").dotted: h for h in ("sha256", "sha384", "sha512")
    },
}


class CscError(KysoError):
    code = "csc.invalid_request"


def _error(status: int, error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


def csc_errors(ex: Exception) -> JSONResponse:
    """An error as the CSC API answers it (status and ``error`` code)."""
    if isinstance(ex, (InvalidLoginError, InvalidTokenError)):
        return _error(
            401,
            "invalid_token" if isinstance(ex, InvalidTokenError) else "authentication_error",
            ex.message,
        )
    if isinstance(ex, AccessError) and ex.code in ("access.forbidden",):
        return _error(403, "access_denied", ex.message)
    if isinstance(ex, (AccessError, PkiError, CscError)):
        return _error(400, "invalid_request", ex.message)
    raise ex


async def csc_principal(request: Request, runtime: RuntimeDep) -> Principal:
    """A person's CSC token (from ``auth/login``) or a service client's OAuth2 token."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise InvalidTokenError("send the token from auth/login, or an OAuth2 access token")
    token = token.strip()
    if token.count(".") == 2:
        claims = get_tokens(runtime).check(token)
        client = await run_in_threadpool(
            get_access(runtime).client, claims.subject.removeprefix("client:")
        )
        if client is None or not claims.subject.startswith("client:"):
            raise InvalidTokenError("the access token is not valid")
        return client.principal()
    session = await run_in_threadpool(get_access(runtime).session, token)
    if session is None or session.kind != "csc":
        raise InvalidTokenError("the token is not valid; log in again")
    return session.principal()


PrincipalDep = Annotated[Principal, Depends(csc_principal)]


def _services(runtime: Runtime) -> tuple[AccessStore, SignatureActivation, Authority]:
    if runtime.activation is None or runtime.pki is None:
        raise CscError("signing is not available in this process")
    return get_access(runtime), runtime.activation, runtime.pki.authority


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow")


class CredentialRequest(_Body):
    credentialID: str = Field(min_length=1, max_length=32)


class InfoRequest(CredentialRequest):
    certificates: str = Field("single", pattern="^(none|single|chain)$")
    certInfo: bool = False
    authInfo: bool = False


class AuthorizeRequest(CredentialRequest):
    numSignatures: int = Field(ge=1, le=MULTISIGN)
    hash: list[str] = Field(default_factory=list, max_length=MULTISIGN)
    PIN: SecretStr | None = Field(None, max_length=64)
    OTP: SecretStr | None = Field(None, max_length=16)
    description: str | None = Field(None, max_length=500)


class SignHashRequest(CredentialRequest):
    SAD: SecretStr = Field(min_length=1, max_length=256)
    hash: list[str] = Field(min_length=1, max_length=MAX_HASHES)
    hashAlgo: str | None = Field(None, max_length=64)
    signAlgo: str = Field(max_length=64)
    signAlgoParams: str | None = Field(None, max_length=1024)


class TimestampRequest(_Body):
    hash: str = Field(max_length=128)
    hashAlgo: str = Field(max_length=64)
    nonce: str | None = Field(None, max_length=64)


@router.post("/info", summary="CSC: what this service offers")
async def info(request: Request) -> dict[str, Any]:
    return {
        "specs": SPECS,
        "name": "Kyso",
        "logo": str(request.base_url) + "favicon.ico",
        "region": "VN",
        "lang": "vi-VN",
        "description": "Dịch vụ ký số Kyso / Kyso signing service",
        "authType": ["basic", "oauth2client"],
        "oauth2": str(request.base_url) + "oauth/token",
        "methods": [
            "auth/login",
            "auth/revoke",
            "credentials/list",
            "credentials/info",
            "credentials/authorize",
            "signatures/signHash",
            "signatures/timestamp",
        ],
    }


@router.post("/auth/login", summary="CSC: log in with HTTP Basic (username:password)")
async def login(request: Request, runtime: RuntimeDep) -> JSONResponse:
    store = get_access(runtime)
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    try:
        username, sep, password = (
            base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        )
    except (binascii.Error, UnicodeDecodeError, ValueError):
        sep = ""
    if scheme.lower() != "basic" or not sep:
        return _error(401, "authentication_error", "HTTP Basic username:password is required")
    try:
        user = await run_in_threadpool(store.authenticate, username, password, None, kind="csc")
    except InvalidLoginError as ex:
        return _error(401, "authentication_error", ex.message)
    opened = await run_in_threadpool(store.open_session, user, kind="csc")
    lifetime = int(CSC_SESSION.total_seconds())
    return JSONResponse(
        {"access_token": opened.secret, "expires_in": lifetime},
        headers={"Cache-Control": "no-store"},
    )


@router.post("/auth/revoke", status_code=204, summary="CSC: end the token from auth/login")
async def revoke(request: Request, principal: PrincipalDep, runtime: RuntimeDep) -> None:
    token = request.headers.get("authorization", "").partition(" ")[2].strip()
    await run_in_threadpool(get_access(runtime).end_session, token, principal.actor())


def _held(
    principal: Principal, store: AccessStore, activation: SignatureActivation, authority: Authority
) -> list[Credential]:
    """The active signing credentials ``principal`` may activate."""
    if principal.kind == "client":
        client = store.client(principal.id.removeprefix("client:"))
        seals = [c for c in authority.credentials() if c.kind is CredentialKind.SEAL]
        return [
            c
            for c in seals
            if client is not None
            and activation.bound_client_id(c.id) == client.id
            and c.status is CredentialStatus.ACTIVE
        ]
    user = store.user(principal.id.removeprefix("user:"))
    if user.role is Role.OFFICER and user.person_id is not None:
        found = authority.credentials(person_id=user.person_id)
        kinds = {CredentialKind.OFFICER}
    elif user.role is Role.CLERK and user.unit_id is not None:
        found = authority.credentials(unit_id=user.unit_id)
        kinds = {CredentialKind.SEAL}
    else:
        return []
    return [c for c in found if c.kind in kinds and c.status is CredentialStatus.ACTIVE]


def _credential(principal: Principal, credential_id: str, runtime: Runtime) -> Credential:
    store, activation, authority = _services(runtime)
    for credential in _held(principal, store, activation, authority):
        if str(credential.id) == credential_id:
            return credential
    raise CscError(f"no credential {credential_id[:32]!r} for this user")


@router.post("/credentials/list", summary="CSC: the credentials you hold")
async def credentials_list(principal: PrincipalDep, runtime: RuntimeDep) -> dict[str, Any]:
    store, activation, authority = _services(runtime)
    held = await run_in_threadpool(_held, principal, store, activation, authority)
    return {"credentialIDs": [str(c.id) for c in held]}


@router.post("/credentials/info", summary="CSC: a credential's key, certificates and activation")
async def credentials_info(
    body: InfoRequest, principal: PrincipalDep, runtime: RuntimeDep
) -> Response:
    try:
        credential = await run_in_threadpool(_credential, principal, body.credentialID, runtime)
    except (AccessError, PkiError, CscError) as ex:
        return csc_errors(ex)
    _, activation, authority = _services(runtime)
    certificate = credential.certificate
    assert certificate is not None
    chain = [certificate] + (
        []
        if body.certificates == "single"
        else list(credential.chain or authority.internal_chain())
    )
    key = certificate.public_key
    family = "ec" if key.algorithm == "ec" else "rsa"
    policy = await run_in_threadpool(activation.policy, credential.id)
    bound_client = principal.kind == "client"
    answer: dict[str, Any] = {
        "key": {
            "status": "enabled",
            "algo": sorted(_SIGN_ALGOS[family]),
            "len": key.bit_size,
        },
        "cert": {"status": "valid"},
        "authMode": "explicit",
        "PIN": {"presence": "false" if bound_client else "true", "format": "A", "label": "PIN"},
        "OTP": {
            "presence": "true" if policy.value == "pin+otp" and not bound_client else "false",
            "type": "offline",
            "format": "N",
            "label": "TOTP",
            "description": "Mã một lần từ ứng dụng xác thực / code from the authenticator app",
        },
        "multisign": MULTISIGN,
        "SCAL": "2",
        "lang": "vi-VN",
    }
    if key.algorithm == "ec":
        answer["key"]["curve"] = key["algorithm"]["parameters"].chosen.dotted
    if body.certificates != "none":
        answer["cert"]["certificates"] = [base64.b64encode(c.dump()).decode() for c in chain]
    if body.certInfo:
        answer["cert"] |= {
            "issuerDN": certificate.issuer.human_friendly,
            "serialNumber": str(certificate.serial_number),
            "subjectDN": certificate.subject.human_friendly,
            "validFrom": certificate["tbs_certificate"]["validity"]["not_before"].native.strftime(
                "%Y%m%d%H%M%SZ"
            ),
            "validTo": certificate["tbs_certificate"]["validity"]["not_after"].native.strftime(
                "%Y%m%d%H%M%SZ"
            ),
        }
    return JSONResponse(answer)


def _hashes(values: list[str], algorithm: HashAlg | None) -> tuple[bytes, ...]:
    try:
        decoded = tuple(base64.b64decode(v, validate=True) for v in values)
    except (binascii.Error, ValueError) as ex:
        raise CscError("every hash is base64") from ex
    if algorithm is not None and any(len(h) != algorithm.digest_size for h in decoded):
        raise CscError(f"every {algorithm.value} hash is {algorithm.digest_size} bytes")
    return decoded


def _hash_of_size(values: tuple[bytes, ...]) -> HashAlg:
    sizes = {len(v) for v in values}
    for algorithm in HashAlg:
        if sizes == {algorithm.digest_size}:
            return algorithm
    raise CscError("the hashes must all be SHA-256, SHA-384 or SHA-512 digests")


@router.post("/credentials/authorize", summary="CSC: PIN (and OTP) for a SAD bound to the hashes")
async def credentials_authorize(
    body: AuthorizeRequest, principal: PrincipalDep, runtime: RuntimeDep
) -> Response:
    try:
        credential = await run_in_threadpool(_credential, principal, body.credentialID, runtime)
        if not body.hash:
            raise CscError("this service binds a SAD to its hashes (SCAL 2): send them in 'hash'")
        hashes = _hashes(body.hash, None)
        algorithm = _hash_of_size(hashes)
        _, activation, _ = _services(runtime)
        sad = await run_in_threadpool(
            activation.authorize,
            principal,
            credential.id,
            Binding(hashes=hashes, hash_algorithm=algorithm.value),
            count=body.numSignatures,
            pin=body.PIN.get_secret_value() if body.PIN else None,
            otp=body.OTP.get_secret_value() if body.OTP else None,
        )
    except (AccessError, PkiError, CscError) as ex:
        return csc_errors(ex)
    return JSONResponse(
        {"SAD": sad.value, "expiresIn": int(SAD_LIFETIME.total_seconds())},
        headers={"Cache-Control": "no-store"},
    )


@router.post("/signatures/signHash", summary="CSC: sign the hashes the SAD was bound to")
async def sign_hash(
    body: SignHashRequest, principal: PrincipalDep, runtime: RuntimeDep
) -> Response:
    try:
        credential = await run_in_threadpool(_credential, principal, body.credentialID, runtime)
        certificate = credential.certificate
        assert certificate is not None
        family = "ec" if certificate.public_key.algorithm == "ec" else "rsa"
        digest_name = _SIGN_ALGOS[family].get(body.signAlgo)
        if digest_name is None:
            raise CscError(f"signAlgo {body.signAlgo[:64]} is not one of this key's algorithms")
        algorithm = HashAlg(digest_name)
        if body.hashAlgo is not None and _HASHES.get(body.hashAlgo) is not algorithm:
            raise CscError("hashAlgo does not match signAlgo")
        hashes = _hashes(body.hash, algorithm)
        _, activation, authority = _services(runtime)
        await run_in_threadpool(authority.usable_credential, credential.id)
        await run_in_threadpool(
            activation.consume,
            principal,
            body.SAD.get_secret_value(),
            credential.id,
            Binding(hashes=hashes, hash_algorithm=algorithm.value),
        )
    except (AccessError, PkiError, CscError) as ex:
        return csc_errors(ex)
    scheme = SignScheme.ECDSA if family == "ec" else SignScheme.RSA_PKCS1V15
    key_id = bytes.fromhex(credential.key_id)
    signatures = [
        await runtime.hsm.sign_digest(key_id, digest, scheme=scheme, hash_alg=algorithm)
        for digest in hashes
    ]
    return JSONResponse({"signatures": [base64.b64encode(s).decode() for s in signatures]})


@router.post("/signatures/timestamp", summary="CSC: an RFC 3161 timestamp from Kyso's TSA")
async def timestamp(
    body: TimestampRequest, principal: PrincipalDep, runtime: RuntimeDep
) -> Response:
    algorithm = _HASHES.get(body.hashAlgo)
    try:
        if algorithm is None:
            raise CscError("hashAlgo must be SHA-256, SHA-384 or SHA-512")
        (digest,) = _hashes([body.hash], algorithm)
        nonce = int(body.nonce, 16) if body.nonce else None
    except (CscError, ValueError) as ex:
        return _error(400, "invalid_request", getattr(ex, "message", "nonce must be hex"))
    if runtime.pki is None:
        return _error(503, "service_unavailable", "the timestamp authority is not available")
    request = tsp.TimeStampReq(
        {
            "version": "v1",
            "message_imprint": {
                "hash_algorithm": {"algorithm": algorithm.value},
                "hashed_message": digest,
            },
            "nonce": nonce,
            "cert_req": True,
        }
    )
    reply = await run_in_threadpool(
        runtime.pki.authority.timestamp_authority().respond, request.dump()
    )
    if not reply.granted:
        return _error(400, "invalid_request", "the timestamp authority refused the request")
    token = tsp.TimeStampResp.load(reply.der)["time_stamp_token"]
    return JSONResponse({"timestamp": base64.b64encode(token.dump()).decode()})
