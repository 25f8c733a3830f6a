"""C2SP signed notes and tlog-checkpoints: how the log signs its tree heads.

Implements c2sp.org/signed-note and c2sp.org/tlog-checkpoint, with the verifier-key
("vkey") text format of Go's ``golang.org/x/mod/sumdb/note``::

    <name>+<8 hex digits of key ID>+<base64(signature type byte || public key)>

Signature types supported (both assigned by the signed-note specification):

* ``0x01`` Ed25519 (RFC 8032) over the note text. Key ID =
  SHA-256(name || 0x0A || 0x01 || 32-byte public key)[:4]. Kyso's audit key is Ed25519
  whenever the HSM supports it.
* ``0x02`` ECDSA "as implemented by github.com/transparency-dev/witness" (also Sigstore
  Rekor's checkpoints): an ASN.1 DER ``ECDSA-Sig-Value`` over SHA-256 of the note text. The
  public key is the DER SubjectPublicKeyInfo, and — unlike every other type — the key ID is
  SHA-256(SPKI DER)[:4], *without* the name and type byte, as the specification notes. Kyso
  accepts only NIST P-256 here (the specification's SHOULD). This is the fallback for HSMs
  without Ed25519; no Kyso-specific type byte is needed. An HSM returns ECDSA signatures as
  raw ``r || s``: the signing adapter must DER-encode them
  (``cryptography.hazmat.primitives.asymmetric.utils.encode_dss_signature``), and
  :func:`sign_note` refuses a signature that is not DER.

The log's private key never passes through this module: a :class:`NoteSigner` (in Kyso, a
small adapter over the HSM session pool, built by the composition root) signs the bytes
handed to it. Verification needs only the public key, so an auditor can run it offline.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NoReturn, Protocol

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from audit.errors import NoteError, NoteFailure
from audit.merkle import EMPTY_ROOT, HASH_SIZE, MAX_TREE_SIZE, verify_consistency

MAX_NOTE_BYTES = 256 * 1024
"""Largest signed note accepted, in UTF-8 bytes (room for 16+ post-quantum signatures)."""

MAX_SIGNATURES = 100
"""Most signature lines read from one note (the specification requires at least 16)."""

MAX_SIGNATURE_BYTES = 8 * 1024
"""Largest single signature, decoded (ML-DSA-87 signatures are 4,627 bytes)."""

MAX_NAME_CHARS = 256
"""Longest key name or checkpoint origin."""

MAX_VKEY_CHARS = 2048
"""Longest verifier-key text accepted."""

SIGNATURE_PREFIX = "\u2014 "
"""Em dash and space: how every signature line starts."""

# Signed notes must not contain ASCII control characters other than newline (specification).
_CONTROL = re.compile("[\x00-\x09\x0b-\x1f]")
_SIZE = re.compile(r"0|[1-9][0-9]*", re.ASCII)
_HEX8 = re.compile(r"[0-9a-fA-F]{8}", re.ASCII)


class SignatureType(enum.IntEnum):
    """Signature type identifier bytes of c2sp.org/signed-note that Kyso implements."""

    ED25519 = 0x01
    """Ed25519 over the note text."""

    ECDSA_SHA256 = 0x02
    """ECDSA P-256, DER signature over SHA-256 of the note text (transparency-dev/witness)."""


class NoteSigner(Protocol):
    """Signs note texts with one key; the key itself stays wherever it lives (the HSM)."""

    @property
    def name(self) -> str:
        """Key name written on the signature line; for the log's key, the checkpoint origin."""
        ...

    @property
    def key_id(self) -> bytes:
        """The 4-byte key ID (see :func:`compute_key_id`)."""
        ...

    @property
    def signature_type(self) -> int:
        """The signature type byte (:class:`SignatureType`)."""
        ...

    def sign(self, message: bytes) -> bytes:
        """Sign the UTF-8 note text. ECDSA signatures must be DER, not raw ``r || s``."""
        ...


def _fail(message: str, reason: NoteFailure) -> NoReturn:
    raise NoteError(message, reason=reason)


def _b64decode(text: str) -> bytes:
    # Strict RFC 4648 §4: the alphabet only, correct padding, no whitespace. Round-tripping
    # also rejects non-zero padding bits, so every value has exactly one accepted spelling.
    raw = base64.b64decode(text, validate=True)
    if base64.b64encode(raw).decode("ascii") != text:
        raise binascii.Error("non-canonical base64")
    return raw


