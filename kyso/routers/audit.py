"""Read-only access to the audit log: checkpoints, entries, proofs, the verifier key.

Until access control exists these answer loopback clients only (the auditor role will
replace that check); nothing here changes the log.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field

from audit.log import MAX_ENTRIES_PAGE, AuditLog
from kyso.errors import KysoError
from kyso.routers.authorise import authorised_principal
from kyso.routers.health import RuntimeDep

MAX_INDEX = 2**62


class AuditUnavailableError(KysoError):
    code = "audit.unavailable"


def get_log(runtime: RuntimeDep) -> AuditLog:
    if runtime.audit is None:
        raise AuditUnavailableError("the audit log is not available")
    return runtime.audit


router = APIRouter(prefix="/audit", tags=["audit"], dependencies=[Depends(authorised_principal)])
LogDep = Annotated[AuditLog, Depends(get_log)]
Index = Annotated[int, Query(ge=0, le=MAX_INDEX)]


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


class Entry(BaseModel):
    index: int
    leaf: str = Field(description="The leaf bytes as UTF-8 text (the canonical event JSON)")
    leaf_b64: str


class Entries(BaseModel):
    entries: list[Entry]


class InclusionProof(BaseModel):
    index: int
    size: int
    hashes: list[str] = Field(description="Base64 hashes of the audit path")


class ConsistencyProof(BaseModel):
    first: int
    second: int
    hashes: list[str] = Field(description="Base64 hashes of the proof")


_TEXT = {"text/plain": {"schema": {"type": "string"}}}


@router.get(
    "/checkpoint",
    response_class=PlainTextResponse,
    summary="Latest signed checkpoint",
    responses={
        200: {"description": "The signed note", "content": _TEXT},
        404: {"description": "No checkpoint has been published yet", "content": _TEXT},
    },
)
async def checkpoint(audit: LogDep) -> PlainTextResponse:
    latest = await run_in_threadpool(audit.latest_checkpoint)
    if latest is None:
        return PlainTextResponse("no checkpoint has been published yet\n", status_code=404)
    return PlainTextResponse(latest.note, media_type="text/plain; charset=utf-8")


@router.get(
    "/entries", summary="Entries [start, end) with their leaf bytes", response_model=Entries
)
async def entries(
    audit: LogDep, start: Index, end: Annotated[int | None, Query(ge=1, le=MAX_INDEX)] = None
) -> dict[str, Any]:
    stop = end if end is not None else start + MAX_ENTRIES_PAGE
    if end is None:
        stop = min(stop, await run_in_threadpool(audit.size))
    found = await run_in_threadpool(audit.entries, start, stop)
    return {
        "entries": [
            {"index": e.index, "leaf": e.leaf.decode("utf-8"), "leaf_b64": _b64(e.leaf)}
            for e in found
        ]
    }


@router.get(
    "/proof/inclusion",
    summary="Inclusion proof by index or by leaf hash",
    response_model=InclusionProof,
)
async def inclusion(
    audit: LogDep,
    size: Annotated[int, Query(ge=1, le=MAX_INDEX)],
    index: Annotated[int | None, Query(ge=0, le=MAX_INDEX)] = None,
    leaf_hash: Annotated[str | None, Query(pattern="^[0-9a-fA-F]{64}$")] = None,
) -> JSONResponse:
    if (index is None) == (leaf_hash is None):
        return JSONResponse(
            {"error": {"code": "audit.bad_request", "message": "give index or leaf_hash"}},
            status_code=422,
        )
    if index is None:
        assert leaf_hash is not None
        index = await run_in_threadpool(audit.leaf_index, bytes.fromhex(leaf_hash))
        if index is None:
            return JSONResponse(
                {"error": {"code": "audit.not_found", "message": "no entry has that leaf hash"}},
                status_code=404,
            )
    proof = await run_in_threadpool(audit.inclusion_proof, index, size)
    return JSONResponse(
        {"index": index, "size": size, "hashes": [_b64(h) for h in proof]},
    )


@router.get(
    "/proof/consistency",
    summary="Consistency proof between two tree sizes",
    response_model=ConsistencyProof,
)
async def consistency(
    audit: LogDep,
    first: Annotated[int, Query(ge=1, le=MAX_INDEX)],
    second: Annotated[int, Query(ge=1, le=MAX_INDEX)],
) -> dict[str, Any]:
    proof = await run_in_threadpool(audit.consistency_proof, first, second)
    return {"first": first, "second": second, "hashes": [_b64(h) for h in proof]}


@router.get(
    "/public-key",
    response_class=PlainTextResponse,
    summary="Checkpoint verifier key",
    responses={200: {"description": "The note verifier key", "content": _TEXT}},
)
async def public_key(runtime: RuntimeDep) -> PlainTextResponse:
    if runtime.audit_vkey is None:
        raise AuditUnavailableError("the audit checkpoint key is not available; run 'kyso init'")
    return PlainTextResponse(runtime.audit_vkey + "\n")
