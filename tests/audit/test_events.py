"""Audit events: validation, the never-secrets rule, and the canonical leaf bytes."""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import rfc8785

from audit import (
    Action,
    Actor,
    AuditEvent,
    EventError,
    EventFailure,
    Outcome,
    Subject,
)
from audit.events import MAX_LEAF_BYTES

HCM = timezone(timedelta(hours=7))
UNIT = "Công an phường Bến Thành"
DOC = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def event(**overrides: Any) -> AuditEvent:
    values: dict[str, Any] = {
        "time": datetime(2025, 1, 31, 16, 30, 0, 123456, tzinfo=HCM),
        "action": Action.DOCUMENT_SIGNED,
        "actor": Actor(id="officer-42", role="officer", unit=UNIT),
        "subject": Subject(document_sha256=DOC, key_id="0a1b2c", certificate_serial="1f2e"),
        "outcome": Outcome(success=True),
        "details": {"pages": 2, "form": "CT07", "visible": True, "reason": None},
    }
    values.update(overrides)
    return AuditEvent(**values)


GOLDEN_LEAF = (
    '{"action":"document.signed",'
    '"actor":{"id":"officer-42","role":"officer","unit":"Công an phường Bến Thành"},'
    '"details":{"form":"CT07","pages":2,"reason":null,"visible":true},'
    '"outcome":{"success":true},'
    '"subject":{"certificate_serial":"1f2e",'
    '"document_sha256":"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",'
    '"key_id":"0a1b2c"},'
    '"time":"2025-01-31T09:30:00.123456Z","version":1}'
).encode()


def test_leaf_is_the_documented_canonical_json() -> None:
    leaf = event().leaf()
    assert leaf == GOLDEN_LEAF
    assert rfc8785.dumps(json.loads(leaf)) == leaf
    assert "Bến Thành".encode() in leaf  # raw UTF-8, no \u escapes


def test_round_trip() -> None:
    original = event()
    parsed = AuditEvent.from_leaf(original.leaf())
    assert parsed == original
    assert parsed.leaf() == original.leaf()
    assert parsed.actor.unit == UNIT
    assert parsed.details["reason"] is None
    assert hash(parsed) == hash(original)


@pytest.mark.parametrize(
    "action", list(Action), ids=lambda a: a.value if isinstance(a, Action) else str(a)
)
def test_every_action_round_trips(action: Action) -> None:
    e = event(action=action, subject=Subject(), details={})
    assert AuditEvent.from_leaf(e.leaf()).action is action
    assert action.value == action.value.lower()
    assert "." in action.value


def test_action_values_are_stable() -> None:
    assert Action.KEY_GENERATED.value == "key.generated"
    assert Action.AUDIT_CHECKPOINT.value == "audit.checkpoint"
    assert len({a.value for a in Action}) == len(Action)


def test_none_fields_are_omitted_and_empty_objects_kept() -> None:
    e = event(actor=Actor(), subject=Subject(), details={}, outcome=Outcome(success=True))
    obj = json.loads(e.leaf())
    assert (obj["actor"], obj["subject"], obj["details"]) == ({}, {}, {})
    assert obj["outcome"] == {"success": True}


def test_failure_outcome_carries_its_code() -> None:
    e = event(action=Action.PIN_LOCKED, outcome=Outcome(success=False, code="hsm.pin_locked"))
    assert json.loads(e.leaf())["outcome"] == {"code": "hsm.pin_locked", "success": False}


def test_time_is_converted_to_utc_with_microseconds() -> None:
    e = event(time=datetime(2025, 1, 1, 6, 0, tzinfo=HCM))
    assert e.time == datetime(2024, 12, 31, 23, 0, tzinfo=UTC)
    assert e.time.tzinfo is UTC
    assert json.loads(e.leaf())["time"] == "2024-12-31T23:00:00.000000Z"


def test_details_are_read_only_and_sorted() -> None:
    e = event(details={"b": 1, "a": 2})
    assert list(e.details) == ["a", "b"]
    with pytest.raises(TypeError):
        e.details["c"] = 3  # type: ignore[index]


def test_nfd_input_is_normalised_to_nfc() -> None:
    decomposed = unicodedata.normalize("NFD", UNIT)
    assert decomposed != UNIT
    e = event(actor=Actor(unit=decomposed), details={"note": decomposed})
    assert e.actor.unit == UNIT
    assert e.details["note"] == UNIT
    assert e.leaf() == event(actor=Actor(unit=UNIT), details={"note": UNIT}).leaf()


