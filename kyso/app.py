"""FastAPI application factory."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from audit import AuditError
from hsm import HsmError, KeyInfo, SessionPool
from kyso import __version__, db
from kyso.audit_service import (
    adopt_audit_key,
    checkpoint_forever,
    open_audit_log,
    publish,
    sequence_forever,
)
from kyso.errors import KysoError
from kyso.logs import configure_logging, new_request_id, request_id
from kyso.pki_service import PkiServices, make_authority, watch_expiry
from kyso.routers import admin as admin_routes
from kyso.routers import audit as audit_routes
from kyso.routers import health
from kyso.routers import pki as pki_routes
from kyso.runtime import Runtime, report_key_problems
from kyso.settings import Settings, load_settings
from pki.errors import PkiError

log = logging.getLogger("kyso")
access_log = logging.getLogger("kyso.access")

_STATUS = {
    "hsm.key_not_found": 404,
    "hsm.key_refused": 409,
    "hsm.invalid_request": 422,
    "hsm.unsupported": 422,
    "hsm.operation_failed": 502,
    "audit.forbidden": 403,
    "audit.log.bad_range": 422,
    "audit.log.beyond_size": 422,
    "audit.inconsistent": 500,
    "kyso.forbidden": 403,
    "kyso.body_too_large": 413,
    "pki.not_found": 404,
    "pki.conflict": 409,
    "pki.credential_unusable": 409,
    "pki.pin_invalid": 403,
    "pki.pin_locked": 423,
    "pki.pin_not_set": 409,
    "pki.pin_required": 400,
    "pki.signature_check_failed": 502,
    "pki.unavailable": 503,
}
"""HTTP status per stable error code, for every error root; ``audit.proof.*`` (a request
the tree cannot answer) and the other ``pki.*`` codes (bad input: names, CCCD, CSR,
certificates, untrusted chains, a PIN against the policy) are 422, and anything else means
503 (try later). A signing PIN: missing 400, wrong 403, locked 423 (until an administrator
unlocks it), none set for the credential 409."""


def status_for(code: str) -> int:
    if code in _STATUS:
        return _STATUS[code]
    if code.startswith(("audit.proof.", "pki.")):
        return 422
    return 503


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    settings.apply_softhsm_conf()
    configure_logging(settings.log_level, settings.log_format)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = db.make_engine(settings.sqlalchemy_url)
        if settings.migrate_on_start:
            await run_in_threadpool(db.upgrade, engine)
        pool = SessionPool(settings.hsm_config())
        keys: list[KeyInfo] | None = None
        try:
            await pool.open()
            # Listed once: for the key audit and to find the audit checkpoint key.
            keys = await pool.list_keys()
            report_key_problems(keys)
        except HsmError as ex:
            # Stay up with /readyz red: the pool retries on the next readiness probe.
            log.error("HSM not ready at start-up: %s", ex.message, extra={"code": ex.code})
        audit_log, vkey = open_audit_log(settings, engine, pool.blocking, keys)
        authority = make_authority(settings, engine, pool.blocking)
        app.state.runtime = Runtime(
            settings=settings,
            engine=engine,
            hsm=pool,
            audit=audit_log,
            audit_vkey=vkey,
            pki=PkiServices(authority, settings),
        )

        def show_audit_vkey(found: str) -> None:
            # The runtime stays the one holder of the verifier key /audit/public-key serves.
            app.state.runtime = dataclasses.replace(app.state.runtime, audit_vkey=found)

        # Without its key at start-up, the log looks for it at every checkpoint interval.
        can_sign = functools.partial(adopt_audit_key, audit_log, settings, pool, show_audit_vkey)
        tasks = [
            asyncio.create_task(sequence_forever(audit_log, settings.audit_sequence_interval)),
            asyncio.create_task(
                checkpoint_forever(audit_log, settings.audit_checkpoint_interval, can_sign)
            ),
            asyncio.create_task(
                watch_expiry(authority, timedelta(days=settings.pki_expiry_warning_days))
            ),
        ]
        log.info(
            "Kyso started",
            extra={"database": db.describe_url(settings.sqlalchemy_url), "version": __version__},
        )
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # Sign what was admitted before stopping, so no event waits for the next start.
            if audit_log.signer is not None:
                await publish(audit_log)
            audit_log.close()
            await pool.close()
            engine.dispose()

    app = FastAPI(
        title="Kyso",
        version=__version__,
        description="Ký số: HSM-backed signing, PKI, verification and audit core.",
        lifespan=lifespan,
    )

    @app.middleware("http")
    async def with_request_id(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        rid = new_request_id(request.headers.get("x-request-id"))
        token = request_id.set(rid)
        start = time.perf_counter()
        try:
            try:
                response = await call_next(request)
            except Exception:
                # A bug, not bad input: answer in the usual error shape with the request id
                # so the log line can be found, and never leak the exception text.
                log.exception("unhandled error", extra={"path": request.url.path})
                response = JSONResponse(
                    error_body("kyso.internal", "internal error; quote the request id"),
                    status_code=500,
                )
            response.headers["X-Request-ID"] = rid
            access_log.info(
                "%s %s %d",
                request.method,
                request.url.path,
                response.status_code,
                extra={
                    "method": request.method,
                    "path": request.url.path,
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - start) * 1000, 2),
                },
            )
            return response
        finally:
            request_id.reset(token)

    @app.exception_handler(HsmError)
    async def hsm_error(_request: Request, ex: HsmError) -> JSONResponse:
        return JSONResponse(error_body(ex.code, ex.message), status_code=status_for(ex.code))

    @app.exception_handler(KysoError)
    async def kyso_error(_request: Request, ex: KysoError) -> JSONResponse:
        log.error("%s", ex.message, extra={"code": ex.code})
        return JSONResponse(error_body(ex.code, ex.message), status_code=status_for(ex.code))

    @app.exception_handler(PkiError)
    async def pki_error(_request: Request, ex: PkiError) -> JSONResponse:
        return JSONResponse(error_body(ex.code, ex.message), status_code=status_for(ex.code))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, ex: RequestValidationError) -> JSONResponse:
        # FastAPI's answer, minus the "input" it echoes: a request body may hold a PIN.
        errors = [{k: v for k, v in error.items() if k != "input"} for error in ex.errors()]
        return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)

    @app.exception_handler(AuditError)
    async def audit_error(_request: Request, ex: AuditError) -> JSONResponse:
        return JSONResponse(error_body(ex.code, ex.message), status_code=status_for(ex.code))

    app.include_router(health.router)
    app.include_router(audit_routes.router)
    app.include_router(pki_routes.router)
    app.include_router(admin_routes.router)
    return app
