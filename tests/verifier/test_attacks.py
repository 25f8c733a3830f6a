"""The known attacks on PDF signatures never pass the verifier.

Each case takes a document Kyso signed at B-LT (a plain one-page document, a document
prepared with hidden layers for the shadow attacks, a certified document, and the issued
two-signature document), applies one attack from :mod:`tests.verifier.attacks`, and checks
the verdict: never TOTAL-PASSED, the expected indication, and the reason codes that say
why. The controls show that the untouched documents do pass, so a failure is the attack's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bench.signer_bench import one_page_pdf
from hsm import BlockingSessionPool
from kyso.db import make_engine, upgrade
from tests.conftest import make_token
from tests.pki.test_authority import ADMIN, make_authority
from tests.signer.test_issuing import issue
from tests.signer.test_ltv import service
from tests.verifier import attacks
from tests.verifier.fixtures import (
    appended_garbage,
    replaced_page_content,
    root_der,
    zeroed_contents,
)
from verifier import accelerate
from verifier.errors import UnreadableDocumentError
from verifier.indications import Indication
from verifier.policy import Policy, default_policy
from verifier.report import to_json
from verifier.validate import DocumentResult, verify_pdf

PASSED, FAILED, INDETERMINATE = (
    Indication.TOTAL_PASSED,
    Indication.TOTAL_FAILED,
    Indication.INDETERMINATE,
)
UNREADABLE = "unreadable"
"""Expected outcome: the input is refused (:class:`UnreadableDocumentError`)."""


@dataclass(frozen=True, kw_only=True)
class Bases:
    """The signed documents the attacks start from, built once for the module."""

    plain: bytes
    """A one-page document with one approval signature at B-LT."""
    other: bytes
    """Another document signed by the same officer (a source of a foreign CMS)."""
    shadow: bytes
    """:func:`attacks.shadow_base` signed at B-LT (approval signature)."""
    certified: bytes
    """A one-page document with a certification signature (DocMDP P=2) at B-LT."""
    issued: bytes
    """The registry's issued document: the officer's certification and the seal."""
    policy: Policy
    """The demo root as anchor, revocation data required."""


@pytest.fixture(scope="module")
def bases(softhsm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Bases:
    # Module scope: authority setup is the slow part, and every case only reads the bytes.
    tmp = tmp_path_factory.mktemp("attacks")
    token = make_token(softhsm_dir, tmp)
    engine = make_engine(f"sqlite:///{tmp / 'kyso-test.db'}")
    upgrade(engine)
    try:
        with BlockingSessionPool(token.config()) as pool:
            authority = make_authority(engine, pool)
            issued = issue(engine, pool, authority, tmp)
            # issue() created the units and the officer; a second credential of his signs here
            credential = authority.enroll_person(issued.person_id, ADMIN)
            signing = service(authority, pool)

            def sign(pdf: bytes, *, certify: bool = False) -> bytes:
                return signing.sign(pdf, credential.id, level="B-LT", certify=certify)

            built = Bases(
                plain=sign(one_page_pdf("So tien: 1.000 VND")),
                other=sign(one_page_pdf("Another document")),
                shadow=sign(attacks.shadow_base()),
                certified=sign(one_page_pdf("So tien: 1.000 VND"), certify=True),
                issued=issued.pdf,
                policy=default_policy([root_der(authority)], require_ltv=True),
            )
    finally:
        engine.dispose()
    return built


def verdict(data: bytes, policy: Policy) -> DocumentResult:
    return verify_pdf(data, policy)


def all_codes(result: DocumentResult) -> set[str]:
    return {r.code for s in result.signatures for r in s.reasons} | {r.code for r in result.reasons}


@pytest.mark.parametrize("base", ["plain", "other", "shadow", "certified", "issued"])
def test_untouched_documents_pass(bases: Bases, base: str) -> None:
    result = verdict(getattr(bases, base), bases.policy)
    assert result.indication is PASSED, result
    assert all(s.indication is PASSED for s in result.signatures)


def test_trailing_whitespace_is_no_change(bases: Bases) -> None:
    result = verdict(attacks.appended_whitespace(bases.plain), bases.policy)
    assert result.indication is PASSED, result


Builder = Callable[[Bases], bytes]


@dataclass(frozen=True, kw_only=True)
class Case:
    """One attack and the verdict it must get."""

    build: Builder
    """Makes the attacked document from the module's signed bases."""
    expected: Indication | str
    """The document's indication, or :data:`UNREADABLE`."""
    codes: frozenset[str] = frozenset()
    """Reason codes that must all be among the document's and its signatures'."""
    intact: bool = False
    """The attack keeps the signed bytes: the verdict must come from something else than
    a digest mismatch (proves the builder attacks what it claims to)."""


def on(base: str, builder: Callable[[bytes], bytes]) -> Builder:
    return lambda bases: builder(getattr(bases, base))


def case(
    base: str,
    builder: Callable[[bytes], bytes],
    expected: Indication | str,
    *codes: str,
    intact: bool = False,
) -> Case:
    return Case(build=on(base, builder), expected=expected, codes=frozenset(codes), intact=intact)