def is_valid_key_name(name: object) -> bool:
    """A key name is non-empty, bounded, without spaces, ``+`` or control characters."""
    return (
        isinstance(name, str)
        and 0 < len(name) <= MAX_NAME_CHARS
        and "+" not in name
        and not any(c.isspace() for c in name)
        and not _CONTROL.search(name)
        and name.isprintable()
    )


def compute_key_id(name: str, signature_type: int, public_key: bytes) -> bytes:
    """The 4-byte key ID of a public key, as the signed-note specification defines it.

    ``public_key`` is the key material that follows the type byte in a vkey: the 32 raw
    bytes for Ed25519, the DER SubjectPublicKeyInfo for ECDSA (whose ID ignores the name).
    """
    if signature_type == SignatureType.ECDSA_SHA256:
        return hashlib.sha256(public_key).digest()[:4]
    return hashlib.sha256(
        name.encode("utf-8") + b"\n" + bytes([signature_type]) + public_key
    ).digest()[:4]


@dataclass(frozen=True, kw_only=True)
class NoteVerifier:
    """A trusted public key that verifies note signatures; built from the public key alone."""

    name: str
    """Key name, as on signature lines."""

    signature_type: SignatureType
    """The algorithm and key-ID rule."""

    public_key: bytes
    """Key material: 32 raw bytes (Ed25519) or DER SubjectPublicKeyInfo (ECDSA P-256)."""

    key_id: bytes
    """The 4-byte key ID; checked against the public key on construction."""

    _key: ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | None = field(
        init=False, repr=False, compare=False, hash=False, default=None
    )

    def __post_init__(self) -> None:
        if not is_valid_key_name(self.name):
            _fail(f"invalid key name {self.name!r:.80}", NoteFailure.INVALID_KEY)
        try:
            kind = SignatureType(self.signature_type)
        except ValueError:
            _fail(
                f"unsupported signature type {self.signature_type!r:.20}", NoteFailure.INVALID_KEY
            )
        object.__setattr__(self, "signature_type", kind)
        key = _load_key(kind, self.public_key)
        object.__setattr__(self, "_key", key)
        if not isinstance(self.key_id, bytes) or len(self.key_id) != 4:
            _fail("a key ID is 4 bytes", NoteFailure.INVALID_KEY)
        expected = compute_key_id(self.name, kind, self.public_key)
        if self.key_id != expected:
            _fail(
                f"key ID {self.key_id.hex()} does not match the public key of "
                f"{self.name} (expected {expected.hex()})",
                NoteFailure.INVALID_KEY,
            )

    @classmethod
    def from_public_key(cls, name: str, der_spki: bytes) -> NoteVerifier:
        """A verifier for a DER SubjectPublicKeyInfo: Ed25519 (type 1) or P-256 (type 2)."""
        try:
            key = serialization.load_der_public_key(der_spki)
        except (ValueError, UnsupportedAlgorithm) as ex:
            raise NoteError(
                f"not a DER SubjectPublicKeyInfo: {ex}", reason=NoteFailure.INVALID_KEY
            ) from ex
        if isinstance(key, ed25519.Ed25519PublicKey):
            kind = SignatureType.ED25519
            material = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        elif isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
            kind = SignatureType.ECDSA_SHA256
            # Re-encoded so that the key ID does not depend on how the caller encoded the point.
            material = key.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        else:
            _fail(
                f"unsupported audit key type {type(key).__name__}; use Ed25519 or ECDSA P-256",
                NoteFailure.INVALID_KEY,
            )
        if not is_valid_key_name(name):
            _fail(f"invalid key name {name!r:.80}", NoteFailure.INVALID_KEY)
        return cls(
            name=name,
            signature_type=kind,
            public_key=material,
            key_id=compute_key_id(name, kind, material),
        )

    @classmethod
    def from_vkey(cls, vkey: str) -> NoteVerifier:
        """Parse ``<name>+<hex key ID>+<base64(type || key)>``; the key ID must match."""
        if not isinstance(vkey, str) or len(vkey) > MAX_VKEY_CHARS:
            _fail("a verifier key is a string of at most 2048 characters", NoteFailure.INVALID_KEY)
        parts = vkey.split("+", 2)  # the base64 part may itself contain "+"
        if len(parts) != 3:
            _fail("a verifier key has the form <name>+<key id>+<key>", NoteFailure.INVALID_KEY)
        name, id_hex, key64 = parts
        if not _HEX8.fullmatch(id_hex):
            _fail(f"key ID {id_hex!r:.20} is not 8 hex digits", NoteFailure.INVALID_KEY)
        try:
            blob = _b64decode(key64)
        except (binascii.Error, ValueError) as ex:
            raise NoteError(
                "the verifier key's key material is not base64", reason=NoteFailure.INVALID_KEY
            ) from ex
        if len(blob) < 2:
            _fail("the verifier key's key material is empty", NoteFailure.INVALID_KEY)
        try:
            kind = SignatureType(blob[0])
        except ValueError as ex:
            raise NoteError(
                f"unsupported signature type 0x{blob[0]:02x}", reason=NoteFailure.INVALID_KEY
            ) from ex
        return cls(
            name=name,
            signature_type=kind,
            public_key=blob[1:],
            key_id=bytes.fromhex(id_hex),
        )

    def to_vkey(self) -> str:
        """The ``<name>+<hex key ID>+<base64(type || key)>`` text, to publish to auditors."""
        blob = bytes([self.signature_type]) + self.public_key
        return f"{self.name}+{self.key_id.hex()}+{base64.b64encode(blob).decode('ascii')}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` (without the key-ID prefix) signs ``message`` with this key."""
        key = self._key
        try:
            if isinstance(key, ed25519.Ed25519PublicKey):
                key.verify(signature, message)
            elif isinstance(key, ec.EllipticCurvePublicKey):
                key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
            else:  # pragma: no cover - __post_init__ always loads a key
                return False
        except (InvalidSignature, ValueError):
            return False
        return True


