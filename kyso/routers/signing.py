"""Signing for services: one-shot ``POST /api/v1/sign`` (a PDF in, the signed PDF out) and
batches of the document registry's sign or seal steps (``/api/v1/batches``); and what every
signing route shares: who is calling, where a visible signature goes.

Every signing route is authorised by the matrix (:mod:`kyso.access.matrix`): the caller
signs in (session or access token) and must hold the credential (an officer's own, a
clerk's unit seal, a seal bound to the client). Then the credential is activated for
exactly this request (:meth:`~kyso.access.activation.SignatureActivation.activate`): with
signature activation data from ``POST /api/v1/credentials/{id}/authorize``, bound to the
documents or the PDF's SHA-256, or with the PIN (and, under the ``pin+otp`` policy, the
holder's one-time code) in the request itself. Nothing is signed before that.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Header, Path, Request, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from audit.events import Action, Actor, AuditEvent, Outcome, Subject
from audit.log import AuditLog
from kyso.access.activation import (
    MAX_DOCUMENT_ID,
    MAX_DOCUMENTS,
    MULTISIGN,
    Binding,
    SignatureActivation,
)
from kyso.access.model import Principal
from kyso.errors import KysoError
from kyso.logs import request_id
from kyso.routers.admin import MAX_PIN_INPUT, ActivationDep
from kyso.routers.auth import limit
from kyso.routers.authorise import ActorDep, AuthorisedDep
from kyso.routers.health import RuntimeDep
from kyso.routers.pki import PkiDep
from kyso.signing import SigningServices
from pki.authority import Authority, Credential
from signer.batches import BatchItemRequest, BatchRunner
from signer.documents import inspect_pdf
from signer.errors import BadPlacementError, InvalidRequestError
from signer.pades import Level
from signer.placement import (
    MAX_ANCHOR_LENGTH,
    MAX_COORDINATE,
    MAX_FIELD_NAME_LENGTH,
    AnchorPlacement,
    Document,
    FieldPlacement,
    Placement,
    RectPlacement,
    free_field_name,
    parse_rect,
)
from signer.stamps import VisibleSignature, officer_signature
from signer.store import MAX_BATCH_ITEMS, BatchAction, StampImageKind

MAX_PAGE = 100_000


class SigningUnavailableError(KysoError):
    code = "kyso.unavailable"


# -- what every signing route shares ---------------------------------------------------------


def get_signing(runtime: RuntimeDep) -> SigningServices:
    if runtime.signing is None:
        raise SigningUnavailableError("signing is not available in this process")
    return runtime.signing


def get_batches(runtime: RuntimeDep) -> BatchRunner:
    if runtime.batches is None:
        raise SigningUnavailableError("batches are not available in this process")
    return runtime.batches


CallerDep = ActorDep


def sign_rate(request: Request, caller: CallerDep) -> None:
    """The signing rate limit of the caller (429 beyond it)."""
    limit(request, "sign", caller.id or "unknown")


SIGN_RATE = [Depends(sign_rate)]
SigningDep = Annotated[SigningServices, Depends(get_signing)]
BatchesDep = Annotated[BatchRunner, Depends(get_batches)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=256,
        description="Repeat a request with the same key to get the same result, signed once "
        "(1 to 128 printable ASCII characters without spaces).",
    ),
]
CredentialId = Annotated[int, Field(ge=1, le=2**62)]
Pin = Annotated[
    SecretStr | None,
    Field(None, min_length=1, max_length=MAX_PIN_INPUT, description="The credential's PIN."),
]
Otp = Annotated[
    SecretStr | None,
    Field(
        None,
        min_length=6,
        max_length=8,
        description="The holder's one-time code (TOTP), when the credential's activation "
        "policy is pin+otp.",
    ),
]
Sad = Annotated[
    SecretStr | None,
    Field(
        None,
        min_length=20,
        max_length=128,
        description="Signature activation data from POST /api/v1/credentials/{id}/authorize "
        "for exactly this request, instead of the PIN (and code).",
    ),
]
Coordinate = Annotated[float, Field(ge=-MAX_COORDINATE, le=MAX_COORDINATE, allow_inf_nan=False)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Activated(Body):
    """A request that signs with a credential, and how it activates the credential: a
    SAD, or the PIN (and the holder's one-time code when the policy asks for it)."""

    credential_id: CredentialId
    sad: Sad = None
    pin: Pin = None
    otp: Otp = None

    def activate(
        self, activation: SignatureActivation, principal: Principal, binding: Binding
    ) -> Credential:
        return activate(
            activation,
            principal,
            self.credential_id,
            binding,
            sad=self.sad,
            pin=self.pin,
            otp=self.otp,
        )


def reveal(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret else None


def activate(
    activation: SignatureActivation,
    principal: Principal,
    credential_id: int,
    binding: Binding,
    *,
    sad: SecretStr | None,
    pin: SecretStr | None,
    otp: SecretStr | None,
) -> Credential:
    """The credential, activated for ``binding`` (blocking: argon2, database)."""
    return activation.activate(
        principal, credential_id, binding, sad=reveal(sad), pin=reveal(pin), otp=reveal(otp)
    )


class FieldSpot(Body):
    """Into the document's empty signature field of this name."""

    field: str = Field(min_length=1, max_length=MAX_FIELD_NAME_LENGTH)


class RectSpot(Body):
    """In a new field at this rectangle (PDF points, origin bottom left) of a page."""

    page: int = Field(ge=1, le=MAX_PAGE)
    rect: tuple[Coordinate, Coordinate, Coordinate, Coordinate]


class AnchorSpot(Body):
    """In a new field below this text (the signer's title line), on a page or the last
    pages."""

    anchor: str = Field(min_length=1, max_length=MAX_ANCHOR_LENGTH)
    page: int | None = Field(None, ge=1, le=MAX_PAGE)


PlacementBody = FieldSpot | RectSpot | AnchorSpot


def to_placement(body: PlacementBody | None) -> Placement | None:
    if body is None:
        return None
    if isinstance(body, FieldSpot):
        return FieldPlacement(name=body.field)
    if isinstance(body, RectSpot):
        return RectPlacement(page=body.page, rect=body.rect)
    return AnchorPlacement(text=body.anchor, page=body.page)


router = APIRouter(prefix="/api/v1", tags=["signing"])


# -- signature activation --------------------------------------------------------------------

HexDigest = Annotated[str, Field(min_length=64, max_length=128, pattern="^[0-9a-fA-F]+$")]
DocumentRef = Annotated[str, Field(min_length=1, max_length=MAX_DOCUMENT_ID)]


class Authorization(Body):
    """What the SAD will let sign: documents of the registry (their ids), or PDFs and
    hashes (their digests, hexadecimal; a one-shot ``/sign`` checks the SHA-256 of the PDF
    it is sent). ``count`` defaults to how many are given and must equal it."""

    documents: list[DocumentRef] = Field(default_factory=list, max_length=MAX_DOCUMENTS)
    hashes: list[HexDigest] = Field(default_factory=list, max_length=MULTISIGN)
    hash_algorithm: Literal["sha256", "sha384", "sha512"] = "sha256"
    count: int | None = Field(None, ge=1, le=MAX_DOCUMENTS)
    pin: Pin = None
    otp: Otp = None

    def binding(self) -> Binding:
        if self.hashes:
            return Binding(
                hashes=tuple(bytes.fromhex(h) for h in self.hashes),
                hash_algorithm=self.hash_algorithm,
            )
        return Binding(document_ids=tuple(self.documents))


class IssuedActivation(BaseModel):
    sad: str = Field(description="Give it once, with the signing request it was bound to.")
    credential_id: int
    count: int
    expires_at: datetime
    expires_in: int = Field(description="Seconds from now.")


def authorize_rate(request: Request, principal: AuthorisedDep) -> None:
    limit(request, "authorize", principal.id)


def inline_activation_rate(
    request: Request, principal: Principal, *, pin: object, otp: object
) -> None:
    """A signing request that proves the PIN (and code) itself is an activation too, and
    counts against the same limit: the PIN locks after five wrong tries, and this bounds
    the tries at a one-time code. A seal bound to the calling service proves nothing."""
    if pin is not None or otp is not None:
        authorize_rate(request, principal)


@router.post(
    "/credentials/{credential_id}/authorize",
    summary="Activate a credential for exactly these documents or hashes (a SAD)",
    dependencies=[Depends(authorize_rate)],
    response_model=IssuedActivation,
)
async def authorize(
    credential_id: Annotated[int, Path(ge=1, le=2**62)],
    body: Authorization,
    activation: ActivationDep,
    principal: AuthorisedDep,
    response: Response,
) -> IssuedActivation:
    """The holder proves the PIN (and, under ``pin+otp``, a fresh one-time code) once for
    up to 1,000 documents or 100 hashes; the SAD is valid five minutes, for one signing
    request (a document's sign or seal step, a batch of exactly those documents, or a
    one-shot ``/sign`` of a PDF whose SHA-256 was given). A service client authorises only
    a seal bound to it, without a PIN."""
    if body.hashes and body.documents:
        raise InvalidRequestError("give documents or hashes, not both")
    if not (body.hashes or body.documents):
        raise InvalidRequestError("give the documents or the hashes the SAD is for")
    binding = body.binding()

    def issue() -> IssuedActivation:
        issued = activation.authorize(
            principal,
            credential_id,
            binding,
            count=body.count or binding.count,
            pin=reveal(body.pin),
            otp=reveal(body.otp),
        )
        return IssuedActivation(
            sad=issued.value,
            credential_id=credential_id,
            count=issued.count,
            expires_at=issued.expires_at,
            expires_in=max(0, int((issued.expires_at - datetime.now(UTC)).total_seconds())),
        )

    response.headers["Cache-Control"] = "no-store"
    return await run_in_threadpool(issue)


# -- one-shot signing ----------------------------------------------------------------------


def form_placement(
    *,
    visible: bool | None,
    field: str | None,
    page: int | None,
    rect: str | None,
    anchor: str | None,
) -> Placement | None:
    """The placement a one-shot request's form fields describe; None for an invisible
    signature."""
    chosen = [
        name for name, value in (("field", field), ("rect", rect), ("anchor", anchor)) if value
    ]
    if len(chosen) > 1:
        raise BadPlacementError(
            f"give one of field, page+rect or anchor, not {' and '.join(chosen)}"
        )
    if page is not None and not (rect or anchor):
        raise BadPlacementError("page goes with rect or anchor")
    if not chosen:
        if visible:
            raise BadPlacementError(
                "a visible signature needs a place: field, page and rect, or anchor"
            )
        return None
    if visible is False:
        raise BadPlacementError(f"{chosen[0]} places a visible signature; visible is false")
    if field:
        return FieldPlacement(name=field)
    if rect:
        if page is None:
            raise BadPlacementError("rect needs the page it is on")
        return RectPlacement(page=page, rect=parse_rect(rect))
    assert anchor is not None
    return AnchorPlacement(text=anchor, page=page)


def _appearance(
    signing: SigningServices,
    authority: Authority,
    pdf: bytes,
    credential_id: int,
    placement: Placement,
    field_name: str,
    level: Level,
) -> VisibleSignature:
    """The credential owner's stamp: an officer's signature image (or a placeholder with
    the name), or for a seal credential the unit's seal image."""
    credential = signing.service.credential(credential_id, level=level)
    if credential.person_id is not None:
        person = authority.person(credential.person_id)
        image = signing.images.get(StampImageKind.OFFICER, person.id)
        name = person.full_name
    else:
        assert credential.unit_id is not None
        unit = authority.unit(credential.unit_id)
        image = signing.images.get(StampImageKind.SEAL, unit.id)
        name = unit.name
    return officer_signature(
        pdf,
        placement,
        signature_png=image,
        officer_name=name,
        field_name=placement.name if isinstance(placement, FieldPlacement) else field_name,
    )


def sign_once(
    signing: SigningServices,
    authority: Authority,
    audit: AuditLog,
    pdf: bytes,
    *,
    credential_id: int,
    activated: Callable[[], Credential],
    level: Level,
    placement: Placement | None,
    actor: Actor,
    request: str | None,
) -> bytes:
    """Check ``pdf``, activate the credential (``activated``), sign, and commit the
    ``document.signed`` event; the signed PDF only once that event is committed. Blocking."""
    settings = signing.settings
    inspect_pdf(pdf, max_size=settings.signing_max_bytes, max_pages=settings.signing_max_pages)
    credential = activated()
    field_name = free_field_name(Document(pdf))
    appearance = (
        None
        if placement is None
        else _appearance(signing, authority, pdf, credential_id, placement, field_name, level)
    )
    signed = signing.service.sign(
        pdf, credential_id, level=level, field_name=field_name, appearance=appearance
    )
    audit.record(
        AuditEvent(
            time=datetime.now(UTC),
            action=Action.DOCUMENT_SIGNED,
            actor=actor,
            outcome=Outcome(success=True),
            subject=Subject(
                document_sha256=hashlib.sha256(signed).hexdigest(),
                certificate_serial=credential.serial,
                key_id=credential.key_id,
                request_id=request,
            ),
            details={
                "credential_id": credential_id,
                "level": level,
                "visible": appearance is not None,
                "input_sha256": hashlib.sha256(pdf).hexdigest(),
                "size": len(signed),
            },
        )
    )
    return signed


@router.post(
    "/sign",
    summary="Sign a PDF and get it back (one-shot, for services)",
    dependencies=SIGN_RATE,
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}, "description": "The signed PDF."}},
)
async def sign_pdf(
    request: Request,
    runtime: RuntimeDep,
    signing: SigningDep,
    activation: ActivationDep,
    pki: PkiDep,
    principal: AuthorisedDep,
    file: Annotated[UploadFile, File(description="The PDF to sign.")],
    credential_id: Annotated[int, Form(ge=1, le=2**62)],
    sad: Annotated[
        SecretStr | None,
        Form(
            min_length=20,
            max_length=128,
            description="Signature activation data authorised for this PDF's SHA-256.",
        ),
    ] = None,
    pin: Annotated[SecretStr | None, Form(min_length=1, max_length=MAX_PIN_INPUT)] = None,
    otp: Annotated[
        SecretStr | None,
        Form(min_length=6, max_length=8, description="The holder's one-time code (pin+otp)."),
    ] = None,
    level: Annotated[Level | None, Form(description="Default: KYSO_SIGNING_LEVEL.")] = None,
    visible: Annotated[bool | None, Form()] = None,
    field: Annotated[str | None, Form(min_length=1, max_length=MAX_FIELD_NAME_LENGTH)] = None,
    page: Annotated[int | None, Form(ge=1, le=MAX_PAGE)] = None,
    rect: Annotated[str | None, Form(max_length=200, description="x1,y1,x2,y2")] = None,
    anchor: Annotated[str | None, Form(min_length=1, max_length=MAX_ANCHOR_LENGTH)] = None,
) -> Response:
    audit = runtime.audit
    if audit is None:
        raise SigningUnavailableError("the audit log is not open; nothing is signed without it")
    placement = form_placement(visible=visible, field=field, page=page, rect=rect, anchor=anchor)
    inline_activation_rate(request, principal, pin=pin, otp=otp)
    pdf = await file.read()
    chosen: Level = level or signing.settings.signing_level
    binding = Binding(hashes=(hashlib.sha256(pdf).digest(),), hash_algorithm="sha256")
    rid = request_id.get()
    signed = await run_in_threadpool(
        lambda: sign_once(
            signing,
            pki.authority,
            audit,
            pdf,
            credential_id=credential_id,
            activated=lambda: activate(
                activation, principal, credential_id, binding, sad=sad, pin=pin, otp=otp
            ),
            level=chosen,
            placement=placement,
            actor=principal.actor(),
            request=rid,
        )
    )
    return Response(
        signed,
        media_type="application/pdf",
        headers={
            "ETag": f'"{hashlib.sha256(signed).hexdigest()}"',
            "Content-Disposition": 'attachment; filename="signed.pdf"',
            "Cache-Control": "no-store",
        },
    )