CASES = {
    # 1. universal signature forgery
    "usf-contents-missing": case("plain", attacks.contents_missing, FAILED, "malformed_signature"),
    "usf-contents-empty": case("plain", attacks.contents_empty, FAILED, "malformed_signature"),
    "usf-contents-null": case("plain", attacks.contents_null, FAILED, "malformed_signature"),
    "usf-contents-zeros": case("plain", zeroed_contents, FAILED, "malformed_signature"),
    "usf-contents-not-hex": case("plain", attacks.contents_not_hex, FAILED, "malformed_signature"),
    "usf-contents-literal-string": case(
        "plain", attacks.contents_literal_string, FAILED, "malformed_signature"
    ),
    "usf-contents-truncated-cms": case(
        "plain", attacks.contents_truncated_cms, FAILED, "malformed_signature"
    ),
    "usf-contents-no-signer": case(
        "plain", attacks.contents_without_signer, FAILED, "malformed_signature"
    ),
    "usf-contents-from-other-document": Case(
        build=lambda b: attacks.contents_from_other_document(b.plain, b.other),
        expected=FAILED,
        codes=frozenset({"hash_mismatch"}),
    ),
    "usf-byterange-missing": case(
        "plain", attacks.byte_range_missing, FAILED, "malformed_signature"
    ),
    "usf-byterange-null": case("plain", attacks.byte_range_null, FAILED, "malformed_signature"),
    "usf-byterange-three-numbers": case(
        "plain", attacks.byte_range_three_numbers, FAILED, "malformed_signature"
    ),
    "usf-byterange-six-numbers": case(
        "plain", attacks.byte_range_six_numbers, FAILED, "partial_coverage"
    ),
    "usf-byterange-negative": case(
        "plain", attacks.byte_range_negative, FAILED, "hash_mismatch", "partial_coverage"
    ),
    "usf-byterange-overlapping": case(
        "plain", attacks.byte_range_overlapping, FAILED, "hash_mismatch", "partial_coverage"
    ),
    "usf-byterange-not-from-start": case(
        "plain", attacks.byte_range_not_from_start, FAILED, "hash_mismatch", "partial_coverage"
    ),
    "usf-byterange-over-contents-hole": case(
        "plain", attacks.byte_range_over_hole, FAILED, "hash_mismatch", "partial_coverage"
    ),
    "usf-byterange-past-eof": case(
        "plain", attacks.byte_range_past_eof, FAILED, "hash_mismatch", "partial_coverage"
    ),
    "usf-byterange-shortened": case(
        "plain", attacks.byte_range_shortened, FAILED, "hash_mismatch", "partial_coverage"
    ),
    # 2. signature wrapping
    "swa-relocated-signed-range": case(
        "plain",
        attacks.signature_wrapping,
        FAILED,
        "partial_coverage",
        "suspicious_modification",
        intact=True,
    ),
    # 3. incremental saving attacks
    "isa-page-content-replaced": case(
        "plain", replaced_page_content, FAILED, "suspicious_modification", intact=True
    ),
    "isa-page-added": case(
        "plain", attacks.isa_add_page, FAILED, "suspicious_modification", intact=True
    ),
    "isa-content-object-overridden": case(
        "plain", attacks.isa_override_content, FAILED, "suspicious_modification", intact=True
    ),
    # the new catalog has no form: the signature is not even found (never a pass)
    "isa-catalog-replaced": case(
        "plain", attacks.isa_replace_catalog, INDETERMINATE, "no_signature", intact=True
    ),
    "isa-update-without-xref": case(
        "plain", attacks.isa_without_xref, FAILED, "unsigned_trailing_bytes", intact=True
    ),
    "isa-update-trailer-without-xref": case(
        "plain", attacks.isa_trailer_only, FAILED, "unsigned_trailing_bytes", intact=True
    ),
    "isa-signature-value-copied": case(
        "plain", attacks.isa_signature_value_copied, FAILED, "partial_coverage", intact=True
    ),
    "isa-signature-value-removed": case(
        "plain", attacks.isa_signature_value_removed, INDETERMINATE, "no_signature", intact=True
    ),
    # 4. shadow attacks
    "shadow-hide-overlay-emptied": case(
        "shadow",
        attacks.shadow_hide_overlay_emptied,
        FAILED,
        "suspicious_modification",
        intact=True,
    ),
    "shadow-hide-overlay-unreferenced": case(
        "shadow",
        attacks.shadow_hide_overlay_unreferenced,
        FAILED,
        "suspicious_modification",
        intact=True,
    ),
    "shadow-hide-optional-content-off": case(
        "shadow",
        attacks.shadow_hide_optional_content_off,
        FAILED,
        "suspicious_modification",
        intact=True,
    ),
    "shadow-replace-font": case(
        "shadow", attacks.shadow_replace_font, FAILED, "suspicious_modification", intact=True
    ),
    "shadow-hide-and-replace-xref-only": case(
        "shadow", attacks.shadow_hide_and_replace, FAILED, "suspicious_modification", intact=True
    ),
    # 5. certification attacks
    "cert-evil-annotation": case(
        "certified", attacks.evil_annotation, FAILED, "suspicious_modification", intact=True
    ),
    "cert-evil-annotation-issued": case(
        "issued", attacks.evil_annotation, FAILED, "suspicious_modification", intact=True
    ),
    "cert-sneaky-signature-field": case(
        "certified",
        attacks.sneaky_signature_field,
        FAILED,
        "suspicious_modification",
        intact=True,
    ),
    "cert-sneaky-signature-field-issued": case(
        "issued", attacks.sneaky_signature_field, FAILED, "suspicious_modification", intact=True
    ),
    "approval-evil-annotation": case(
        "plain", attacks.evil_annotation, FAILED, "suspicious_modification", intact=True
    ),
    # 6. bytes after the last revision
    "appended-garbage-object": case(
        "plain", appended_garbage, FAILED, "unsigned_trailing_bytes", intact=True
    ),
    "appended-comment": case(
        "plain", attacks.appended_comment, FAILED, "unsigned_trailing_bytes", intact=True
    ),
    "appended-object-without-xref": case(
        "plain", attacks.appended_object, FAILED, "unsigned_trailing_bytes", intact=True
    ),
    # a second %%EOF is refused by the strict parser: an input error, not a verdict
    "appended-eof-twice": case("plain", attacks.appended_eof, UNREADABLE),
    "shadow-replace-form-value": case(
        "shadow",
        attacks.shadow_replace_form_value,
        FAILED,
        "unsigned_form_change",
        intact=True,
    ),
    "approval-sneaky-signature-field": case(
        "plain",
        attacks.sneaky_signature_field,
        FAILED,
        "unsigned_form_change",
        intact=True,
    ),
}


