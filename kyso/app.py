"""FastAPI application factory."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta

from fastapi import FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from audit import AuditError
from hsm import HsmError, KeyInfo, SessionPool
from kyso import __version__, db
from kyso.access.activation import SignatureActivation
from kyso.access.limits import Limit, RateLimitedError, RateLimiter
from kyso.access.store import AccessStore
from kyso.access.tokens import HsmSealer, TokenIssuer, find_token_key
from kyso.audit_service import (
    adopt_audit_key,
    checkpoint_forever,
    open_audit_log,
    publish,
    sequence_forever,
)
from kyso.csc import CscService
from kyso.errors import KysoError
from kyso.logs import configure_logging, new_request_id, request_id
from kyso.openapi import install as install_openapi
from kyso.pki_service import PkiServices, make_authority, watch_expiry
from kyso.routers import accounts as account_routes
from kyso.routers import admin as admin_routes
from kyso.routers import audit as audit_routes
from kyso.routers import auth as auth_routes
from kyso.routers import csc as csc_routes
from kyso.routers import documents as document_routes
from kyso.routers import health
from kyso.routers import pki as pki_routes
from kyso.routers import signing as signing_routes
from kyso.routers import verification as verification_routes
from kyso.runtime import Runtime, report_key_problems
from kyso.settings import Settings, load_settings
from kyso.signing import make_signing
from kyso.verification import VerificationService
from pki.errors import PkiError
from signer.batches import DEFAULT_LEASE, BatchRunner
from signer.errors import SignerError
from signer.stamps import MAX_PNG_BYTES

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
    "kyso.invalid_request": 422,
    # A document handed in for verification that is not one to verify.
    "verifier.input_too_large": 413,
    "verifier.empty_input": 422,
    "verifier.unreadable_document": 422,
    "kyso.unsupported_media_type": 415,
    # The document to sign, as uploaded: too big, or not a PDF Kyso signs.
    "signer.too_large": 413,
    "signer.blob_too_large": 413,
    "signer.not_pdf": 422,
    "signer.damaged_pdf": 422,
    "signer.encrypted_pdf": 422,
    "signer.invalid_document": 422,
    "signer.too_many_pages": 422,
    # The request: where to sign, with what, in which order.
    "signer.field_not_found": 422,
    "signer.anchor_not_found": 422,
    "signer.bad_placement": 422,
    "signer.bad_image": 422,
    "signer.bad_stamp_text": 422,
    "signer.bad_level": 422,
    "signer.invalid_request": 422,
    "access.invalid_login": 401,
    "access.invalid_client": 401,
    "access.invalid_token": 401,
    "access.invalid_scope": 400,
    "access.csrf": 403,
    "access.forbidden": 403,
    "access.not_found": 404,
    "access.conflict": 409,
    "access.invalid_input": 422,
    "access.sad_refused": 403,
    "access.otp_invalid": 403,
    "access.rate_limited": 429,
    "signer.unknown_document_type": 422,
    "signer.document_not_found": 404,
    "signer.batch_not_found": 404,
    "signer.invalid_state": 409,
    "signer.wrong_credential": 409,
    "signer.unsupported_credential": 409,
    "signer.ltv_unavailable": 409,
    "signer.idempotency_conflict": 409,
    # Kyso's own services or storage: try again later.
    "signer.timestamp_failed": 502,
    "signer.busy": 503,
    "signer.storage": 503,
    "signer.blob_storage": 503,
    # Kyso's own fault (a stored revision lost or altered, a signing that rewrote the PDF,
    # a level set up without its timestamper): an operator must look.
    "signer.blob_not_found": 500,
    "signer.blob_corrupt": 500,
    "signer.blob_bad_name": 500,
    "signer.not_incremental": 500,
    "signer.timestamper_required": 500,
    "signer.validation_data_required": 500,
}
"""HTTP status per stable error code, for every error root; ``audit.proof.*`` (a request
the tree cannot answer) and the other ``pki.*`` codes (bad input: names, CCCD, CSR,
certificates, untrusted chains, a PIN against the policy) are 422, and anything else means
503 (try later). A signing PIN: missing 400, wrong 403, locked 423 (until an administrator
unlocks it), none set for the credential 409. Every ``signer.*`` code is listed: bad input
is a 4xx, a 5xx is Kyso's (502/503: try again; 500: an operator must look)."""


async def checkpoint_wal_forever(engine: Engine, interval: float = 1.0) -> None:
    """SQLite: move the write-ahead log into the database off the request path (see
    :func:`kyso.db.make_engine`)."""
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(db.checkpoint_wal, engine)
        except SQLAlchemyError as ex:
            log.warning("SQLite WAL checkpoint failed: %s", type(ex).__name__)