def _load_key(
    kind: SignatureType, material: object
) -> ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey:
    if not isinstance(material, bytes):
        _fail("public key material must be bytes", NoteFailure.INVALID_KEY)
    if kind is SignatureType.ED25519:
        if len(material) != 32:
            _fail(f"an Ed25519 key is 32 bytes, got {len(material)}", NoteFailure.INVALID_KEY)
        return ed25519.Ed25519PublicKey.from_public_bytes(material)
    try:
        key = serialization.load_der_public_key(material)
    except (ValueError, UnsupportedAlgorithm) as ex:
        raise NoteError(
            "the ECDSA key is not a DER SubjectPublicKeyInfo", reason=NoteFailure.INVALID_KEY
        ) from ex
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        _fail("signature type 2 keys must be ECDSA P-256", NoteFailure.INVALID_KEY)
    return key


# -- signed notes -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class NoteSignature:
    """One signature line of a note."""

    name: str
    """Key name on the line."""

    key_id: bytes
    """The 4-byte key ID that prefixes the signature."""

    signature: bytes
    """The signature bytes after the key ID."""


@dataclass(frozen=True, kw_only=True)
class OpenedNote:
    """A note whose signatures were checked: at least one by a trusted key verified."""

    text: str
    """The signed text, ending in a newline (without the blank separator line)."""

    verified: tuple[NoteSignature, ...]
    """Signatures by trusted keys, all verified; never empty."""

    unverified: tuple[NoteSignature, ...] = ()
    """Signatures by keys the caller did not trust (e.g. witnesses); ignored, not checked."""


def _check_text(text: str, what: str) -> None:
    if len(text) > MAX_NOTE_BYTES:  # cheap bound before scanning an outsized input
        _fail(
            f"{what} is over {MAX_NOTE_BYTES} bytes, the limit is {MAX_NOTE_BYTES}",
            NoteFailure.TOO_LARGE,
        )
    bad = _CONTROL.search(text)
    if bad:
        _fail(
            f"{what} contains the control character U+{ord(bad.group()):04X}",
            NoteFailure.MALFORMED,
        )
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as ex:
        raise NoteError(f"{what} is not valid Unicode", reason=NoteFailure.MALFORMED) from ex
    if size > MAX_NOTE_BYTES:
        _fail(f"{what} is {size} bytes, the limit is {MAX_NOTE_BYTES}", NoteFailure.TOO_LARGE)


