"""What a verifier worker process runs: one untrusted PDF in, its JSON report out.

The policy crosses the process boundary as plain data (:func:`policy_options`), and the
answer comes back as the report's JSON, so nothing the untrusted document influences is
ever unpickled by the service. Input the verifier cannot look at is an answer too, with
the error's stable code, not a crash of the worker.
"""

from __future__ import annotations

import base64
from typing import Any

from verifier.errors import VerifierError
from verifier.limits import active_limits
from verifier.policy import Policy
from verifier.report import to_json
from verifier.validate import verify_pdf

TASK = "verifier.worker:verify_in_worker"
"""The task path to give :class:`verifier.isolation.VerifierPool`."""


def policy_options(policy: Policy) -> dict[str, Any]:
    """``policy`` as the JSON-compatible options of :func:`verify_in_worker`."""
    return {
        "policy": policy.name,
        "anchors": [base64.b64encode(der).decode("ascii") for der in policy.trust_anchors],
        "others": [base64.b64encode(der).decode("ascii") for der in policy.other_certificates],
        "require_ltv": policy.require_ltv,
    }


def verify_in_worker(data: bytes, options: dict[str, Any]) -> dict[str, Any]:
    """The report of ``data`` under the policy in ``options``, or ``{"error": {code,
    message}}`` when the input cannot be verified at all (not a PDF, damaged, too large)."""
    try:
        policy = Policy(
            name=str(options["policy"]),
            trust_anchors=tuple(base64.b64decode(a) for a in options["anchors"]),
            other_certificates=tuple(base64.b64decode(a) for a in options.get("others", ())),
            require_ltv=bool(options.get("require_ltv", False)),
        )
        return to_json(verify_pdf(data, policy, max_bytes=active_limits().max_bytes))
    except VerifierError as ex:
        return {"error": {"code": ex.code, "message": ex.message}}