def check(bases: Bases, attack: Case) -> None:
    data = attack.build(bases)
    if attack.expected == UNREADABLE:
        with pytest.raises(UnreadableDocumentError) as refused:
            verdict(data, bases.policy)
        assert refused.value.code == "verifier.unreadable_document"
        return
    result = verdict(data, bases.policy)
    assert result.indication is not PASSED, result
    assert result.indication is attack.expected, result
    assert result.sub_indication is not None
    found = all_codes(result)
    assert attack.codes <= found, (sorted(found), result)
    if attack.intact:
        assert "hash_mismatch" not in found, result


@pytest.mark.parametrize("name", list(CASES))
def test_attack_never_passes(bases: Bases, name: str) -> None:
    check(bases, CASES[name])


def test_a_cms_cut_anywhere_after_its_signature_never_passes(bases: Bases) -> None:
    """Cut just before, at and after the end of the signature value and all through the
    timestamp token after it, zero-filled: the signature value is intact, but the CMS is
    not what was signed with (its timestamp is garbage): malformed, never passed."""
    info = attacks._signed_cms(bases.plain)
    der = info.dump()
    value = info["content"]["signer_infos"][0]["signature"].native
    end = der.index(value) + len(value)
    verdicts = {}
    cuts = [*range(end - 4, end + 96), *range(end + 96, len(der), 37)]
    for keep in cuts:
        verdicts[keep] = verdict(attacks._with_cms(bases.plain, der[:keep]), bases.policy)
    passed = [keep for keep, result in verdicts.items() if result.indication is PASSED]
    assert not passed, (end, passed)


def _stable(report: dict[str, Any]) -> dict[str, Any]:
    """``report`` without what varies from one run to the next by itself: pyHanko lists
    the places an object is used in set order in a suspicious modification's text."""
    for signature in report["signatures"]:
        for reason in signature["reasons"]:
            if reason["code"] == "suspicious_modification":
                reason["text"] = "…"
    return report


def _reports(documents: dict[str, bytes], policy: Policy) -> dict[str, object]:
    """Each document's JSON report (or the refusal's type)."""
    reports: dict[str, object] = {}
    for name, data in documents.items():
        try:
            reports[name] = _stable(to_json(verify_pdf(data, policy)))
        except UnreadableDocumentError as ex:
            reports[name] = type(ex).__name__
    return reports


def test_the_workers_speed_ups_change_no_report(bases: Bases) -> None:
    """The attack corpus verified by pyHanko as it ships and with the workers' speed-ups
    (twice: the second time from remembered paths) gives the very same reports."""
    # Built once: the attacks' incremental updates are not byte-for-byte reproducible.
    documents = {name: attack.build(bases) for name, attack in CASES.items()}
    documents |= {base: getattr(bases, base) for base in ("plain", "shadow", "certified", "issued")}
    plain = _reports(documents, bases.policy)
    accelerate.install()
    try:
        first = _reports(documents, bases.policy)
        second = _reports(documents, bases.policy)
        hits = accelerate.PATHS.hits
    finally:
        accelerate.uninstall()
    assert first == plain
    assert second == plain
    assert hits > 0  # the second pass did use remembered paths