def sign_note(text: str, signers: Sequence[NoteSigner]) -> str:
    """Sign ``text`` with every signer: the text, a blank line, then one line per signer.

    Exceptions raised by a signer (an HSM error, say) propagate unchanged, so their own
    codes survive; a signer that returns a signature of the wrong shape is refused.
    """
    if not isinstance(text, str) or not text.endswith("\n"):
        _fail("a note text must end with a newline", NoteFailure.MALFORMED)
    _check_text(text, "the note text")
    if not signers:
        _fail("a note needs at least one signer", NoteFailure.INVALID_SIGNER)
    message = text.encode("utf-8")
    lines: list[str] = []
    seen: set[tuple[str, bytes]] = set()
    for signer in signers:
        name, key_id, kind = signer.name, signer.key_id, signer.signature_type
        if not is_valid_key_name(name):
            _fail(f"invalid signer name {name!r:.80}", NoteFailure.INVALID_SIGNER)
        if not isinstance(key_id, bytes) or len(key_id) != 4:
            _fail(f"signer {name}: the key ID must be 4 bytes", NoteFailure.INVALID_SIGNER)
        if (name, key_id) in seen:
            _fail(f"signer {name}+{key_id.hex()} appears twice", NoteFailure.INVALID_SIGNER)
        seen.add((name, key_id))
        signature = signer.sign(message)
        _check_signature_shape(name, kind, signature)
        encoded = base64.b64encode(key_id + signature).decode("ascii")
        lines.append(f"{SIGNATURE_PREFIX}{name} {encoded}\n")
    return text + "\n" + "".join(lines)


def _check_signature_shape(name: str, kind: int, signature: object) -> None:
    if not isinstance(signature, bytes) or not 0 < len(signature) <= MAX_SIGNATURE_BYTES:
        _fail(f"signer {name} returned no usable signature", NoteFailure.INVALID_SIGNER)
    if kind == SignatureType.ED25519 and len(signature) != 64:
        _fail(
            f"signer {name} returned {len(signature)} bytes for Ed25519, expected 64",
            NoteFailure.INVALID_SIGNER,
        )
    if kind == SignatureType.ECDSA_SHA256:
        try:
            decode_dss_signature(signature)
        except ValueError as ex:
            raise NoteError(
                f"signer {name} returned an ECDSA signature that is not DER "
                "(an HSM's raw r || s must be DER-encoded first)",
                reason=NoteFailure.INVALID_SIGNER,
            ) from ex


def _index_verifiers(
    verifiers: Sequence[NoteVerifier],
) -> dict[tuple[str, bytes], NoteVerifier]:
    known: dict[tuple[str, bytes], NoteVerifier] = {}
    for v in verifiers:
        if not isinstance(v, NoteVerifier):
            _fail("verifiers must be NoteVerifier objects", NoteFailure.INVALID_KEY)
        slot = (v.name, v.key_id)
        if slot in known and known[slot] != v:
            # Two trusted keys behind one (name, ID): someone tampered with the trust list.
            _fail(f"ambiguous trusted keys for {v.name}+{v.key_id.hex()}", NoteFailure.INVALID_KEY)
        known[slot] = v
    return known


def open_note(note: str | bytes, verifiers: Sequence[NoteVerifier]) -> OpenedNote:
    """Parse a signed note and verify it against trusted keys.

    Follows the specification: signatures by unknown keys are ignored (kept in
    ``unverified``); a trusted key's signature that fails rejects the whole note
    (``audit.note.bad_signature``); without any verified trusted signature the note is
    rejected as ``audit.note.unknown_key`` when a line names a trusted key with another key
    ID, else ``audit.note.no_trusted_signature``.
    """
    if isinstance(note, bytes):
        if len(note) > MAX_NOTE_BYTES:
            _fail(
                f"the note is {len(note)} bytes, the limit is {MAX_NOTE_BYTES}",
                NoteFailure.TOO_LARGE,
            )
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError as ex:
            raise NoteError("the note is not valid UTF-8", reason=NoteFailure.MALFORMED) from ex
    if not isinstance(note, str):
        _fail("a note is text", NoteFailure.MALFORMED)
    _check_text(note, "the note")
    split = note.rfind("\n\n")
    if split < 0:
        _fail("the note has no blank line before its signatures", NoteFailure.MALFORMED)
    text, block = note[: split + 1], note[split + 2 :]
    if not block or not block.endswith("\n"):
        _fail(
            "the note's signature block is empty or not newline-terminated", NoteFailure.MALFORMED
        )
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        _fail(
            f"the note has {len(lines)} signatures, the limit is {MAX_SIGNATURES}",
            NoteFailure.TOO_LARGE,
        )

    known = _index_verifiers(verifiers)
    trusted_names = {name for name, _ in known}
    message = text.encode("utf-8")
    verified: list[NoteSignature] = []
    unverified: list[NoteSignature] = []
    seen: set[tuple[str, bytes]] = set()
    wrong_ids: list[str] = []
    for number, line in enumerate(lines, start=1):
        sig = _parse_signature_line(line, number)
        slot = (sig.name, sig.key_id)
        verifier = known.get(slot)
        if verifier is None:
            if sig.name in trusted_names:
                wrong_ids.append(f"{sig.name}+{sig.key_id.hex()}")
            if sig not in unverified:
                unverified.append(sig)
            continue
        if slot in seen:
            continue
        seen.add(slot)
        if not verifier.verify(message, sig.signature):
            _fail(
                f"the signature by {sig.name}+{sig.key_id.hex()} does not verify",
                NoteFailure.BAD_SIGNATURE,
            )
        verified.append(sig)
    if not verified:
        if wrong_ids:
            trusted = ", ".join(f"{n}+{i.hex()}" for n, i in sorted(known))
            _fail(
                f"signed by {', '.join(wrong_ids)}, but the trusted key ID is {trusted}",
                NoteFailure.UNKNOWN_KEY,
            )
        _fail("the note has no signature by a trusted key", NoteFailure.NO_TRUSTED_SIGNATURE)
    return OpenedNote(text=text, verified=tuple(verified), unverified=tuple(unverified))


