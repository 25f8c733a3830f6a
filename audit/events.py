"""The audit event model and its canonical leaf encoding.

A leaf is the RFC 8785 (JCS) canonical JSON of one event; auditors recompute Merkle leaf
hashes over exactly these bytes, so :meth:`AuditEvent.from_leaf` accepts only the bytes
:meth:`AuditEvent.leaf` would write for the same event.

Leaf shape (version 1)::

    {"action": "document.signed",
     "actor": {"id": "...", "role": "...", "unit": "..."},
     "details": {"pages": 2, "reason": null},
     "outcome": {"code": "hsm.pin_locked", "success": false},
     "subject": {"certificate_serial": "...", "document_sha256": "...",
                 "key_id": "...", "request_id": "..."},
     "time": "2025-01-31T09:30:00.123456Z",
     "version": 1}

``actor``, ``subject``, ``outcome`` and ``details`` are always present, possibly as ``{}``;
within ``actor``, ``subject`` and ``outcome`` a field that is ``None`` is *omitted*. Inside
``details`` a ``None`` value is *kept* as ``null``: the key itself is information.

Text is normalised to Unicode NFC on construction, so "Công an phường Bến Thành" typed on
any keyboard gives the same leaf; a leaf holding non-NFC text is therefore not canonical.

Never secrets: detail keys whose name segments say PIN, password, SAD, OTP, token, secret or
private key are refused with ``audit.secret_refused``, as is any text holding a PEM private
key. The log is append-only and public to auditors, so a secret written once stays forever.
"""

from __future__ import annotations

import enum
import itertools
import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, NoReturn

import rfc8785

from audit.errors import EventError, EventFailure

LEAF_VERSION = 1
"""Version number written into every leaf; bumped only with a new leaf shape."""

MAX_LEAF_BYTES = 16 * 1024
"""Upper bound of one leaf, enforced on construction and before parsing."""

MAX_DETAILS = 32
"""Most keys in :attr:`AuditEvent.details`."""

MAX_DETAIL_KEY = 64
"""Longest detail key, in characters."""

MAX_DETAIL_TEXT = 1024
"""Longest string detail value, in characters."""

MAX_FIELD_TEXT = 256
"""Longest actor field (id, role, unit), in characters."""

MAX_INT = 2**53 - 1
"""Largest magnitude of an integer detail: the I-JSON range every JSON reader keeps exact."""

MIN_TIME = datetime(2000, 1, 1, tzinfo=UTC)
"""Earliest event time accepted; anything before is a clock or conversion bug."""

DetailValue = str | int | bool | None
"""What a detail may hold: no floats (their canonical form is a trap), no nesting."""

_HEX = re.compile(r"[0-9a-f]+", re.ASCII)
_SHA256_HEX = re.compile(r"[0-9a-f]{64}", re.ASCII)
_SERIAL = re.compile(r"[0-9a-f]{1,64}", re.ASCII)
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}", re.ASCII)
_CODE = re.compile(r"[a-z0-9_]+(?:\.[a-z0-9_]+)*", re.ASCII)
_DETAIL_KEY = re.compile(r"[a-z0-9_]+(?:\.[a-z0-9_]+)*", re.ASCII)
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z", re.ASCII)

# Characters refused in any text: C0/C1 controls and DEL garble a report; bidirectional
# overrides make an auditor's screen show another text than the bytes hold.
_FORBIDDEN_TEXT = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)

SECRET_WORDS = frozenset(
    {
        "pin", "puk", "password", "passwd", "passphrase", "pwd", "sad", "secret", "token",
        "otp", "totp", "hotp", "privkey", "seed", "mnemonic", "credential", "credentials",
        "cookie", "apikey", "cvv",
    }
)  # fmt: skip
"""Detail-key segments (split on ``.`` and ``_``) that mark a secret."""

SECRET_PHRASES = frozenset(
    {
        ("private", "key"), ("secret", "key"), ("signing", "key"), ("api", "key"),
        ("key", "material"), ("auth", "code"), ("access", "key"), ("session", "key"),
    }
)  # fmt: skip
"""Adjacent segment pairs that mark a secret although neither word does alone."""

ALLOWED_SECRET_LOOKALIKES = frozenset(
    {
        ("token", "label"), ("token", "serial"), ("token", "model"), ("token", "manufacturer"),
        ("credential", "id"),
    }
)  # fmt: skip
"""HSM token metadata ("token" names the PKCS#11 device, not a bearer token) and the id of
a signing credential (key + certificate, as the CSC API calls it), not its secret."""

