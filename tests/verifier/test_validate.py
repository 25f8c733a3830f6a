"""The verifier core: Kyso's own documents pass at every level; tampering, a foreign
anchor, appended bytes and later content changes never pass; the JSON carries every field."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import Engine

from bench.signer_bench import one_page_pdf
from hsm import BlockingSessionPool
from signer.issuing import OFFICER_FIELD, SEAL_FIELD
from tests.pki.test_authority import make_authority
from tests.signer.test_issuing import issue
from tests.verifier.fixtures import (
    appended_garbage,
    flipped_signed_byte,
    foreign_root,
    kyso_policy,
    replaced_page_content,
    root_der,
    signed,
    zeroed_contents,
)
from verifier.errors import InputTooLargeError, InvalidPolicyError, UnreadableDocumentError
from verifier.fetching import FetchPolicy
from verifier.indications import Indication, SubIndication
from verifier.limits import Limits
from verifier.policy import Policy, default_policy
from verifier.report import SCHEMA_VERSION, to_json
from verifier.validate import DocumentResult, SignatureResult, verify_pdf

PASSED, FAILED, INDETERMINATE = (
    Indication.TOTAL_PASSED,
    Indication.TOTAL_FAILED,
    Indication.INDETERMINATE,
)


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite only: the verifier never touches the database; the signer's fixtures do."""
    return f"sqlite:///{tmp_path / 'kyso-test.db'}"


def codes_of(signature: SignatureResult) -> set[str]:
    return {reason.code for reason in signature.reasons}


def codes(result: DocumentResult) -> set[str]:
    return {reason.code for s in result.signatures for reason in s.reasons}


@pytest.mark.parametrize("level", ["B-B", "B-T", "B-LT", "B-LTA"])
def test_kyso_signed_levels_pass(engine: Engine, pool: BlockingSessionPool, level: str) -> None:
    authority = make_authority(engine, pool)
    data = signed(authority, pool, level)
    result = verify_pdf(data, kyso_policy(authority))
    assert result.indication is PASSED, result
    assert result.sub_indication is None
    kinds = [s.kind for s in result.signatures]
    assert kinds == (["approval", "document_timestamp"] if level == "B-LTA" else ["approval"])
    first = result.signatures[0]
    assert first.certificate is not None
    assert first.certificate.common_name
    assert first.modification_level in ("NONE", "LTA_UPDATES")
    assert (first.timestamp is not None) == (level != "B-B")
    garbage = verify_pdf(appended_garbage(data), kyso_policy(authority))
    assert garbage.indication is FAILED, garbage
    assert all("unsigned_trailing_bytes" in codes_of(s) for s in garbage.signatures)
    if level in ("B-LT", "B-LTA"):
        strict = verify_pdf(data, kyso_policy(authority, require_ltv=True))
        assert strict.indication is PASSED, strict
    else:
        # revocation status cannot be determined offline: a warning, never a pass
        strict = verify_pdf(data, kyso_policy(authority, require_ltv=True))
        assert strict.indication is INDETERMINATE, strict
        assert strict.signatures[0].reasons[0].code == "revocation_unknown"
        assert strict.sub_indication is SubIndication.TRY_LATER
    # Without the CRLs of Kyso's own CAs, status is only what the document proves.
    bare = verify_pdf(data, default_policy([root_der(authority)]))
    assert bare.indication is (PASSED if level in ("B-LT", "B-LTA") else INDETERMINATE), bare
    revocation = result.signatures[0].revocation
    assert revocation is not None
    assert revocation.status == "good"
    assert revocation.source == ("document" if level in ("B-LT", "B-LTA") else "kyso")


def test_issued_two_signature_document_passes(
    engine: Engine, pool: BlockingSessionPool, tmp_path: Path
) -> None:
    authority = make_authority(engine, pool)
    issued = issue(engine, pool, authority, tmp_path)

    result = verify_pdf(issued.pdf, kyso_policy(authority, require_ltv=True))
    assert result.indication is PASSED, result
    assert [s.field for s in result.signatures] == [OFFICER_FIELD, SEAL_FIELD]
    assert [s.kind for s in result.signatures] == ["certification", "approval"]
    assert all(s.indication is PASSED for s in result.signatures)
    assert result.signatures[0].modification_level == "FORM_FILLING"