# -- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"time": datetime(2025, 1, 1, 12, 0)}, "time must be timezone-aware"),
        ({"time": "2025-01-01T00:00:00Z"}, "time must be a datetime"),
        ({"time": datetime(1970, 1, 1, tzinfo=UTC)}, "is before 2000-01-01"),
        ({"action": "document.signed"}, "action must be an Action"),
        ({"actor": None}, "actor must be of type Actor"),
        ({"outcome": True}, "outcome must be of type Outcome"),
        ({"details": [("a", 1)]}, "details must be a mapping"),
        ({"details": {f"k{i}": i for i in range(33)}}, "details has 33 keys, the limit is 32"),
        ({"details": {"k" * 65: 1}}, "must be 1 to 64 characters"),
        ({"details": {"Pages": 1}}, "detail key 'Pages' must be"),
        ({"details": {"page count": 1}}, "must be 1 to 64 characters"),
        ({"details": {"a..b": 1}}, "dot-separated segments"),
        ({"details": {"": 1}}, "must be 1 to 64"),
        ({"details": {1: 1}}, "detail key 1 must be"),
        ({"details": {"x": "y" * 1025}}, "1025 characters, the limit is 1024"),
        ({"details": {"x": ""}}, "must not be empty"),
        ({"details": {"x": 2**53}}, r"outside ±\(2\*\*53 - 1\)"),
        ({"details": {"x": -(2**53)}}, r"outside ±\(2\*\*53 - 1\)"),
        ({"details": {"x": 1.5}}, "must be str, int, bool or None, got float"),
        ({"details": {"x": {"y": 1}}}, "must be str, int, bool or None, got dict"),
        ({"details": {"x": [1]}}, "must be str, int, bool or None, got list"),
        ({"details": {"x": b"raw"}}, "must be str, int, bool or None, got bytes"),
        ({"details": {"x": "line\nbreak"}}, "control or invisible character U\\+000A"),
        ({"details": {"x": "nul\x00"}}, "U\\+0000"),
        ({"details": {"x": "del\x7f"}}, "U\\+007F"),
        ({"details": {"x": "abc\u202egnp.exe"}}, "U\\+202E"),
        ({"details": {"x": "\ud800"}}, "U\\+D800"),
    ],
)
def test_invalid_events_are_refused(overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(EventError, match=match) as caught:
        event(**overrides)
    assert caught.value.reason is EventFailure.INVALID
    assert caught.value.code == "audit.event.invalid"


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: Actor(unit="x" * 257), "actor.unit is 257 characters, the limit is 256"),
        (lambda: Outcome(success=False), "a failed outcome must name its error code"),
        (lambda: Outcome(success=True, code="x"), "successful outcome carries no error"),
        (lambda: Outcome(success=False, code="Bad Code"), "dotted lower-case code"),
        (lambda: Outcome(success=1), "outcome.success must be a bool"),  # type: ignore[arg-type]
        (lambda: Subject(document_sha256=DOC.upper()), "64 lower-case hex digits"),
        (lambda: Subject(document_sha256=DOC[:-1]), "64 lower-case hex digits"),
        (lambda: Subject(key_id="abc"), "even number"),
        (lambda: Subject(key_id="zz"), "even number"),
        (lambda: Subject(certificate_serial="0x1f"), "lower-case hex digits"),
        (lambda: Subject(request_id="has space"), "printable ASCII"),
        (lambda: Subject(request_id="r" * 129), "printable ASCII"),
    ],
)
def test_invalid_parts_are_refused(build: Callable[[], object], match: str) -> None:
    with pytest.raises(EventError, match=match) as caught:
        build()
    assert caught.value.code == "audit.event.invalid"


def test_decimal_serial_and_uuid_request_id_are_accepted() -> None:
    e = event(subject=Subject(certificate_serial="123456789", request_id="3f2b-11ef:req/1"))
    assert AuditEvent.from_leaf(e.leaf()) == e


def test_leaf_size_is_bounded() -> None:
    # 32 details of 1024 three-byte characters are far above 16 KiB.
    details = {f"k{i}": "ệ" * 1024 for i in range(32)}
    with pytest.raises(EventError, match=r"the event's leaf is \d+ bytes, the limit is 16384") as c:
        event(details=details)
    assert c.value.reason is EventFailure.TOO_LARGE