_PEM_PRIVATE = re.compile(r"PRIVATE KEY-----|BEGIN OPENSSH PRIVATE", re.ASCII)


class Action(enum.Enum):
    """What happened; a closed list, dotted lower-case values written into leaves."""

    KEY_GENERATED = "key.generated"
    """A key pair was generated on the HSM."""

    KEY_REFUSED = "key.refused"
    """The HSM holds a key that must not be used (extractable, wrong type); it was refused."""

    CERTIFICATE_ISSUED = "certificate.issued"
    """The CA issued a certificate."""

    CERTIFICATE_SUSPENDED = "certificate.suspended"
    """A certificate was put on hold (revocation reason certificateHold)."""

    CERTIFICATE_RESUMED = "certificate.resumed"
    """A suspended certificate was taken off hold."""

    CERTIFICATE_REVOKED = "certificate.revoked"
    """A certificate was revoked for good."""

    OFFICER_ENROLLED = "officer.enrolled"
    """An officer or clerk was enrolled with a unit (identity checked, account created)."""

    LOGIN_SUCCEEDED = "login.succeeded"
    """A user authenticated."""

    LOGIN_FAILED = "login.failed"
    """An authentication attempt failed."""

    SESSION_ENDED = "session.ended"
    """A person signed out, or their session was revoked."""

    USER_CHANGED = "user.changed"
    """A person's account was created or changed: role, unit, password, second factor,
    lock, unlock (the details say which; never the secret)."""

    CLIENT_CHANGED = "client.changed"
    """A service client was created, its secret rotated, or it was revoked."""

    ACCESS_GRANTED = "access.granted"
    """A service client was issued an access token (its scopes in the details)."""

    SAD_ISSUED = "sad.issued"
    """Signature activation data was issued: a credential's holder authorised a number of
    signatures (bound to their hashes or documents) for a few minutes."""

    SAD_USED = "sad.used"
    """Signature activation data was used up by a signing request."""

    SAD_REFUSED = "sad.refused"
    """An authorisation or a use of signature activation data was refused (the reason in
    the details)."""

    PIN_LOCKED = "pin.locked"
    """A signing PIN (or the token's user PIN) was locked after too many failures."""

    PIN_FAILED = "pin.failed"
    """A wrong signing PIN was given for a credential (the failure is counted)."""

    PIN_SET = "pin.set"
    """A credential's signing PIN was set or changed (never the PIN itself)."""

    PIN_UNLOCKED = "pin.unlocked"
    """An administrator unlocked a credential's signing PIN after it was locked."""

    SIGNATURE_AUTHORISED = "signature.authorised"
    """The signer authorised one signature (sole control: the SAD was checked)."""

    SIGNATURE_REFUSED = "signature.refused"
    """A signature request was refused by policy or authorisation."""

    DOCUMENT_UPLOADED = "document.uploaded"
    """A draft document was registered (its SHA-256 in the subject)."""

    DOCUMENT_SIGNED = "document.signed"
    """An officer's signature was applied to a document."""

    DOCUMENT_SEALED = "document.sealed"
    """The agency seal signature was applied to a document."""

    DOCUMENT_ISSUED = "document.issued"
    """A numbered document was issued to its recipient."""

    VERIFICATION_PERFORMED = "verification.performed"
    """A document or signature was verified (the result goes in the details)."""

    CONFIGURATION_CHANGED = "configuration.changed"
    """An administrator changed security-relevant configuration."""

    AUDIT_CHECKPOINT = "audit.checkpoint"
    """The log signed a checkpoint."""


def _refuse(message: str, reason: EventFailure = EventFailure.INVALID) -> NoReturn:
    raise EventError(message, reason=reason)


def _text(value: object, what: str, limit: int) -> str:
    """Validate and NFC-normalise one piece of text."""
    if not isinstance(value, str):
        _refuse(f"{what} must be a string, got {type(value).__name__}")
    if len(value) > 4 * limit:  # bound the work before normalising an outsized input
        _refuse(f"{what} is {len(value)} characters, the limit is {limit}")
    text = unicodedata.normalize("NFC", value)
    if not text:
        _refuse(f"{what} must not be empty (use None for 'not known')")
    if len(text) > limit:
        _refuse(f"{what} is {len(text)} characters, the limit is {limit}")
    bad = _FORBIDDEN_TEXT.search(text)
    if bad:
        _refuse(f"{what} contains the control or invisible character U+{ord(bad.group()):04X}")
    if _PEM_PRIVATE.search(text):
        _refuse(f"{what} holds a private key", EventFailure.SECRET_REFUSED)
    return text


