"""Verification in the service and the CLI: the policy built from the trust store and the
status data of Kyso's own CAs, the pool of isolated workers, the audit event.

The policy's anchors and intermediates come from the trust store; the status of every
certificate Kyso's CAs issued comes from their current CRLs, read from the database (re-signed
in the transaction of every status change), so no verification makes a network round trip
for Kyso's own certificates.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from asn1crypto import x509 as asn1_x509

from audit.events import Action, Actor, AuditEvent, Outcome, Subject
from audit.log import AuditLog
from kyso.errors import KysoError
from kyso.settings import Settings
from kyso.signing import SigningServices
from pki.authority import Authority
from pki.errors import NotFoundError
from pki.store import CredentialKind
from pki.truststore import TrustStoreHolder
from verifier.fetching import FetchPolicy
from verifier.isolation import Outcome as TaskOutcome
from verifier.isolation import VerifierPool
from verifier.limits import MIB, Limits
from verifier.policy import DEFAULT_POLICY_NAME, Policy, default_policy
from verifier.worker import TASK, policy_options

LTV_POLICY_NAME = "kyso-ltv"
POLICIES = (DEFAULT_POLICY_NAME, LTV_POLICY_NAME)
"""The named policies: ``kyso-default`` (status from the document, Kyso's own CA data or an
allowed fetch) and ``kyso-ltv`` (status must be proven by the document itself)."""

INPUT_ERRORS = {
    "verifier.input_too_large": 413,
    "verifier.empty_input": 422,
    "verifier.unreadable_document": 422,
}
"""Worker answers that mean the input is not something to verify: HTTP status each."""

UNAVAILABLE = frozenset(
    {"verifier.busy", "verifier.closed", "verifier.worker_unavailable", "verifier.bad_options"}
)
"""Pool answers that say nothing about the document: try again later."""


MAX_FETCH_HOSTS = 64
"""Most hosts of the default fetch allow-list."""


class VerificationInputError(KysoError):
    """The input cannot be verified at all (too large, not a PDF, encrypted)."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


class VerificationUnavailableError(KysoError):
    code = "kyso.unavailable"


class UnknownPolicyError(KysoError):
    code = "kyso.invalid_request"


@dataclass(frozen=True, kw_only=True)
class Verified:
    """One verification: the JSON report (schema in docs/verifier.md)."""

    report: dict[str, Any]
    """The report; a worker that died or went past a limit gives an INDETERMINATE report
    whose reason names the limit."""