# -- batches ---------------------------------------------------------------------------------


class BatchItemBody(Body):
    document_id: str = Field(min_length=1, max_length=64)
    placement: PlacementBody | None = None


class NewBatch(Activated):
    action: Literal["sign", "seal"]
    items: list[BatchItemBody] = Field(min_length=1, max_length=MAX_BATCH_ITEMS)


BatchId = Annotated[str, Path(min_length=1, max_length=64)]


@router.post(
    "/batches",
    status_code=202,
    summary="Sign or seal up to 1,000 documents",
    dependencies=SIGN_RATE,
    response_model=dict[str, Any],
)
async def submit_batch(
    request: Request,
    body: NewBatch,
    activation: ActivationDep,
    batches: BatchesDep,
    principal: AuthorisedDep,
) -> JSONResponse:
    inline_activation_rate(request, principal, pin=body.pin, otp=body.otp)
    items = [
        BatchItemRequest(document_id=item.document_id, placement=to_placement(item.placement))
        for item in body.items
    ]
    if body.action == "seal" and any(item.placement for item in items):
        raise InvalidRequestError("a seal batch takes no placements")

    def submit() -> dict[str, Any]:
        binding = Binding(document_ids=tuple(item.document_id for item in items))
        credential = body.activate(activation, principal, binding)
        batch = batches.submit(BatchAction(body.action), credential, items, principal.actor())
        return {"id": batch.id, "status": batch.status.value, "total": batch.total}

    accepted = await run_in_threadpool(submit)
    return JSONResponse(
        accepted, status_code=202, headers={"Location": f"/api/v1/batches/{accepted['id']}"}
    )


@router.get("/batches/{batch_id}", summary="A batch's progress and per-document results")
async def show_batch(batch_id: BatchId, batches: BatchesDep, _caller: CallerDep) -> dict[str, Any]:
    return (await run_in_threadpool(batches.batch, batch_id)).as_dict()