def _optional_text(obj: object, name: str, what: str, limit: int) -> None:
    value = getattr(obj, name)
    if value is not None:
        object.__setattr__(obj, name, _text(value, what, limit))


def _optional_pattern(obj: object, name: str, pattern: re.Pattern[str], rule: str) -> None:
    value = getattr(obj, name)
    if value is None:
        return
    if not isinstance(value, str) or not pattern.fullmatch(value):
        _refuse(f"{name} must be {rule}, got {value!r:.80}")


@dataclass(frozen=True, kw_only=True)
class Actor:
    """Who acted. All fields optional: a system job has no unit, a failed login no role."""

    id: str | None = None
    """Stable identifier of the user or service (account id, service name), never a name
    typed by a citizen."""

    role: str | None = None
    """Role under which the actor acted (``officer``, ``clerk``, ``admin``, ``service``)."""

    unit: str | None = None
    """The unit the actor acted for, e.g. "Công an phường Bến Thành"."""

    def __post_init__(self) -> None:
        for name in ("id", "role", "unit"):
            _optional_text(self, name, f"actor.{name}", MAX_FIELD_TEXT)

    def _json(self) -> dict[str, str]:
        return {
            k: v
            for k, v in (("id", self.id), ("role", self.role), ("unit", self.unit))
            if v is not None
        }


@dataclass(frozen=True, kw_only=True)
class Subject:
    """What the event is about. All fields optional; hex is lower-case, so it is canonical."""

    document_sha256: str | None = None
    """SHA-256 of the document, 64 lower-case hex characters."""

    key_id: str | None = None
    """Key identifier (CKA_ID or SubjectKeyIdentifier), lower-case hex, even length."""

    certificate_serial: str | None = None
    """Certificate serial number, lower-case hex or decimal digits, at most 64."""

    request_id: str | None = None
    """Correlation id of the API request, printable ASCII without spaces, at most 128."""

    def __post_init__(self) -> None:
        _optional_pattern(self, "document_sha256", _SHA256_HEX, "64 lower-case hex digits")
        _optional_pattern(self, "certificate_serial", _SERIAL, "1 to 64 lower-case hex digits")
        _optional_pattern(self, "request_id", _REQUEST_ID, "1 to 128 printable ASCII characters")
        key_id = self.key_id
        if key_id is not None and (
            not isinstance(key_id, str)
            or not _HEX.fullmatch(key_id)
            or len(key_id) % 2
            or len(key_id) > 128
        ):
            _refuse(
                f"key_id must be an even number (up to 128) of lower-case hex digits, "
                f"got {key_id!r:.80}"
            )

    def _json(self) -> dict[str, str]:
        pairs = (
            ("certificate_serial", self.certificate_serial),
            ("document_sha256", self.document_sha256),
            ("key_id", self.key_id),
            ("request_id", self.request_id),
        )
        return {k: v for k, v in pairs if v is not None}


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """Whether the action succeeded; a failure always names its stable error code."""

    success: bool
    """True when the action took effect."""

    code: str | None = None
    """Stable error code of the failure (e.g. ``hsm.pin_locked``); None on success."""

    def __post_init__(self) -> None:
        if not isinstance(self.success, bool):
            _refuse("outcome.success must be a bool")
        if self.success and self.code is not None:
            _refuse("a successful outcome carries no error code")
        if not self.success and self.code is None:
            _refuse("a failed outcome must name its error code")
        if self.code is not None and (
            not isinstance(self.code, str) or len(self.code) > 64 or not _CODE.fullmatch(self.code)
        ):
            _refuse(
                f"outcome.code must be a dotted lower-case code of at most 64 characters, "
                f"got {self.code!r:.80}"
            )

    def _json(self) -> dict[str, str | bool]:
        out: dict[str, str | bool] = {"success": self.success}
        if self.code is not None:
            out["code"] = self.code
        return out


def _is_secret_key(key: str) -> bool:
    segments = re.split(r"[._]", key)
    pairs = set(itertools.pairwise(segments))
    for i, segment in enumerate(segments):
        if segment in SECRET_WORDS:
            following = segments[i + 1] if i + 1 < len(segments) else None
            if (segment, following) not in ALLOWED_SECRET_LOOKALIKES:
                return True
    return bool(pairs & SECRET_PHRASES)


