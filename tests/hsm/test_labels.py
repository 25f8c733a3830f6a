"""Key labels: UTF-8 Vietnamese names survive every path; malformed labels are refused."""

from __future__ import annotations

import unicodedata
from typing import Any

import pytest
from pkcs11 import Attribute, ObjectClass

from hsm import BlockingSessionPool, HsmInvalidRequestError, KeySpec
from hsm.keys import MAX_LABEL_BYTES, check_label

VIETNAMESE = "Nguyễn Văn Ánh — Công an phường Bến Thành"


@pytest.mark.parametrize(
    "label",
    [
        VIETNAMESE,
        "Trần Thị Hồng Nhung (văn thư) — UBND xã Đông Hưng",
        "ễ" * 42 + "ab",  # 128 bytes exactly, in 3-byte characters
        "x" * MAX_LABEL_BYTES,
        " leading and trailing spaces ",
    ],
)
def test_label_round_trip(pool: BlockingSessionPool, raw_session: Any, label: str) -> None:
    made = pool.generate_key(KeySpec.EC_P256, label=label)
    assert made.label == label
    assert pool.get_key(made.key_id).label == label
    assert [k.label for k in pool.list_keys()] == [label]
    assert made.as_dict()["label"] == label

    # The token stores the label as UTF-8 bytes that other PKCS#11 applications find.
    found = list(
        raw_session.get_objects({Attribute.LABEL: label, Attribute.CLASS: ObjectClass.PRIVATE_KEY})
    )
    assert len(found) == 1
    assert bytes(found[0][Attribute.ID]) == made.key_id
    public = list(
        raw_session.get_objects({Attribute.LABEL: label, Attribute.CLASS: ObjectClass.PUBLIC_KEY})
    )
    assert [bytes(p[Attribute.ID]) for p in public] == [made.key_id]


def test_label_is_matched_exactly(pool: BlockingSessionPool, raw_session: Any) -> None:
    pool.generate_key(KeySpec.EC_P256, label=VIETNAMESE)
    # Same text in decomposed form (NFD) is different bytes, hence a different label.
    decomposed = unicodedata.normalize("NFD", VIETNAMESE)
    assert decomposed != VIETNAMESE
    assert list(raw_session.get_objects({Attribute.LABEL: decomposed})) == []
    assert list(raw_session.get_objects({Attribute.LABEL: "Nguyễn Văn Ánh"})) == []


@pytest.mark.parametrize(
    ("label", "reason"),
    [
        ("", "empty"),
        ("   ", "blank"),
        ("a\nb", "newline"),
        ("a\tb", "tab"),
        ("a\x00b", "NUL"),
        ("\x1b[31mred", "escape sequence"),
        ("a\x7fb", "DEL"),
        ("a\x9bb", "C1 control (CSI)"),
        ("\ud800", "lone surrogate, not encodable as UTF-8"),
        ("x" * (MAX_LABEL_BYTES + 1), "129 bytes"),
        ("ễ" * 43, "129 bytes in 3-byte characters"),
    ],
)
def test_bad_labels_are_refused(pool: BlockingSessionPool, label: str, reason: str) -> None:
    with pytest.raises(HsmInvalidRequestError, match="a key label must be 1–128 bytes of UTF-8"):
        pool.generate_key(KeySpec.EC_P256, label=label)
    with pytest.raises(HsmInvalidRequestError):
        check_label(label)
    assert pool.list_keys() == [], reason


def test_bad_label_error_has_a_stable_code() -> None:
    with pytest.raises(HsmInvalidRequestError) as caught:
        check_label("")
    assert caught.value.code == "hsm.invalid_request"
    assert caught.value.diagnostics().endswith("[hsm.invalid_request]")