def test_tampering_and_foreign_anchors_never_pass(
    engine: Engine, pool: BlockingSessionPool
) -> None:
    authority = make_authority(engine, pool)
    data = signed(authority, pool, "B-T")
    policy = kyso_policy(authority)
    assert verify_pdf(data, policy).indication is PASSED

    foreign = verify_pdf(data, default_policy([foreign_root()]))
    assert (foreign.indication, foreign.sub_indication) == (
        INDETERMINATE,
        SubIndication.NO_CERTIFICATE_CHAIN_FOUND,
    )

    flipped = verify_pdf(flipped_signed_byte(data), policy)
    assert (flipped.indication, flipped.sub_indication) == (FAILED, SubIndication.HASH_FAILURE)
    assert "hash_mismatch" in codes(flipped)

    zeroed = verify_pdf(zeroed_contents(data), policy)
    assert zeroed.indication is FAILED, zeroed
    assert zeroed.signatures[0].reasons[0].code == "malformed_signature"

    garbage = verify_pdf(appended_garbage(data), policy)
    assert garbage.indication is FAILED, garbage
    assert "unsigned_trailing_bytes" in codes(garbage)
    assert verify_pdf(data + b"\r\n", policy).indication is PASSED  # an end-of-line is no change

    forged = verify_pdf(replaced_page_content(data), policy)
    assert forged.indication is FAILED, forged
    assert forged.signatures[0].modification_level == "OTHER"
    assert "disallowed_modification" in codes(forged) or "suspicious_modification" in codes(forged)


def test_forbidden_digest_fails_by_policy(engine: Engine, pool: BlockingSessionPool) -> None:
    authority = make_authority(engine, pool)
    data = signed(authority, pool)
    policy = Policy(
        name="no-sha256",
        trust_anchors=(root_der(authority),),
        forbidden_digests=frozenset({"sha256", "sha1", "md5"}),
    )
    result = verify_pdf(data, policy)
    assert (result.indication, result.sub_indication) == (
        FAILED,
        SubIndication.CRYPTO_CONSTRAINTS_FAILURE,
    )
    strict_rsa = Policy(name="rsa-4096", trust_anchors=(root_der(authority),), min_ec_bits=384)
    assert "weak_key" in codes(verify_pdf(data, strict_rsa))


def test_json_report_has_every_field(engine: Engine, pool: BlockingSessionPool) -> None:
    authority = make_authority(engine, pool)
    result = verify_pdf(signed(authority, pool, "B-T"), kyso_policy(authority))
    report = to_json(result)
    json.dumps(report)  # plain JSON types only
    assert report["schema_version"] == SCHEMA_VERSION
    assert report["indication"] == "TOTAL-PASSED"
    assert report["sub_indication"] is None
    assert report["policy"] == "kyso-default"
    assert len(report["document_sha256"]) == 64
    (signature,) = report["signatures"]
    for key in (
        "field",
        "signer",
        "indication",
        "sub_indication",
        "signing_time",
        "timestamp",
        "modification_level",
        "coverage",
        "certificate",
    ):
        assert key in signature
    assert signature["field"] == "Signature1"
    assert signature["signer"]
    assert signature["coverage"] == "ENTIRE_FILE"
    assert signature["timestamp"]["time"]
    assert signature["timestamp"]["passed"] is True
    assert set(signature["certificate"]) == {
        "subject",
        "issuer",
        "serial",
        "not_before",
        "not_after",
    }
    assert int(signature["certificate"]["serial"]) > 0


def test_unsigned_and_unreadable_inputs() -> None:
    policy = default_policy([foreign_root()])
    unsigned = verify_pdf(one_page_pdf(), policy)
    assert (unsigned.indication, unsigned.sub_indication) == (
        INDETERMINATE,
        SubIndication.SIGNED_DATA_NOT_FOUND,
    )
    assert unsigned.reasons[0].code == "no_signature"
    with pytest.raises(InputTooLargeError) as too_large:
        verify_pdf(one_page_pdf(), policy, limits=Limits(max_bytes=100))
    assert too_large.value.code == "verifier.input_too_large"
    with pytest.raises(UnreadableDocumentError):
        verify_pdf(b"%PDF-1.7\nnot really", policy)
    with pytest.raises(InvalidPolicyError, match="no trust anchor"):
        Policy(name="empty", trust_anchors=())
    with pytest.raises(InvalidPolicyError, match="not DER"):
        Policy(name="bad", trust_anchors=(b"nope",))


def test_fetching_only_under_the_fetch_policy(engine: Engine, pool: BlockingSessionPool) -> None:
    """Kyso's certificates name their OCSP responder; a fetch policy that does not allow its
    host leaves the status unknown (never passed), and Kyso's own CRLs answer without it."""
    authority = make_authority(engine, pool)
    data = signed(authority, pool, "B-B")
    fetch = FetchPolicy(allowed=("ocsp.example.invalid",), timeout_seconds=1)
    offline = replace(default_policy([root_der(authority)]), fetch=fetch)
    result = verify_pdf(data, offline)
    assert result.indication is INDETERMINATE, result
    assert result.signatures[0].reasons[0].code == "revocation_unknown"
    assert verify_pdf(data, replace(kyso_policy(authority), fetch=fetch)).indication is PASSED