def _parse_signature_line(line: str, number: int) -> NoteSignature:
    if not line.startswith(SIGNATURE_PREFIX):
        _fail(f"signature line {number} does not start with an em dash", NoteFailure.MALFORMED)
    name, space, encoded = line[len(SIGNATURE_PREFIX) :].partition(" ")
    if not space or not is_valid_key_name(name):
        _fail(f"signature line {number} has no valid key name", NoteFailure.MALFORMED)
    try:
        raw = _b64decode(encoded)
    except (binascii.Error, ValueError) as ex:
        raise NoteError(
            f"signature line {number} is not base64", reason=NoteFailure.MALFORMED
        ) from ex
    if len(raw) < 5 or len(raw) > 4 + MAX_SIGNATURE_BYTES:
        _fail(f"signature line {number} has a signature of bad length", NoteFailure.MALFORMED)
    return NoteSignature(name=name, key_id=raw[:4], signature=raw[4:])


# -- checkpoints --------------------------------------------------------------------------


def _bad_checkpoint(message: str) -> NoReturn:
    raise NoteError(message, reason=NoteFailure.INVALID_CHECKPOINT)


@dataclass(frozen=True, kw_only=True)
class Checkpoint:
    """A c2sp.org/tlog-checkpoint: the log's identity, tree size and root hash."""

    origin: str
    """Unique identity of the log, e.g. ``kyso.example.vn/audit``; also the key name."""

    size: int
    """Number of leaves in the tree."""

    root_hash: bytes
    """RFC 9162 root of the tree at :attr:`size` (32 bytes)."""

    extensions: tuple[str, ...] = ()
    """Opaque, non-empty extra lines; not recommended by the specification."""

    def __post_init__(self) -> None:
        origin = self.origin
        if not isinstance(origin, str) or not origin or len(origin) > MAX_NAME_CHARS:
            _bad_checkpoint(f"the origin must be 1 to {MAX_NAME_CHARS} characters")
        if "\n" in origin or _CONTROL.search(origin):
            _bad_checkpoint("the origin must be one line without control characters")
        size = self.size
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= MAX_TREE_SIZE:
            _bad_checkpoint(f"the tree size must be an integer from 0 to {MAX_TREE_SIZE}")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != HASH_SIZE:
            _bad_checkpoint(f"the root hash must be {HASH_SIZE} bytes")
        if size == 0 and self.root_hash != EMPTY_ROOT:
            _bad_checkpoint("a tree of size 0 has the empty-tree root, SHA-256 of nothing")
        extensions = tuple(self.extensions)
        for line in extensions:
            if not isinstance(line, str) or not line or "\n" in line or _CONTROL.search(line):
                _bad_checkpoint("extension lines must be non-empty single lines")
        object.__setattr__(self, "extensions", extensions)

    def body(self) -> str:
        """The note text: origin, decimal size, base64 root, extension lines; each + newline."""
        lines = [self.origin, str(self.size), base64.b64encode(self.root_hash).decode("ascii")]
        return "".join(f"{line}\n" for line in (*lines, *self.extensions))

    @classmethod
    def parse(cls, body: str) -> Checkpoint:
        """Parse a checkpoint body strictly (canonical size and base64, final newline)."""
        if not isinstance(body, str) or not body.endswith("\n"):
            _bad_checkpoint("a checkpoint body ends with a newline")
        if len(body) > MAX_NOTE_BYTES:
            _fail("the checkpoint body is too large", NoteFailure.TOO_LARGE)
        lines = body[:-1].split("\n")
        if len(lines) < 3:
            _bad_checkpoint("a checkpoint has an origin, a size and a root hash line")
        origin, size_text, root_text, *extensions = lines
        if not _SIZE.fullmatch(size_text):
            _bad_checkpoint(f"the size line {size_text[:30]!r} is not a canonical decimal")
        if len(size_text) > 19:  # beyond 2**63 - 1; spares int() a huge input
            _bad_checkpoint("the tree size is too large")
        try:
            root_hash = _b64decode(root_text)
        except (binascii.Error, ValueError) as ex:
            raise NoteError(
                "the root hash line is not canonical base64",
                reason=NoteFailure.INVALID_CHECKPOINT,
            ) from ex
        return cls(
            origin=origin,
            size=int(size_text),
            root_hash=root_hash,
            extensions=tuple(extensions),
        )