def _details(raw: object) -> MappingProxyType[str, DetailValue]:
    if not isinstance(raw, Mapping):
        _refuse(f"details must be a mapping, got {type(raw).__name__}")
    if len(raw) > MAX_DETAILS:
        _refuse(f"details has {len(raw)} keys, the limit is {MAX_DETAILS}")
    checked: dict[str, DetailValue] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or len(key) > MAX_DETAIL_KEY or not _DETAIL_KEY.fullmatch(key):
            _refuse(
                f"detail key {key!r:.80} must be 1 to {MAX_DETAIL_KEY} characters of "
                "[a-z0-9_] in dot-separated segments"
            )
        if _is_secret_key(key):
            # The key is safe to echo (it matched the key pattern); the value never is.
            _refuse(
                f"detail {key!r} looks like a secret and is never logged",
                EventFailure.SECRET_REFUSED,
            )
        if value is None or isinstance(value, bool):
            checked[key] = value
        elif isinstance(value, int):
            if not -MAX_INT <= value <= MAX_INT:
                _refuse(f"detail {key!r} is outside ±(2**53 - 1)")
            checked[key] = value
        elif isinstance(value, str):
            checked[key] = _text(value, f"detail {key!r}", MAX_DETAIL_TEXT)
        else:
            _refuse(f"detail {key!r} must be str, int, bool or None, got {type(value).__name__}")
    return MappingProxyType(dict(sorted(checked.items())))