# -- never secrets ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "pin",
        "user_pin",
        "so_pin",
        "hsm.pin",
        "new_pin",
        "puk",
        "password",
        "passwd",
        "old_password",
        "passphrase",
        "sad",
        "signature.sad",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "refresh_token",
        "otp",
        "otp_code",
        "totp",
        "private_key",
        "private.key",
        "ec_private_key",
        "secret_key",
        "signing_key",
        "api_key",
        "apikey",
        "key_material",
        "seed",
        "credentials",
        "session_key",
        "cookie",
    ],
)
def test_secret_looking_detail_keys_are_refused(key: str) -> None:
    with pytest.raises(EventError, match=f"detail '{key}' looks like a secret") as caught:
        event(details={key: "1234"})
    assert caught.value.code == "audit.secret_refused"
    assert caught.value.reason is EventFailure.SECRET_REFUSED
    assert "1234" not in str(caught.value)
    assert "1234" not in caught.value.diagnostics()
    assert "never logged" in caught.value.diagnostics()


@pytest.mark.parametrize(
    "key",
    [
        "key_id",
        "key.label",
        "token_label",
        "token_serial",
        "pages",
        "spinner",  # "pin" inside a word is not a segment
        "tries_left",
        "public_key_sha256",
        "signature_type",
        "sadness_index",
    ],
)
def test_harmless_keys_are_accepted(key: str) -> None:
    assert key in event(details={key: "x"}).details


@pytest.mark.parametrize(
    "value",
    [
        "-----BEGIN PRIVATE KEY-----\nMIIE...",
        "-----BEGIN EC PRIVATE KEY-----",
        "-----BEGIN ENCRYPTED PRIVATE KEY-----",
        "-----BEGIN OPENSSH PRIVATE KEY-----",
    ],
)
def test_pem_private_keys_are_refused_anywhere(value: str) -> None:
    text = value.replace("\n", " ")
    with pytest.raises(EventError, match="holds a private key") as caught:
        event(details={"note": text})
    assert caught.value.code == "audit.secret_refused"
    with pytest.raises(EventError, match="holds a private key"):
        event(actor=Actor(role=text[:200]))


# -- parsing leaves -----------------------------------------------------------------------


def mutated(**changes: Any) -> bytes:
    """The golden leaf with top-level members replaced, re-canonicalised."""
    obj = json.loads(GOLDEN_LEAF)
    obj.update(changes)
    return rfc8785.dumps({k: v for k, v in obj.items() if v is not ...})


@pytest.mark.parametrize(
    ("leaf", "match"),
    [
        (GOLDEN_LEAF + b" ", "not in RFC 8785 canonical form"),
        (b" " + GOLDEN_LEAF, "not in RFC 8785 canonical form"),
        (json.dumps(json.loads(GOLDEN_LEAF)).encode(), "not in RFC 8785 canonical form"),
        (
            json.dumps(
                json.loads(GOLDEN_LEAF), ensure_ascii=True, separators=(",", ":"), sort_keys=True
            ).encode(),
            "not in RFC 8785 canonical form",
        ),  # \u escapes instead of raw UTF-8
        (
            json.dumps(json.loads(GOLDEN_LEAF), ensure_ascii=False, separators=(",", ":"))
            .encode()
            .replace(b'{"action":"document.signed",', b'{"version":1,"action":"document.signed",')
            .replace(b',"version":1}', b"}"),
            "not in RFC 8785 canonical form",
        ),  # members out of order
        (
            GOLDEN_LEAF.replace(UNIT.encode(), unicodedata.normalize("NFD", UNIT).encode()),
            "does not re-encode to the same bytes",
        ),
    ],
)
def test_non_canonical_leaves_are_refused(leaf: bytes, match: str) -> None:
    with pytest.raises(EventError, match=match) as caught:
        AuditEvent.from_leaf(leaf)
    assert caught.value.reason is EventFailure.NON_CANONICAL_LEAF
    assert caught.value.code == "audit.leaf.not_canonical"
    assert "Auditors recompute" in caught.value.diagnostics()