def rate_limiter(settings: Settings) -> RateLimiter:
    return RateLimiter(
        {
            "sign_in": Limit(
                per_minute=settings.rate_login_per_minute, burst=settings.rate_login_per_minute
            ),
            "authorize": Limit(
                per_minute=settings.rate_authorize_per_minute,
                burst=settings.rate_authorize_per_minute,
            ),
            "sign": Limit(
                per_minute=settings.rate_sign_per_minute,
                burst=max(1, settings.rate_sign_per_minute // 3),
            ),
        }
    )


_DOCS = ("/docs", "/redoc", "/openapi.json")
_API_CSP = "default-src 'none'; frame-ancestors 'none'"
_PAGE_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; frame-ancestors 'none'"


def secure_headers(response: Response, path: str, *, https: bool) -> None:
    """The headers every answer carries: no sniffing, no framing, no referrer, a content
    security policy that lets Kyso's own HTML reports show their inline styles and images
    and nothing else (the interactive API docs, which load their scripts, are left out)."""
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    if not path.startswith(_DOCS):
        html = headers.get("content-type", "").startswith("text/html")
        headers.setdefault("Content-Security-Policy", _PAGE_CSP if html else _API_CSP)
    if https:
        headers.setdefault("Strict-Transport-Security", "max-age=31536000")


def status_for(code: str) -> int:
    if code in _STATUS:
        return _STATUS[code]
    if code.startswith(("audit.proof.", "pki.")):
        return 422
    return 503


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


FORM_OVERHEAD = 64 * 1024
"""Bytes a multipart upload may add to its PDF (boundaries, part headers, form fields)."""

API_BODY_LIMIT = 2 * 1024 * 1024
"""Largest body of any other ``/api/v1`` request (JSON: at most a certificate chain or a
batch of 1,000 documents)."""

CSC_BODY_LIMIT = 1024 * 1024
"""Largest body of a CSC request (JSON: at most 100 hashes and a few fields)."""

CSC_DOCUMENTS_BODY_LIMIT = 64 * 1024 * 1024
"""Largest body of a CSC v2 ``signatures/signDoc`` request (base64 PDFs)."""

TOKEN_BODY_LIMIT = 4 * 1024
"""Largest body of an OAuth2 token request (a few short form fields)."""

_PDF_UPLOADS = frozenset({"/api/v1/documents", "/api/v1/sign"})
_IMAGE_UPLOAD = re.compile(r"/api/v1/(people/[^/]+/signature-image|units/[^/]+/seal-image)")
_NO_BODY = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclasses.dataclass(frozen=True, kw_only=True)
class BodyLimit:
    """How much of a request body a route reads, and what it says when there is more."""

    size: int
    """Bytes."""
    code: str
    """Error code of the 413 answer."""
    message: str
    """Its message, naming the limit."""


def body_limit(settings: Settings, method: str, path: str) -> BodyLimit | None:
    """The bound on the body of a request to ``/api/v1`` or ``/oauth/token``; None for other
    paths (the PKI protocol routes bound their own bodies) and for methods without a body."""
    if method in _NO_BODY:
        return None
    if path.startswith("/csc/"):
        size = CSC_DOCUMENTS_BODY_LIMIT if path.endswith("/signDoc") else CSC_BODY_LIMIT
        return BodyLimit(
            size=size,
            code="kyso.body_too_large",
            message=f"a request body may have at most {size} bytes here",
        )
    if path == "/oauth/token":
        return BodyLimit(
            size=TOKEN_BODY_LIMIT,
            code="kyso.body_too_large",
            message=f"a token request may have at most {TOKEN_BODY_LIMIT} bytes",
        )
    if not path.startswith("/api/v1/"):
        return None
    if path == "/api/v1/verify":
        limit = settings.verify_max_bytes
        return BodyLimit(
            size=limit + FORM_OVERHEAD,
            code="verifier.input_too_large",
            message=f"the upload is too large: a PDF may have at most {limit} bytes "
            "(KYSO_VERIFY_MAX_BYTES)",
        )
    if path in _PDF_UPLOADS:
        limit = settings.signing_max_bytes
        return BodyLimit(
            size=limit + FORM_OVERHEAD,
            code="signer.too_large",
            message=f"the upload is too large: a PDF may have at most {limit} bytes "
            "(KYSO_SIGNING_MAX_BYTES)",
        )
    if _IMAGE_UPLOAD.fullmatch(path):
        return BodyLimit(
            size=MAX_PNG_BYTES,
            code="kyso.body_too_large",
            message=f"an image may have at most {MAX_PNG_BYTES} bytes",
        )
    return BodyLimit(
        size=API_BODY_LIMIT,
        code="kyso.body_too_large",
        message=f"a request body may have at most {API_BODY_LIMIT} bytes",
    )


class BodyLimitMiddleware:
    """Reads a request body up to its :func:`body_limit` before any route sees it, and
    answers 413 beyond it — with a declared ``Content-Length`` before reading anything.
    FastAPI parses JSON and multipart bodies before a route's code runs, so a route cannot
    bound them itself."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self._app = app
        self._settings = settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        limit = body_limit(self._settings, scope["method"], scope["path"])
        if limit is None:
            await self._app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit.size:
            await self._refuse(limit, scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit.size:
                await self._refuse(limit, scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self._app(scope, replay, send)

    @staticmethod
    async def _refuse(limit: BodyLimit, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse(error_body(limit.code, limit.message), status_code=413)
        await response(scope, receive, send)


async def resume_batches_forever(runner: BatchRunner, interval: float) -> None:
    """Pick up batches left running by a process that stopped (now, then every
    ``interval`` seconds: another replica may stop at any time)."""
    while True:
        try:
            await asyncio.to_thread(runner.resume)
        except SignerError as ex:
            log.warning("resuming batches failed: %s", ex.message, extra={"code": ex.code})
        await asyncio.sleep(interval)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    settings.apply_softhsm_conf()
    configure_logging(settings.log_level, settings.log_format)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = db.make_engine(settings.sqlalchemy_url, background_wal_checkpoints=True)
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
        pki = PkiServices(authority, settings)
        signing = make_signing(settings, engine, pool.blocking, pki)
        batches = BatchRunner(engine=engine, registry=signing.registry)
        verification = VerificationService(
            settings=settings, authority=authority, trust=pki.trust, audit=audit_log
        )
        access = AccessStore(engine, sealer=HsmSealer(pool.blocking))
        activation = SignatureActivation(engine=engine, authority=authority, access=access)
        token_key = find_token_key(keys or [])
        access_tokens = (
            None
            if token_key is None
            else TokenIssuer.on_hsm(
                pool.blocking,
                token_key,
                issuer=settings.base_url,
                lifetime=timedelta(seconds=settings.access_token_seconds),
            )
        )
        app.state.runtime = Runtime(
            settings=settings,
            engine=engine,
            hsm=pool,
            audit=audit_log,
            audit_vkey=vkey,
            pki=pki,
            signing=signing,
            batches=batches,
            verification=verification,
            access=access,
            access_tokens=access_tokens,
            activation=activation,
            limits=rate_limiter(settings),
            csc=CscService(
                access=access,
                activation=activation,
                authority=authority,
                pool=pool.blocking,
                signer=signing.service,
            ),
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
            asyncio.create_task(resume_batches_forever(batches, DEFAULT_LEASE / 2)),
        ]
        if engine.dialect.name == "sqlite":
            tasks.append(asyncio.create_task(checkpoint_wal_forever(engine)))
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
            # Each batch worker finishes the item in hand; the next start resumes the rest.
            await run_in_threadpool(batches.close)
            await run_in_threadpool(verification.close)
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

    # Added first, so that it runs inside the request-id middleware: a 413 is logged too.
    app.add_middleware(BodyLimitMiddleware, settings=settings)
    if settings.cors_origins:
        # Closed unless configured: only the named origins, no cookies across origins.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"],
            allow_credentials=False,
            max_age=600,
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
            secure_headers(
                response, request.url.path, https=settings.base_url.startswith("https://")
            )
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
        status = status_for(ex.code)
        # A caller's mistake is not the service's error.
        log.log(logging.ERROR if status >= 500 else logging.INFO, "%s", ex.message,
                extra={"code": ex.code})  # fmt: skip
        headers = {"WWW-Authenticate": 'Bearer realm="kyso"'} if status == 401 else None
        if isinstance(ex, RateLimitedError):
            headers = {"Retry-After": str(ex.retry_after)}
        return JSONResponse(error_body(ex.code, ex.message), status_code=status, headers=headers)

    @app.exception_handler(PkiError)
    async def pki_error(_request: Request, ex: PkiError) -> JSONResponse:
        return JSONResponse(error_body(ex.code, ex.message), status_code=status_for(ex.code))

    @app.exception_handler(SignerError)
    async def signer_error(_request: Request, ex: SignerError) -> JSONResponse:
        status = status_for(ex.code)
        if status >= 500:
            log.error("%s", ex.message, extra={"code": ex.code})
        return JSONResponse(error_body(ex.code, ex.message), status_code=status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, ex: RequestValidationError) -> JSONResponse:
        # FastAPI's answer, minus the "input" it echoes: a request body may hold a PIN.
        errors = [{k: v for k, v in error.items() if k != "input"} for error in ex.errors()]
        return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def no_route(request: Request, ex: StarletteHTTPException) -> Response:
        # A path no route matches (an id with a "/" in it, too) or a method it does not
        # take: Kyso's error form, like every other refusal.
        if ex.status_code in (404, 405):
            code = "kyso.not_found" if ex.status_code == 404 else "kyso.method_not_allowed"
            return JSONResponse(
                error_body(code, str(ex.detail)), status_code=ex.status_code, headers=ex.headers
            )
        return await http_exception_handler(request, ex)

    @app.exception_handler(AuditError)
    async def audit_error(_request: Request, ex: AuditError) -> JSONResponse:
        return JSONResponse(error_body(ex.code, ex.message), status_code=status_for(ex.code))

    app.include_router(health.router)
    app.include_router(auth_routes.router)
    app.include_router(csc_routes.v1)
    app.include_router(csc_routes.v2)
    app.include_router(audit_routes.router)
    app.include_router(pki_routes.router)
    app.include_router(admin_routes.router)
    app.include_router(account_routes.router)
    app.include_router(document_routes.router)
    app.include_router(signing_routes.router)
    app.include_router(verification_routes.router)
    install_openapi(app, lambda method, path: body_limit(settings, method, path) is not None)
    return app
