"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field

from hsm import HsmError
from kyso import db
from kyso.errors import KysoError
from kyso.runtime import Runtime

router = APIRouter(tags=["health"])


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


class Alive(BaseModel):
    status: Literal["ok"]


@router.get("/healthz", summary="The process is alive")
async def healthz() -> Alive:
    return Alive(status="ok")


class Check(BaseModel):
    ok: bool
    code: str | None = Field(None, description="The error code when not ok")
    detail: str


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    checks: dict[Literal["hsm", "database"], Check]


@router.get(
    "/readyz",
    summary="HSM and database are reachable",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready: a check failed"}},
)
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    hsm_check, db_check = await asyncio.gather(_check_hsm(runtime), _check_database(runtime))
    checks = {"hsm": hsm_check, "database": db_check}
    ready = all(c["ok"] for c in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status_code=200 if ready else 503,
    )


async def _check_hsm(runtime: Runtime) -> dict[str, Any]:
    timeout = runtime.hsm.blocking.config.acquire_timeout + 1
    try:
        token = await asyncio.wait_for(runtime.hsm.check(), timeout)
    except HsmError as ex:
        return {"ok": False, "code": ex.code, "detail": ex.message}
    except TimeoutError:
        return {"ok": False, "code": "hsm.unavailable", "detail": "the token did not answer"}
    return {"ok": True, "detail": f"token {token.label!r} ({token.model}, serial {token.serial})"}


async def _check_database(runtime: Runtime) -> dict[str, Any]:
    try:
        detail = await run_in_threadpool(db.check, runtime.engine)
    except KysoError as ex:
        return {"ok": False, "code": ex.code, "detail": ex.message}
    return {"ok": True, "detail": detail}


async def metrics_reader(request: Request, runtime: RuntimeDep) -> None:
    """Who may read the metrics: the matrix's rule for ``GET /metrics``."""
    # Imported here: the authorisation module builds on this one's runtime dependency.
    from kyso.routers.authorise import authorised_principal

    await authorised_principal(request, runtime)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {
            "description": "The Prometheus text format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
    dependencies=[Depends(metrics_reader)],
)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