@pytest.mark.parametrize(
    ("leaf", "match"),
    [
        (b"\xff" + GOLDEN_LEAF, "not UTF-8 JSON"),
        (b"", "not UTF-8 JSON"),
        (b"[]", "the leaf must be a JSON object"),
        (b"1", "the leaf must be a JSON object"),
        (b'{"a":1,"a":2}', "duplicate object key"),
        (b'{"x":1.5}', "non-integer number"),
        (b'{"x":1e3}', "non-integer number"),
        (b'{"x":NaN}', "non-integer number"),
        (b"[" * 5000 + b"]" * 5000, "not UTF-8 JSON"),
        (mutated(version=...), "lacks version"),
        (mutated(extra=1), "unknown member"),
        (mutated(version=2), "unsupported leaf version 2"),
        (mutated(version=True), "unsupported leaf version True"),
        (mutated(action="document.shredded"), "unknown action 'document.shredded'"),
        (mutated(time="2025-01-31T09:30:00Z"), "time must be YYYY-MM-DDTHH:MM:SS.ffffffZ"),
        (mutated(time="2025-01-31T09:30:00.123456+00:00"), "time must be YYYY"),
        (mutated(time="2025-02-30T09:30:00.000000Z"), "time is not a real date"),
        (mutated(actor=[]), "actor must be a JSON object"),
        (mutated(actor={"name": "x"}), "actor has unknown member"),
        (mutated(outcome={}), "outcome lacks success"),
        (mutated(details=[]), "details must be a JSON object"),
    ],
)
def test_malformed_leaves_are_refused(leaf: bytes, match: str) -> None:
    with pytest.raises(EventError, match=match) as caught:
        AuditEvent.from_leaf(leaf)
    assert caught.value.reason is EventFailure.MALFORMED_LEAF


@pytest.mark.parametrize(
    ("leaf", "reason"),
    [
        (mutated(details={"user_pin": "1234"}), EventFailure.SECRET_REFUSED),
        (mutated(outcome={"success": False}), EventFailure.INVALID),
        (mutated(subject={"document_sha256": "00"}), EventFailure.INVALID),
        (mutated(actor={"id": 7}), EventFailure.INVALID),
        (mutated(time="1999-12-31T23:59:59.999999Z"), EventFailure.INVALID),
    ],
)
def test_leaves_get_the_same_field_checks_as_events(leaf: bytes, reason: EventFailure) -> None:
    with pytest.raises(EventError) as caught:
        AuditEvent.from_leaf(leaf)
    assert caught.value.reason is reason


def test_oversized_leaves_are_refused_before_parsing() -> None:
    with pytest.raises(EventError, match="the leaf is 16385 bytes") as caught:
        AuditEvent.from_leaf(b" " * (MAX_LEAF_BYTES + 1))
    assert caught.value.reason is EventFailure.TOO_LARGE


def test_any_single_byte_change_is_refused_or_changes_the_event() -> None:
    """A tampered leaf never parses back to the original event."""
    original = event()
    leaf = bytearray(original.leaf())
    for position in range(len(leaf)):
        tampered = bytearray(leaf)
        tampered[position] ^= 0x01
        try:
            parsed = AuditEvent.from_leaf(bytes(tampered))
        except EventError:
            continue
        assert parsed != original
        assert parsed.leaf() == bytes(tampered)


def test_leaf_bytes_are_exactly_rfc8785_for_any_text() -> None:
    """``AuditEvent.leaf`` takes a fast path; it must stay byte for byte RFC 8785."""
    import json
    import random

    import rfc8785

    from audit.events import _canonical

    rng = random.Random(8785)
    alphabet = (
        [chr(c) for c in range(0x00, 0x80)]
        + list("ăâđêôơưĂÂĐÊÔƠƯạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ")
        + ["\u2028", "\u2029", "\ufeff", "\U0001f600", "\u00a0", "\u007f", "\u0080", "\u009b"]
    )
    for _ in range(2000):
        value = {
            "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789_.") for _ in range(8)): (
                "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 24)))
                if rng.random() < 0.7
                else rng.choice([True, False, None, rng.randrange(-(2**53), 2**53)])
            )
            for _ in range(rng.randrange(1, 6))
        }
        nested = {"details": value, "version": 1, "actor": {"unit": value.get("x", "Bến Thành")}}
        assert _canonical(nested) == rfc8785.dumps(nested), json.dumps(nested)