def format_time(moment: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ`` of an aware datetime, in UTC."""
    t = moment.astimezone(UTC)
    return (
        f"{t.year:04d}-{t.month:02d}-{t.day:02d}T{t.hour:02d}:{t.minute:02d}:{t.second:02d}"
        f".{t.microsecond:06d}Z"
    )


def _canonical(value: dict[str, Any]) -> bytes:
    """RFC 8785 bytes of an event's JSON form, four times faster than ``rfc8785.dumps``.

    For what an event may hold — objects with ASCII ``[a-z0-9_.]`` keys, strings, integers
    within ±2^53, booleans and null, never a float — JCS output is exactly
    ``json.dumps(sort_keys=True, ensure_ascii=False, separators=(",", ":"))``: the same key
    order (ASCII keys sort alike in UTF-16 code units), the same escapes (``\\b \\f \\n \\r
    \\t``, other controls as lower-case ``\\u00xx``, ``"`` and ``\\``) and the same integers.
    The tests hold the two to equality; ``from_leaf`` still checks with ``rfc8785``.
    """
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8"
    )


@dataclass(frozen=True, kw_only=True)
class AuditEvent:
    """One security event, validated on construction; its :meth:`leaf` is what the log hashes."""

    time: datetime
    """When it happened: timezone-aware, stored in UTC with microseconds."""

    action: Action
    """What happened."""

    actor: Actor
    """Who did it."""

    outcome: Outcome
    """Whether it succeeded, and the error code if not."""

    subject: Subject = field(default_factory=Subject)
    """What it was done to."""

    details: Mapping[str, DetailValue] = field(default_factory=dict, hash=False)
    """Small extra facts, at most 32 keys; never secrets. Read-only, sorted by key."""

    _leaf: bytes = field(init=False, repr=False, compare=False, hash=False, default=b"")

    def __post_init__(self) -> None:
        if not isinstance(self.time, datetime):
            _refuse(f"time must be a datetime, got {type(self.time).__name__}")
        if self.time.tzinfo is None or self.time.utcoffset() is None:
            _refuse("time must be timezone-aware; a naive time is ambiguous in an audit log")
        moment = self.time.astimezone(UTC)
        if moment < MIN_TIME:
            _refuse(f"time {format_time(moment)} is before {format_time(MIN_TIME)}")
        object.__setattr__(self, "time", moment)
        if not isinstance(self.action, Action):
            _refuse(f"action must be an Action, got {self.action!r:.80}")
        for name, kind in (("actor", Actor), ("subject", Subject), ("outcome", Outcome)):
            if not isinstance(getattr(self, name), kind):
                _refuse(f"{name} must be of type {kind.__name__}")
        object.__setattr__(self, "details", _details(self.details))
        leaf = _canonical(self._json())
        if len(leaf) > MAX_LEAF_BYTES:
            _refuse(
                f"the event's leaf is {len(leaf)} bytes, the limit is {MAX_LEAF_BYTES}",
                EventFailure.TOO_LARGE,
            )
        object.__setattr__(self, "_leaf", leaf)

    def _json(self) -> dict[str, Any]:
        return {
            "version": LEAF_VERSION,
            "time": format_time(self.time),
            "action": self.action.value,
            "actor": self.actor._json(),
            "subject": self.subject._json(),
            "outcome": self.outcome._json(),
            "details": dict(self.details),
        }

    def leaf(self) -> bytes:
        """The canonical (RFC 8785) JSON bytes of this event: the Merkle leaf."""
        return self._leaf

    @classmethod
    def from_leaf(cls, data: bytes) -> AuditEvent:
        """Parse a leaf back into an event, accepting only canonical bytes.

        Raises :class:`EventError` with ``audit.leaf.malformed`` for anything that is not a
        version-1 leaf, and ``audit.leaf.not_canonical`` for a leaf that parses but is not
        byte for byte what :meth:`leaf` writes.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            _refuse("a leaf is bytes", EventFailure.MALFORMED_LEAF)
        data = bytes(data)
        if len(data) > MAX_LEAF_BYTES:
            _refuse(
                f"the leaf is {len(data)} bytes, the limit is {MAX_LEAF_BYTES}",
                EventFailure.TOO_LARGE,
            )
        try:
            obj = json.loads(
                data.decode("utf-8"),
                object_pairs_hook=_no_duplicates,
                parse_float=_no_float,
                parse_constant=_no_float,
            )
        except (UnicodeDecodeError, ValueError, RecursionError) as ex:
            raise EventError(
                f"the leaf is not UTF-8 JSON: {ex}", reason=EventFailure.MALFORMED_LEAF
            ) from ex
        event = _event_from_json(obj)
        if event.leaf() != data:
            # event.leaf() is canonical, so equality alone proves the leaf canonical; the
            # extra work of telling the two cases apart is spent on bad leaves only.
            try:
                canonical = rfc8785.dumps(obj) == data
            except (rfc8785.CanonicalizationError, UnicodeEncodeError):
                canonical = False
            if not canonical:
                _refuse(
                    "the leaf is not in RFC 8785 canonical form", EventFailure.NON_CANONICAL_LEAF
                )
            # Canonical JSON, but not Kyso's canonical event: e.g. text not in NFC.
            _refuse(
                "the leaf does not re-encode to the same bytes", EventFailure.NON_CANONICAL_LEAF
            )
        return event


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate object key")
    return result


def _no_float(text: str) -> NoReturn:
    raise ValueError(f"non-integer number {text[:40]!r} (floats are never written)")


def _malformed(message: str) -> NoReturn:
    raise EventError(message, reason=EventFailure.MALFORMED_LEAF)


def _object(value: object, what: str, required: set[str], optional: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        _malformed(f"{what} must be a JSON object")
    keys = set(value)
    if missing := required - keys:
        _malformed(f"{what} lacks {', '.join(sorted(missing))}")
    if unknown := keys - required - optional:
        _malformed(f"{what} has unknown member(s) {', '.join(sorted(unknown))[:200]}")
    return value


def _event_from_json(obj: object) -> AuditEvent:
    top = _object(
        obj,
        "the leaf",
        {"version", "time", "action", "actor", "subject", "outcome", "details"},
        set(),
    )
    if top["version"] != LEAF_VERSION or isinstance(top["version"], bool):
        _malformed(f"unsupported leaf version {top['version']!r:.20}")
    stamp = top["time"]
    if not isinstance(stamp, str) or not _TIME.fullmatch(stamp):
        _malformed("time must be YYYY-MM-DDTHH:MM:SS.ffffffZ")
    try:
        moment = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    except ValueError as ex:
        raise EventError(
            f"time is not a real date: {ex}", reason=EventFailure.MALFORMED_LEAF
        ) from ex
    try:
        action = Action(top["action"])
    except ValueError as ex:
        raise EventError(
            f"unknown action {top['action']!r:.80}", reason=EventFailure.MALFORMED_LEAF
        ) from ex
    actor = _object(top["actor"], "actor", set(), {"id", "role", "unit"})
    subject = _object(
        top["subject"],
        "subject",
        set(),
        {"document_sha256", "key_id", "certificate_serial", "request_id"},
    )
    outcome = _object(top["outcome"], "outcome", {"success"}, {"code"})
    details = top["details"]
    if not isinstance(details, dict):
        _malformed("details must be a JSON object")
    # Field validation (types, bounds, secrets) is the constructors' job; their EventError
    # keeps its reason (a secret in a leaf is still audit.secret_refused).
    return AuditEvent(
        time=moment,
        action=action,
        actor=Actor(**actor),
        subject=Subject(**subject),
        outcome=Outcome(**outcome),
        details=details,
    )
