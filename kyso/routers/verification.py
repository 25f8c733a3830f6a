"""``POST /api/v1/verify``: an untrusted signed PDF in, its verification report out, as
JSON, HTML, PDF (sealed by Kyso's own seal when configured) or the ETSI TS 119 102-2 XML,
chosen by ``Accept``.

The document is parsed only in the verifier's isolated workers. Until access control exists
(issue 7) the route answers this machine only, like the signing routes.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Form, Request, Response, UploadFile
from fastapi.concurrency import run_in_threadpool

from kyso.logs import request_id
from kyso.routers.health import RuntimeDep
from kyso.routers.signing import CallerDep
from kyso.verification import (
    POLICIES,
    REPORT_FORMATS,
    VerificationService,
    VerificationUnavailableError,
    render_report,
    seal_report,
)
from verifier.policy import DEFAULT_POLICY_NAME

router = APIRouter(prefix="/api/v1", tags=["verification"])

_ACCEPTED = {
    "application/json": "json",
    "text/html": "html",
    "application/pdf": "pdf",
    "application/xml": "xml",
    "text/xml": "xml",
}


def get_verification(runtime: RuntimeDep) -> VerificationService:
    if runtime.verification is None:
        raise VerificationUnavailableError("verification is not available in this process")
    return runtime.verification


VerificationDep = Annotated[VerificationService, Depends(get_verification)]


def report_format(accept: str | None) -> str:
    """The first format ``accept`` names that Kyso writes; JSON when it names none (``*/*``,
    missing). Quality values are honoured by order of preference."""
    if not accept:
        return "json"
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept.split(",")[:32]):
        media, _, parameters = part.strip().partition(";")
        quality = 1.0
        for parameter in parameters.split(";"):
            name, _, value = parameter.strip().partition("=")
            if name == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        fmt = _ACCEPTED.get(media.strip().lower())
        if fmt is not None and quality > 0:
            ranked.append((-quality, position, fmt))
    return min(ranked)[2] if ranked else "json"


@router.post(
    "/verify",
    summary="Verify a signed PDF; the report as JSON, HTML, PDF or ETSI XML (by Accept)",
    response_class=Response,
    responses={
        200: {
            "description": "The verification report (the verdict is inside: a failed or "
            "indeterminate document is still a 200).",
            "content": {media: {} for media in REPORT_FORMATS.values()},
        },
        413: {"description": "The PDF is larger than KYSO_VERIFY_MAX_BYTES."},
        422: {"description": "Not a PDF the verifier can read (damaged, encrypted, empty)."},
        503: {"description": "Every verifier worker is busy; try again."},
    },
)
async def verify(
    request: Request,
    runtime: RuntimeDep,
    verification: VerificationDep,
    actor: CallerDep,
    file: Annotated[UploadFile, File(description="The signed PDF.")],
    policy: Annotated[
        Literal["kyso-default", "kyso-ltv"], Form(description=f"One of {', '.join(POLICIES)}.")
    ] = DEFAULT_POLICY_NAME,  # type: ignore[assignment]
    offline: Annotated[bool, Form(description="Fetch nothing, not even allowed hosts.")] = False,
    lang: Annotated[Literal["vi", "en"], Form(description="HTML and PDF language.")] = "vi",
) -> Response:
    fmt = report_format(request.headers.get("accept"))
    data = await file.read()
    rid = request_id.get()
    verified = await run_in_threadpool(
        lambda: verification.verify(
            data,
            policy=policy,
            offline=offline,
            thumbnails=fmt in ("html", "pdf"),
            actor=actor,
            request=rid,
        )
    )
    body = await run_in_threadpool(lambda: render_report(verified.report, fmt, language=lang))
    credential = runtime.settings.report_seal_credential
    if fmt == "pdf" and credential is not None:
        signing, audit = runtime.signing, runtime.audit
        if signing is None or audit is None:
            raise VerificationUnavailableError("the report seal is configured but signing is not")
        body = await run_in_threadpool(
            lambda: seal_report(signing, audit, body, credential_id=credential, actor=actor)
        )
    return Response(
        body,
        media_type=REPORT_FORMATS[fmt],
        headers={
            "X-Kyso-Indication": verified.report["indication"],
            "Vary": "Accept",
            "Cache-Control": "no-store",
        },
    )