@dataclass(frozen=True, kw_only=True)
class VerifiedCheckpoint:
    """A checkpoint taken from a note that a trusted key signed."""

    checkpoint: Checkpoint
    """The parsed checkpoint."""

    note: OpenedNote
    """The opened note, with the signatures that vouch for it."""


def sign_checkpoint(checkpoint: Checkpoint, signers: Sequence[NoteSigner]) -> str:
    """The signed note of a checkpoint."""
    return sign_note(checkpoint.body(), signers)


def open_checkpoint(
    note: str | bytes, verifiers: Sequence[NoteVerifier], *, origin: str | None = None
) -> VerifiedCheckpoint:
    """Verify a signed checkpoint note; with ``origin``, also check which log it is from."""
    opened = open_note(note, verifiers)
    checkpoint = Checkpoint.parse(opened.text)
    if origin is not None and checkpoint.origin != origin:
        _fail(
            f"the checkpoint is from log {checkpoint.origin!r:.80}, expected {origin!r:.80}",
            NoteFailure.ORIGIN_MISMATCH,
        )
    return VerifiedCheckpoint(checkpoint=checkpoint, note=opened)


@dataclass(frozen=True, kw_only=True)
class Fork:
    """Evidence of a split view: one log, one size, two roots."""

    origin: str
    """The log that signed both."""

    size: int
    """The tree size both checkpoints claim."""

    first_root: bytes
    """Root hash of the first checkpoint."""

    second_root: bytes
    """Root hash of the second checkpoint."""


def _same_log(first: Checkpoint, second: Checkpoint) -> None:
    if first.origin != second.origin:
        _fail(
            f"checkpoints of different logs: {first.origin!r:.80} and {second.origin!r:.80}",
            NoteFailure.ORIGIN_MISMATCH,
        )


def find_fork(first: Checkpoint, second: Checkpoint) -> Fork | None:
    """A :class:`Fork` if both checkpoints have the same size and different roots.

    Only same-size checkpoints can be compared without a proof; for different sizes use
    :func:`verify_checkpoint_consistency` with a consistency proof from the log.
    """
    _same_log(first, second)
    if first.size != second.size or first.root_hash == second.root_hash:
        return None
    return Fork(
        origin=first.origin,
        size=first.size,
        first_root=first.root_hash,
        second_root=second.root_hash,
    )


def verify_checkpoint_consistency(
    older: Checkpoint, newer: Checkpoint, proof: Sequence[bytes]
) -> None:
    """Check that ``newer`` extends ``older``; raises on a fork or an invalid proof.

    Same size and different roots is reported as ``audit.note.fork`` (no proof can fix
    that); otherwise the RFC 9162 consistency proof is checked and a failure raises
    :class:`audit.errors.ProofError`.
    """
    _same_log(older, newer)
    fork = find_fork(older, newer)
    if fork is not None:
        _fail(
            f"log {fork.origin} signed two different roots for size {fork.size}: "
            f"{fork.first_root.hex()} and {fork.second_root.hex()}",
            NoteFailure.FORK,
        )
    verify_consistency(older.size, newer.size, older.root_hash, newer.root_hash, proof)
