"""The JSON report: a stable, documented schema (docs/verifier.md) built from a result."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from verifier.validate import (
    CertificateInfo,
    DocumentResult,
    RevocationInfo,
    SignatureResult,
    TimestampInfo,
)

SCHEMA_VERSION = 1
"""Bumped whenever a field changes meaning or disappears; new fields do not bump it."""


def to_json(result: DocumentResult) -> dict[str, Any]:
    """``result`` as plain JSON types (str, int, bool, None, list, dict)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "indication": result.indication.value,
        "sub_indication": _sub(result.sub_indication),
        "reasons": [{"code": r.code, "text": r.text} for r in result.reasons],
        "policy": result.policy,
        "document_sha256": result.document_sha256,
        "signatures": [_signature(s) for s in result.signatures],
    }


def _signature(signature: SignatureResult) -> dict[str, Any]:
    certificate = signature.certificate
    return {
        "field": signature.field,
        "kind": signature.kind,
        "signer": certificate.common_name if certificate else None,
        "organisation": certificate.organisation if certificate else None,
        "unit": certificate.unit if certificate else None,
        "indication": signature.indication.value,
        "sub_indication": _sub(signature.sub_indication),
        "reasons": [{"code": r.code, "text": r.text} for r in signature.reasons],
        "signing_time": _time(signature.claimed_signing_time),
        "timestamp": _timestamp(signature.timestamp),
        "modification_level": signature.modification_level,
        "coverage": signature.coverage,
        "revision": signature.revision,
        "certificate": _certificate(certificate),
        "revocation": _revocation(signature.revocation),
    }


def _sub(sub: object) -> str | None:
    return None if sub is None else str(getattr(sub, "value", sub))


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def _timestamp(token: TimestampInfo | None) -> dict[str, Any] | None:
    if token is None:
        return None
    return {"time": _time(token.time), "authority": token.authority, "passed": token.passed}


def _certificate(certificate: CertificateInfo | None) -> dict[str, Any] | None:
    if certificate is None:
        return None
    return {
        "subject": certificate.subject,
        "issuer": certificate.issuer,
        # A decimal string: serials are up to 160 bits, beyond what JSON numbers keep exactly.
        "serial": str(certificate.serial),
        "not_before": _time(certificate.not_before),
        "not_after": _time(certificate.not_after),
    }


def _revocation(revocation: RevocationInfo | None) -> dict[str, Any] | None:
    if revocation is None:
        return None
    return {
        "source": revocation.source,
        "kind": revocation.kind,
        "status": revocation.status,
        "time": _time(revocation.time),
    }