def limits_of(settings: Settings) -> Limits:
    return Limits(
        max_bytes=settings.verify_max_bytes,
        memory_bytes=settings.verify_memory_mb * MIB,
        max_decompressed_bytes=min(256 * MIB, settings.verify_memory_mb * MIB // 2),
        cpu_seconds=settings.verify_cpu_seconds,
        wall_seconds=settings.verify_wall_seconds,
    )


class VerificationService:
    """Verifies untrusted PDFs in isolated workers under a named policy, and audits it.

    The worker pool starts on first use: a service that never verifies never holds the
    worker processes. ``trust`` gives the trust store when it is needed (it holds Kyso's
    root only once ``kyso init`` made it).
    """

    def __init__(
        self,
        *,
        settings: Settings,
        authority: Authority,
        trust: Callable[[], TrustStoreHolder],
        audit: AuditLog | None,
        workers: int | None = None,
    ) -> None:
        self.settings = settings
        self.limits = limits_of(settings)
        self._authority = authority
        self._trust = trust
        self._audit = audit
        self._workers = workers or settings.verify_workers
        self._lock = threading.Lock()
        self._pool: VerifierPool | None = None
        self._crls: tuple[int, tuple[bytes, ...]] | None = None

    def pool(self) -> VerifierPool:
        with self._lock:
            if self._pool is None:
                self._pool = VerifierPool(task=TASK, workers=self._workers, limits=self.limits)
            return self._pool

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def own_crls(self) -> tuple[bytes, ...]:
        """The current CRLs of Kyso's CAs; read again once any status has changed."""
        generation = self._authority.status_generation()
        cached = self._crls
        if cached is not None and cached[0] == generation:
            return cached[1]
        crls = []
        for kind in (CredentialKind.ROOT_CA, CredentialKind.ISSUING_CA):
            try:
                crls.append(self._authority.current_crl(kind))
            except NotFoundError:
                continue  # no hierarchy yet (before ``kyso init``)
        self._crls = (generation, tuple(crls))
        return self._crls[1]

    def fetch_policy(self) -> FetchPolicy:
        """Where the verifier may fetch: ``KYSO_VERIFY_FETCH_ALLOW``, else the endpoints
        the trusted CAs' certificates name. Kyso's own endpoints are left out: the status
        of what its CAs issued is read from its database (:meth:`own_crls`)."""
        if self.settings.verify_fetch_allow is not None:
            return FetchPolicy(allowed=tuple(self.settings.verify_fetch_allow))
        trust = self._trust().current
        own = _host_port(self.settings.base_url)
        hosts = {
            host
            for certificate in (*trust.anchors, *trust.intermediates)
            for host in _endpoint_hosts(certificate)
            if host != own
        }
        return FetchPolicy(allowed=tuple(sorted(hosts))[:MAX_FETCH_HOSTS])

    def policy(self, name: str, *, offline: bool = False) -> Policy:
        if name not in POLICIES:
            raise UnknownPolicyError(f"unknown policy {name!r}; one of {', '.join(POLICIES)}")
        trust = self._trust().current
        anchors = [anchor.dump() for anchor in trust.anchors]
        if not anchors:
            raise VerificationUnavailableError(
                "no trust anchor: run `kyso init` or add one with `kyso pki trust add`"
            )
        require_ltv = name == LTV_POLICY_NAME
        policy = default_policy(
            anchors,
            require_ltv=require_ltv,
            crls=() if require_ltv else self.own_crls(),
            name=name,
        )
        return Policy(
            name=policy.name,
            trust_anchors=policy.trust_anchors,
            other_certificates=tuple(c.dump() for c in trust.intermediates),
            require_ltv=policy.require_ltv,
            crls=policy.crls,
            fetch=None if offline or require_ltv else self.fetch_policy(),
        )

    def verify(
        self,
        data: bytes,
        *,
        policy: str = DEFAULT_POLICY_NAME,
        offline: bool = False,
        thumbnails: bool = False,
        actor: Actor,
        request: str | None = None,
    ) -> Verified:
        """Verify ``data`` and record ``verification.performed``. Blocking (the wait for
        a worker happens in the caller's thread). ``thumbnails``: render the changed pages
        (for the HTML and PDF reports)."""
        chosen = self.policy(policy, offline=offline)
        options = policy_options(chosen) | {"thumbnails": thumbnails}
        outcome = self.pool().submit(data, options)
        try:
            report = _report(outcome, chosen, data)
        except VerificationInputError as ex:
            self._record(data, actor, request, policy=chosen.name, failure=ex.code)
            raise
        self._record(data, actor, request, policy=chosen.name, report=report)
        return Verified(report=report)

    def _record(
        self,
        data: bytes,
        actor: Actor,
        request: str | None,
        *,
        policy: str,
        report: dict[str, Any] | None = None,
        failure: str | None = None,
    ) -> None:
        if self._audit is None:
            return
        details: dict[str, Any] = {"policy": policy, "size": len(data)}
        if report is not None:
            details |= {
                "indication": report["indication"],
                "sub_indication": report.get("sub_indication"),
                "signatures": len(report.get("signatures", [])),
            }
        self._audit.record(
            AuditEvent(
                time=datetime.now(UTC),
                action=Action.VERIFICATION_PERFORMED,
                actor=actor,
                outcome=Outcome(success=failure is None, code=failure),
                subject=Subject(
                    document_sha256=hashlib.sha256(data).hexdigest(), request_id=request
                ),
                details=details,
            )
        )


def _host_port(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    return None if not parts.hostname else f"{parts.hostname}:{port}"


def _endpoint_hosts(certificate: asn1_x509.Certificate) -> list[str]:
    """``host:port`` of the OCSP, CRL and issuer-certificate URLs a CA certificate names."""
    urls = list(certificate.ocsp_urls)
    urls += [point.url for point in certificate.crl_distribution_points if point.url]
    for access in certificate.authority_information_access_value or ():
        if access["access_method"].native == "ca_issuers":
            location = access["access_location"].native
            if isinstance(location, str):
                urls.append(location)
    return [h for h in map(_host_port, urls) if h is not None]


def _report(outcome: TaskOutcome, policy: Policy, data: bytes) -> dict[str, Any]:
    if outcome.ok:
        value = outcome.value
        if not isinstance(value, dict):
            raise VerificationUnavailableError("the verifier worker answered nonsense")
        error = value.get("error")
        if isinstance(error, dict):
            code = str(error.get("code", "verifier.error"))
            raise VerificationInputError(str(error.get("message", "")), code=code)
        return value
    reason = outcome.reason or "verifier.worker_crashed"
    if reason in INPUT_ERRORS:
        raise VerificationInputError(outcome.message, code=reason)
    if reason in UNAVAILABLE:
        raise VerificationUnavailableError(outcome.message)
    # A limit or a dead worker: nothing is proven about the document, which is a verdict.
    return {
        "schema_version": 1,
        "indication": "INDETERMINATE",
        "sub_indication": "GENERIC",
        "reasons": [{"code": reason.removeprefix("verifier."), "text": outcome.message}],
        "policy": policy.name,
        "document_sha256": hashlib.sha256(data).hexdigest(),
        "signatures": [],
    }


REPORT_FORMATS = {
    "json": "application/json",
    "html": "text/html; charset=utf-8",
    "pdf": "application/pdf",
    "xml": "application/xml",
}
"""Report formats and their media types."""

REPORT_FONT = "DejaVuSerif.ttf"
"""The font of PDF reports: the one the stamps use, shipped with the signer."""


def render_report(report: dict[str, Any], fmt: str, *, language: str = "vi") -> bytes:
    """``report`` as ``fmt`` (json, html, pdf or xml); PDF and HTML in ``language``."""
    # The renderers load on first use: the XML schema bindings alone take a third of a
    # second to import, which every CLI command would otherwise pay.
    from verifier.html_report import render_html
    from verifier.pdf_report import render_pdf
    from verifier.xml_report import render_xml

    if fmt == "json":
        return json.dumps(report, ensure_ascii=False, indent=2).encode()
    if fmt == "html":
        return render_html(report, language=language).encode()
    if fmt == "xml":
        return render_xml(report).encode()
    if fmt == "pdf":
        with resources.as_file(resources.files("signer") / "fonts" / REPORT_FONT) as font:
            return render_pdf(report, language=language, font=font)
    raise UnknownPolicyError(f"unknown report format {fmt!r}; one of {', '.join(REPORT_FORMATS)}")


def seal_report(
    signing: SigningServices, audit: AuditLog, pdf: bytes, *, credential_id: int, actor: Actor
) -> bytes:
    """The PDF report sealed (B-LT, invisible) with Kyso's own seal credential, so that the
    report is itself evidence; the use of the key is audited like any seal."""
    sealed = signing.service.sign(pdf, credential_id, level="B-LT")
    audit.record(
        AuditEvent(
            time=datetime.now(UTC),
            action=Action.DOCUMENT_SEALED,
            actor=actor,
            outcome=Outcome(success=True),
            subject=Subject(document_sha256=hashlib.sha256(sealed).hexdigest()),
            details={"credential_id": credential_id, "kind": "verification_report"},
        )
    )
    return sealed
