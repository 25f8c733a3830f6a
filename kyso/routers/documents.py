"""Documents through the issuing workflow: upload a draft, the competent officer's signature,
the clerk's seal (number and time of issue), status and revisions, each revision's PDF; and
the stamp images visible signatures draw (officers' signatures, units' seals).

Like every signing route, sign and seal activate the credential for this document only
(see :mod:`kyso.routers.signing`); the image routes are administration.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Path, Query, Request, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import Field

from kyso.access.activation import Binding
from kyso.access.matrix import visible_units
from kyso.errors import KysoError
from kyso.routers.admin import ActivationDep, AdminDep
from kyso.routers.authorise import AuthorisedDep
from kyso.routers.pki import PkiDep
from kyso.routers.signing import (
    SIGN_RATE,
    Activated,
    CallerDep,
    IdempotencyKey,
    PlacementBody,
    SigningDep,
    inline_activation_rate,
    to_placement,
)
from signer.documents import MAX_LISTED, Document, DraftMetadata
from signer.errors import DocumentNotFoundError
from signer.stamps import MAX_PNG_BYTES
from signer.store import (
    MAX_PERSON_ID,
    MAX_SERVICE,
    MAX_TITLE,
    MAX_TYPE,
    DocumentStatus,
    StampImageKind,
)

PNG = "image/png"

router = APIRouter(prefix="/api/v1", tags=["documents"])
DocumentId = Annotated[str, Path(min_length=1, max_length=64, description="26 characters")]
OwnerId = Annotated[int, Path(ge=1, le=2**62)]


class UnsupportedMediaTypeError(KysoError):
    code = "kyso.unsupported_media_type"


class Signature(Activated):
    placement: PlacementBody | None = Field(
        None,
        description="Default: the template's empty field CanBoKy, else below the "
        "officer's title line.",
    )


class Seal(Activated):
    pass


@router.post(
    "/documents",
    status_code=201,
    summary="Upload a draft for signing",
    response_model=dict[str, Any],
)
async def upload(
    signing: SigningDep,
    actor: CallerDep,
    file: Annotated[UploadFile, File(description="The draft PDF.")],
    document_type: Annotated[str, Form(min_length=1, max_length=MAX_TYPE)],
    unit_id: Annotated[int, Form(ge=1, le=2**62)],
    service: Annotated[str, Form(min_length=1, max_length=MAX_SERVICE)],
    subject_person_id: Annotated[str, Form(min_length=1, max_length=MAX_PERSON_ID)],
    title: Annotated[str | None, Form(min_length=1, max_length=4 * MAX_TITLE)] = None,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    meta = DraftMetadata(
        document_type=document_type,
        unit_id=unit_id,
        service=service,
        subject_person_id=subject_person_id,
        title=title,
    )
    pdf = await file.read()
    document = await run_in_threadpool(
        lambda: signing.registry.upload(pdf, meta, actor, idempotency_key=idempotency_key)
    )
    return JSONResponse(
        document.as_dict(),
        status_code=201,
        headers={"Location": f"/api/v1/documents/{document.id}"},
    )


@router.post(
    "/documents/{document_id}/sign",
    summary="The competent officer signs the draft",
    dependencies=SIGN_RATE,
)
async def sign(
    request: Request,
    document_id: DocumentId,
    body: Signature,
    signing: SigningDep,
    activation: ActivationDep,
    principal: AuthorisedDep,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    placement = to_placement(body.placement)
    inline_activation_rate(request, principal, pin=body.pin, otp=body.otp)

    def run() -> Document:
        body.activate(activation, principal, Binding(document_ids=(document_id,)))
        return signing.registry.sign(
            document_id,
            body.credential_id,
            principal.actor(),
            idempotency_key=idempotency_key,
            placement=placement,
        )

    return (await run_in_threadpool(run)).as_dict()


@router.post(
    "/documents/{document_id}/seal",
    summary="The clerk seals and issues the document",
    dependencies=SIGN_RATE,
)
async def seal(
    request: Request,
    document_id: DocumentId,
    body: Seal,
    signing: SigningDep,
    activation: ActivationDep,
    principal: AuthorisedDep,
    idempotency_key: IdempotencyKey = None,
) -> dict[str, Any]:
    inline_activation_rate(request, principal, pin=body.pin, otp=body.otp)

    def run() -> Document:
        body.activate(activation, principal, Binding(document_ids=(document_id,)))
        return signing.registry.seal(
            document_id, body.credential_id, principal.actor(), idempotency_key=idempotency_key
        )

    return (await run_in_threadpool(run)).as_dict()


@router.get("/documents", summary="Documents in the caller's reach, newest first")
async def list_documents(
    signing: SigningDep,
    pki: PkiDep,
    principal: AuthorisedDep,
    status: Annotated[
        DocumentStatus | None,
        Query(description="draft: waiting for the officer; signed: for the seal; issued"),
    ] = None,
    unit_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LISTED)] = 100,
    before: Annotated[
        str | None,
        Query(min_length=1, max_length=64, description="The last id of the previous page."),
    ] = None,
) -> list[dict[str, Any]]:
    """What an officer finds waiting for their signature (``status=draft``), a clerk for
    the seal (``signed``), an auditor in their subtree: only the units the caller may see."""

    def listed() -> list[Document]:
        reach = visible_units(principal, pki.authority.units())
        if unit_id is not None:
            reach = {unit_id} if reach is None else reach & {unit_id}
        return signing.registry.documents(unit_ids=reach, status=status, limit=limit, before=before)

    return [document.as_dict() for document in await run_in_threadpool(listed)]


@router.get("/documents/{document_id}", summary="Status, number and revisions")
async def show(document_id: DocumentId, signing: SigningDep, _caller: CallerDep) -> dict[str, Any]:
    return (await run_in_threadpool(signing.registry.document, document_id)).as_dict()


@router.get(
    "/documents/{document_id}/pdf",
    summary="The PDF of a revision (the latest by default)",
    response_class=Response,
    responses={
        200: {"content": {"application/pdf": {}}, "description": "The PDF; ETag: its SHA-256."},
        304: {"description": "If-None-Match named this revision's ETag."},
    },
)
async def pdf(
    document_id: DocumentId,
    request: Request,
    signing: SigningDep,
    _caller: CallerDep,
    revision: Annotated[int | None, Query(ge=0, le=1000)] = None,
) -> Response:
    document = await run_in_threadpool(signing.registry.document, document_id)
    chosen = document.latest
    if revision is not None:
        found = [r for r in document.revisions if r.revision == revision]
        if not found:
            raise DocumentNotFoundError(f"no revision {revision} of document {document.id}")
        chosen = found[0]
    etag = f'"{chosen.sha256}"'
    # Revisions are immutable: the same ETag is the same bytes, forever.
    headers = {"ETag": etag, "Cache-Control": "private, no-cache"}
    if etag in _etags(request.headers.get("if-none-match")):
        return Response(status_code=304, headers=headers)
    data = await run_in_threadpool(signing.registry.pdf, document.id, chosen.revision)
    headers["Content-Disposition"] = f'inline; filename="{document.id}-{chosen.revision}.pdf"'
    return Response(data, media_type="application/pdf", headers=headers)


def _etags(header: str | None) -> set[str]:
    if not header:
        return set()
    return {part.strip().removeprefix("W/") for part in header[:4096].split(",")}


# -- stamp images (administration) --------------------------------------------------------------


async def _png(request: Request) -> bytes:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != PNG:
        raise UnsupportedMediaTypeError(f"send the image as {PNG} (got {media_type or 'none'})")
    # The body limit (kyso.app) has already refused anything over MAX_PNG_BYTES.
    return await request.body()


@router.put(
    "/people/{person_id}/signature-image",
    status_code=204,
    summary=f"An officer's handwritten signature (transparent PNG, ≤ {MAX_PNG_BYTES} bytes)",
    tags=["administration"],
)
async def put_signature_image(
    person_id: OwnerId, request: Request, pki: PkiDep, signing: SigningDep, admin: AdminDep
) -> Response:
    png = await _png(request)
    await run_in_threadpool(pki.authority.person, person_id)
    await run_in_threadpool(signing.images.set, StampImageKind.OFFICER, person_id, png, admin)
    return Response(status_code=204)


@router.put(
    "/units/{unit_id}/seal-image",
    status_code=204,
    summary=f"A unit's red seal (transparent PNG with its DPI, ≤ {MAX_PNG_BYTES} bytes)",
    tags=["administration"],
)
async def put_seal_image(
    unit_id: OwnerId, request: Request, pki: PkiDep, signing: SigningDep, admin: AdminDep
) -> Response:
    png = await _png(request)
    await run_in_threadpool(pki.authority.unit, unit_id)
    await run_in_threadpool(signing.images.set, StampImageKind.SEAL, unit_id, png, admin)
    return Response(status_code=204)
