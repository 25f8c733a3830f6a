"""Public PKI services, no login: CA certificates, CRLs, the OCSP responder and the RFC 3161
timestamp authority.

Protocol errors are answered in the protocol's own form (OCSP ``malformedRequest``, TSA
``badDataFormat`` / ``badAlg``) with HTTP 400; request bodies are capped before they are read
in full.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.concurrency import run_in_threadpool

from kyso.errors import KysoError
from kyso.pki_service import CA_BY_NAME, PkiServices
from kyso.routers.health import RuntimeDep
from pki import ocsp, tsa
from pki.errors import InvalidInputError

OCSP_RESPONSE = "application/ocsp-response"
TSA_REPLY = "application/timestamp-reply"
_DER = {"schema": {"type": "string", "format": "binary"}}


def _der_body(media_type: str) -> dict[str, Any]:
    """The OpenAPI request body of a route that reads raw DER itself."""
    return {"requestBody": {"required": True, "content": {media_type: _DER}}}


def _der_answers(media_type: str, statuses: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses in ``media_type``: status → description."""
    return {
        status: {"description": text, "content": {media_type: _DER}}
        for status, text in statuses.items()
    }


_OCSP_ANSWERS = _der_answers(
    OCSP_RESPONSE, {200: "The OCSP response", 400: "malformedRequest (unsigned)"}
)
_TSA_CLIENT_ERRORS = frozenset(
    {"bad_alg", "bad_request", "bad_data_format", "unaccepted_policy", "unaccepted_extensions"}
)
"""PKIFailureInfo names that blame the request (HTTP 400); systemFailure is ours (500)."""


class PkiUnavailableError(KysoError):
    code = "pki.unavailable"


class BodyTooLargeError(KysoError):
    code = "kyso.body_too_large"


def get_pki(runtime: RuntimeDep) -> PkiServices:
    if runtime.pki is None:
        raise PkiUnavailableError("the PKI is not set up; run 'kyso init'")
    return runtime.pki


PkiDep = Annotated[PkiServices, Depends(get_pki)]
CaName = Annotated[Literal["root", "issuing"], Path(description="root or issuing")]
router = APIRouter(tags=["pki"])


async def read_capped(request: Request, limit: int) -> bytes | None:
    """The request body, or None when it is longer than ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


@router.get(
    "/pki/ca/{name}.crt",
    summary="CA certificate (DER)",
    response_class=Response,
    responses=_der_answers("application/pkix-cert", {200: "The certificate"}),
)
async def ca_certificate(name: CaName, pki: PkiDep) -> Response:
    der = await run_in_threadpool(pki.ca_certificate, CA_BY_NAME[name])
    return Response(der, media_type="application/pkix-cert")


@router.get(
    "/pki/crl/{name}.crl",
    summary="Latest CRL of a CA (DER)",
    response_class=Response,
    responses=_der_answers("application/pkix-crl", {200: "The CRL"}),
)
async def crl(name: CaName, pki: PkiDep) -> Response:
    der = await run_in_threadpool(pki.authority.current_crl, CA_BY_NAME[name])
    return Response(der, media_type="application/pkix-crl")


def _ocsp_response(der: bytes) -> Response:
    # An unsigned error response (malformedRequest) is the client's fault: HTTP 400.
    malformed = der == ocsp.malformed_request_response()
    return Response(der, status_code=400 if malformed else 200, media_type=OCSP_RESPONSE)


@router.post(
    "/pki/ocsp",
    summary="OCSP responder (RFC 6960, POST)",
    response_class=Response,
    responses=_OCSP_ANSWERS,
    openapi_extra=_der_body("application/ocsp-request"),
)
async def ocsp_post(request: Request, pki: PkiDep) -> Response:
    body = await read_capped(request, ocsp.MAX_REQUEST_BYTES)
    if body is None:
        return _ocsp_response(ocsp.malformed_request_response())
    return _ocsp_response(await run_in_threadpool(pki.ocsp, body))


@router.get(
    "/pki/ocsp/{encoded:path}",
    summary="OCSP responder (RFC 6960, GET)",
    response_class=Response,
    responses=_OCSP_ANSWERS,
)
async def ocsp_get(encoded: str, pki: PkiDep) -> Response:
    try:
        body = ocsp.parse_get_path(encoded)
    except InvalidInputError:
        return _ocsp_response(ocsp.malformed_request_response())
    return _ocsp_response(await run_in_threadpool(pki.ocsp, body))


@router.post(
    "/tsa",
    summary="Timestamp authority (RFC 3161)",
    response_class=Response,
    responses=_der_answers(
        TSA_REPLY,
        {
            200: "The timestamp token (granted)",
            400: "A rejection: the request is malformed or asks what this TSA does not do",
            503: "A rejection: systemFailure",
        },
    ),
    openapi_extra=_der_body("application/timestamp-query"),
)
async def timestamp(request: Request, pki: PkiDep) -> Response:
    body = await read_capped(request, tsa.MAX_REQUEST_BYTES)
    if body is None:
        result = tsa.rejection(
            "bad_data_format", f"the request exceeds {tsa.MAX_REQUEST_BYTES} bytes"
        )
    else:
        authority = await run_in_threadpool(pki.tsa)
        result = await run_in_threadpool(authority.respond, body)
    status = 200
    if result.failure is not None:
        status = 400 if result.failure in _TSA_CLIENT_ERRORS else 503
    return Response(result.der, status_code=status, media_type=TSA_REPLY)
