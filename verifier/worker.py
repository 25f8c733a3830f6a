"""What a verifier worker process runs: one untrusted PDF in, its JSON report out.

The policy crosses the process boundary as plain data (:func:`policy_options`), and the
answer comes back as the report's JSON, so nothing the untrusted document influences is
ever unpickled by the service. Input the verifier cannot look at is an answer too, with
the error's stable code, not a crash of the worker.
"""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from verifier import accelerate
from verifier.errors import VerifierError
from verifier.fetching import FetchPolicy
from verifier.limits import LimitExceededError, active_limits
from verifier.parsing import install_parse_guards, open_reader
from verifier.policy import Policy
from verifier.report import to_json
from verifier.revisions import describe_reader_revisions
from verifier.validate import verify_pdf

TASK = "verifier.worker:verify_in_worker"
"""The task path to give :class:`verifier.isolation.VerifierPool`."""


def policy_options(policy: Policy) -> dict[str, Any]:
    """``policy`` as the JSON-compatible options of :func:`verify_in_worker`."""
    return {
        "policy": policy.name,
        "anchors": _encode(policy.trust_anchors),
        "others": _encode(policy.other_certificates),
        "crls": _encode(policy.crls),
        "require_ltv": policy.require_ltv,
        "fetch": None if policy.fetch is None else policy.fetch.to_options(),
    }


def verify_in_worker(data: bytes, options: dict[str, Any]) -> dict[str, Any]:
    """The report of ``data`` under the policy in ``options``, or ``{"error": {code,
    message}}`` when the input cannot be verified at all (not a PDF, damaged, too large).

    With the report come ``verified_at`` and, unless ``options["revisions"]`` is false,
    the ``revisions`` list (with page thumbnails when ``options["thumbnails"]``): they are
    made here because only a worker may parse or render the untrusted document."""
    try:
        policy = _policy(json.dumps(_policy_part(options), sort_keys=True))
        limits = active_limits()
        install_parse_guards(limits.max_depth)
        accelerate.install()
        report = to_json(verify_pdf(data, policy, limits=limits))
        report["verified_at"] = datetime.now(UTC).isoformat()
        if options.get("revisions", True):
            report["revisions"] = describe_reader_revisions(
                open_reader(data, limits), data, thumbnails=bool(options.get("thumbnails"))
            )
        return report
    except LimitExceededError:
        raise  # the pool reports it as the outcome's reason: a limit, not an input error
    except VerifierError as ex:
        return {"error": {"code": ex.code, "message": ex.message}}


def _policy_part(options: dict[str, Any]) -> dict[str, Any]:
    return {
        key: options.get(key)
        for key in ("policy", "anchors", "others", "crls", "require_ltv", "fetch")
    }


@functools.lru_cache(maxsize=16)
def _policy(options: str) -> Policy:
    """The policy in ``options`` (JSON), parsed once per worker: its trust material is
    decoded a single time and shared by every document verified under it."""
    part = json.loads(options)
    return Policy(
        name=str(part["policy"]),
        trust_anchors=_decode(part["anchors"]),
        other_certificates=_decode(part["others"] or ()),
        crls=_decode(part["crls"] or ()),
        require_ltv=bool(part["require_ltv"]),
        fetch=None if not part["fetch"] else FetchPolicy.from_options(part["fetch"]),
    )


def _encode(items: Iterable[bytes]) -> list[str]:
    return [base64.b64encode(der).decode("ascii") for der in items]


def _decode(items: Iterable[str]) -> tuple[bytes, ...]:
    return tuple(base64.b64decode(item) for item in items)
