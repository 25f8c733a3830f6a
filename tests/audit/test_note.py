"""C2SP signed notes and checkpoints: interoperability vectors, signing, strict parsing.

Interop vectors:
- the Ed25519 note and vkey of the ``golang.org/x/mod/sumdb/note`` package documentation
  (signer "PeterNeumann");
- Sigstore Rekor's and the Pixel 6 transparency log's ECDSA P-256 checkpoints and vkeys, as
  used by transparency-dev/formats ``note/note_verifier_test.go`` (signature type 0x02).
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from audit import (
    EMPTY_ROOT,
    Checkpoint,
    Fork,
    NoteError,
    NoteFailure,
    NoteVerifier,
    ProofError,
    SignatureType,
    TreeBuilder,
    compute_key_id,
    consistency_proof,
    find_fork,
    leaf_hash,
    open_checkpoint,
    open_note,
    sign_checkpoint,
    sign_note,
    verify_checkpoint_consistency,
)
from tests.audit.signers import FixedSigner, RawEcdsaSigner, SoftwareSigner, spki

GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    GO_TEXT + "\n"
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpR"
    "Zb6KE6RyyBwJnAM=\n"
)

REKOR_VKEY = (
    "rekor.sigstore.dev+c0d23d6a+AjBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABNhtmPtrWm3U1eQXBogSMdGvXwBc"
    "K5AW5i0hrZLOC96l+smGNM7nwZ4QvFK/4sueRoVj//QP22Ni4Qt9DPfkWLc="
)
REKOR_NOTE = (
    "Rekor\n798034\nf+7CoKgXKE/tNys9TTXcr/ad6U/K3xvznmzew9y6SP0=\n\n"
    "— rekor.sigstore.dev wNI9ajBEAiARInWIWyCdyG27CO6LPnPekyw20qO0YJfoaPaowGp/XgIgc+qEHS3+GKVClgq"
    "q20uDLet7MCoTURUCRdxwWBHHufk=\n"
)
PIXEL_VKEY = (
    "pixel6_transparency_log+91c16e30+AjBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABN+4x0Jk1yTwvLFI9A4NDdG"
    "ZcX0aiWVdWM5XJVy0M4VWD3AvyW5Q6Hs9A0mcDkpUoYgn+KKPNzFC0H3nN3q6JQ8="
)
PIXEL_NOTE = (
    "DEFAULT\n10\nbsWRucJU5xJPHb5eBdOm6+DM+VelCZBuvtI3sHERJ9Y=\n\n"
    "— pixel6_transparency_log kcFuMDBFAiEAhqMAP8P6qf6QxtUJhzMhbN+MbZ9dwfUHzGQJmffJHtoCIGD0cNe47dH"
    "WBoPwYdgBCepB06/+g5O1FmYjXl06owL4\n"
)

ORIGIN = "kyso.example.vn/audit"
ROOT = hashlib.sha256(b"some root").digest()


def checkpoint(**overrides: Any) -> Checkpoint:
    values: dict[str, Any] = {"origin": ORIGIN, "size": 42, "root_hash": ROOT}
    values.update(overrides)
    return Checkpoint(**values)


@pytest.fixture(params=["ed25519", "ecdsa"])
def signer(request: pytest.FixtureRequest) -> SoftwareSigner:
    if request.param == "ed25519":
        return SoftwareSigner.ed25519(ORIGIN)
    return SoftwareSigner.ecdsa(ORIGIN)


# -- interoperability ---------------------------------------------------------------------


def test_go_sumdb_note_vector() -> None:
    verifier = NoteVerifier.from_vkey(GO_VKEY)
    assert verifier.signature_type is SignatureType.ED25519
    assert verifier.key_id == bytes.fromhex("c74f20a3")
    assert verifier.to_vkey() == GO_VKEY
    opened = open_note(GO_NOTE, [verifier])
    assert opened.text == GO_TEXT
    assert [(s.name, s.key_id.hex()) for s in opened.verified] == [("PeterNeumann", "c74f20a3")]
    assert opened.unverified == ()


def test_go_vkey_equals_the_one_built_from_the_public_key() -> None:
    raw = base64.b64decode(GO_VKEY.split("+")[2])[1:]
    der = ed25519.Ed25519PublicKey.from_public_bytes(raw).public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert NoteVerifier.from_public_key("PeterNeumann", der).to_vkey() == GO_VKEY
    assert compute_key_id("PeterNeumann", 1, raw).hex() == "c74f20a3"


@pytest.mark.parametrize(
    ("vkey", "note", "origin", "size", "root_b64"),
    [
        (REKOR_VKEY, REKOR_NOTE, "Rekor", 798034, "f+7CoKgXKE/tNys9TTXcr/ad6U/K3xvznmzew9y6SP0="),
        (PIXEL_VKEY, PIXEL_NOTE, "DEFAULT", 10, "bsWRucJU5xJPHb5eBdOm6+DM+VelCZBuvtI3sHERJ9Y="),
    ],
)
def test_ecdsa_checkpoints_from_public_logs(
    vkey: str, note: str, origin: str, size: int, root_b64: str
) -> None:
    verifier = NoteVerifier.from_vkey(vkey)
    assert verifier.signature_type is SignatureType.ECDSA_SHA256
    assert verifier.to_vkey() == vkey
    # Type 0x02 key IDs hash the SPKI alone, without the name (signed-note specification).
    assert verifier.key_id == hashlib.sha256(verifier.public_key).digest()[:4]
    verified = open_checkpoint(note.encode(), [verifier])
    assert verified.checkpoint == Checkpoint(
        origin=origin, size=size, root_hash=base64.b64decode(root_b64)
    )
    assert NoteVerifier.from_public_key(verifier.name, verifier.public_key) == verifier


def test_rekor_checkpoint_with_a_changed_size_fails() -> None:
    forged = REKOR_NOTE.replace("798034", "798035")
    with pytest.raises(NoteError, match=r"signature by rekor\.sigstore\.dev\+c0d23d6a does not"):
        open_checkpoint(forged, [NoteVerifier.from_vkey(REKOR_VKEY)])


# -- verifier keys ------------------------------------------------------------------------


def test_verifier_from_public_key_matches_signer(signer: SoftwareSigner) -> None:
    verifier = signer.verifier()
    assert verifier.name == ORIGIN
    assert verifier.key_id == signer.key_id
    assert verifier.signature_type == signer.signature_type
    again = NoteVerifier.from_vkey(verifier.to_vkey())
    assert again == verifier
    assert verifier.to_vkey().startswith(f"{ORIGIN}+{signer.key_id.hex()}+")


def test_ecdsa_key_id_does_not_depend_on_point_encoding() -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    compressed = key.public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
    )
    # A compressed-point SPKI, assembled by hand: same key, other DER.
    prefix = bytes.fromhex("3039301306072a8648ce3d020106082a8648ce3d030107032200")
    assert NoteVerifier.from_public_key("k", prefix + compressed).public_key == spki_of(key)


def spki_of(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.mark.parametrize(
    ("der", "match"),
    [
        (b"junk", "not a DER SubjectPublicKeyInfo"),
        (spki(ec.generate_private_key(ec.SECP384R1())), "unsupported audit key type"),
        (
            rsa.generate_private_key(public_exponent=65537, key_size=2048)
            .public_key()
            .public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            "unsupported audit key type .*RSA",
        ),
    ],
)
def test_from_public_key_refuses_other_keys(der: bytes, match: str) -> None:
    with pytest.raises(NoteError, match=match) as caught:
        NoteVerifier.from_public_key(ORIGIN, der)
    assert caught.value.reason is NoteFailure.INVALID_KEY


@pytest.mark.parametrize("name", ["", "has space", "a+b", "tab\there", "nbsp\u00a0x", "x" * 257])
def test_invalid_key_names(name: str) -> None:
    der = spki(ed25519.Ed25519PrivateKey.generate())
    with pytest.raises(NoteError, match="invalid key name") as caught:
        NoteVerifier.from_public_key(name, der)
    assert caught.value.code == "audit.note.invalid_key"


def _vkey(name: str, key_id: str, blob: bytes) -> str:
    return f"{name}+{key_id}+{base64.b64encode(blob).decode()}"


GO_BLOB = base64.b64decode(GO_VKEY.split("+")[2])


@pytest.mark.parametrize(
    ("vkey", "match"),
    [
        ("PeterNeumann+c74f20a3", "has the form <name>\\+<key id>\\+<key>"),
        ("PeterNeumann", "has the form"),
        ("PeterNeumann+c74f20a+" + GO_VKEY.split("+")[2], "key ID 'c74f20a' is not 8 hex"),
        ("PeterNeumann+c74f20ag+" + GO_VKEY.split("+")[2], "is not 8 hex digits"),
        ("PeterNeumann+c74f20a3+!!!!", "key material is not base64"),
        (GO_VKEY + "=", "not base64"),
        (GO_VKEY.replace("ARpc", "AR pc"), "not base64"),
        ("PeterNeumann+c74f20a3+AQ==", "key material is empty"),
        ("PeterNeumann+00000000+" + GO_VKEY.split("+")[2], "key ID 00000000 does not match"),
        ("PeterNeumann2+c74f20a3+" + GO_VKEY.split("+")[2], "does not match the public key"),
        (_vkey("PeterNeumann", "c74f20a3", b"\x04" + GO_BLOB[1:]), "unsupported signature type"),
        (_vkey("PeterNeumann", "c74f20a3", b"\x05" + GO_BLOB[1:]), "type 0x05"),
        (_vkey("PeterNeumann", "c74f20a3", GO_BLOB[:-1]), "an Ed25519 key is 32 bytes"),
        (_vkey("a b", "c74f20a3", GO_BLOB), "invalid key name"),
        (_vkey("k", "00000000", b"\x02junk"), "not a DER SubjectPublicKeyInfo"),
        (
            _vkey("k", "00000000", b"\x02" + spki(ed25519.Ed25519PrivateKey.generate())),
            "type 2 keys must be ECDSA P-256",
        ),
        ("x" * 3000, "at most 2048 characters"),
    ],
)
def test_malformed_vkeys(vkey: str, match: str) -> None:
    with pytest.raises(NoteError, match=match) as caught:
        NoteVerifier.from_vkey(vkey)
    assert caught.value.reason is NoteFailure.INVALID_KEY


def test_verifier_constructor_checks_the_key_id() -> None:
    raw = GO_BLOB[1:]
    with pytest.raises(NoteError, match="a key ID is 4 bytes"):
        NoteVerifier(name="PeterNeumann", signature_type=SignatureType.ED25519,
                     public_key=raw, key_id=b"\xc7\x4f")  # fmt: skip


# -- signing and opening ------------------------------------------------------------------


def test_sign_and_open(signer: SoftwareSigner) -> None:
    text = "Kyso\nCông an phường Bến Thành\n"
    note = sign_note(text, [signer])
    assert note.startswith(text + "\n— kyso.example.vn/audit ")
    assert note.endswith("\n")
    assert signer.calls == [text.encode()]
    raw = base64.b64decode(note.rsplit(" ", 1)[1])
    assert raw[:4] == signer.key_id
    opened = open_note(note, [signer.verifier()])
    assert opened.text == text
    assert len(opened.verified) == 1
    assert open_note(note.encode(), [signer.verifier()]) == opened


def test_ed25519_signature_line_is_deterministic() -> None:
    key = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    signer = SoftwareSigner("kyso.example.vn/audit", key)
    assert sign_note("a\n", [signer]) == sign_note("a\n", [signer])


def test_several_signers_and_unknown_cosigners() -> None:
    log, witness = SoftwareSigner.ed25519(ORIGIN), SoftwareSigner.ecdsa("witness.example/w1")
    note = sign_note("text\n", [log, witness])
    assert note.split("\n\n")[1].count("— ") == 2
    opened = open_note(note, [log.verifier()])
    assert [s.name for s in opened.verified] == [ORIGIN]
    assert [s.name for s in opened.unverified] == ["witness.example/w1"]
    both = open_note(note, [log.verifier(), witness.verifier()])
    assert (len(both.verified), both.unverified) == (2, ())
    only_witness = open_note(note, [witness.verifier()])
    assert [s.name for s in only_witness.verified] == ["witness.example/w1"]


def test_text_may_contain_blank_lines_and_dash_lines() -> None:
    signer = SoftwareSigner.ed25519(ORIGIN)
    text = "first\n\n— not a signature line\n"
    assert open_note(sign_note(text, [signer]), [signer.verifier()]).text == text


def test_duplicate_signature_lines_are_verified_once() -> None:
    signer = SoftwareSigner.ed25519(ORIGIN)
    note = sign_note("text\n", [signer])
    line = note.split("\n\n", 1)[1]
    opened = open_note(note + line, [signer.verifier()])
    assert len(opened.verified) == 1


def test_tampered_text_is_a_bad_signature(signer: SoftwareSigner) -> None:
    note = sign_note("size 42\n", [signer])
    with pytest.raises(NoteError, match="does not verify") as caught:
        open_note(note.replace("42", "43"), [signer.verifier()])
    assert caught.value.reason is NoteFailure.BAD_SIGNATURE
    assert caught.value.code == "audit.note.bad_signature"
    assert "keep it as evidence" in caught.value.diagnostics()


def test_a_bad_signature_rejects_the_note_even_with_a_good_one() -> None:
    good, other = SoftwareSigner.ed25519(ORIGIN), SoftwareSigner.ed25519("other.example/log")
    note = sign_note("text\n", [good])
    impostor = FixedSigner("other.example/log", other.private_key, output=bytes(64))
    forged = note + sign_note("text\n", [impostor]).split("\n\n", 1)[1]
    with pytest.raises(NoteError, match=r"other\.example/log\+[0-9a-f]{8} does not verify"):
        open_note(forged, [good.verifier(), other.verifier()])


def test_signature_by_another_key_of_the_same_name_is_unknown_key() -> None:
    trusted, rotated = SoftwareSigner.ed25519(ORIGIN), SoftwareSigner.ed25519(ORIGIN)
    note = sign_note("text\n", [rotated])
    with pytest.raises(NoteError, match="but the trusted key ID is") as caught:
        open_note(note, [trusted.verifier()])
    assert caught.value.reason is NoteFailure.UNKNOWN_KEY
    assert f"{ORIGIN}+{rotated.key_id.hex()}" in str(caught.value)
    assert "rotated its key" in caught.value.diagnostics()


def test_wrong_key_id_on_the_line_is_unknown_key() -> None:
    signer = SoftwareSigner.ed25519(ORIGIN)
    note = sign_note("text\n", [signer])
    head, encoded = note.rsplit(" ", 1)
    raw = base64.b64decode(encoded)
    relabelled = f"{head} {base64.b64encode(bytes(4) + raw[4:]).decode()}\n"
    with pytest.raises(NoteError, match=r"signed by kyso\.example\.vn/audit\+00000000") as caught:
        open_note(relabelled, [signer.verifier()])
    assert caught.value.reason is NoteFailure.UNKNOWN_KEY


def test_same_key_id_under_another_name_is_ignored() -> None:
    signer = SoftwareSigner.ed25519(ORIGIN)
    note = sign_note("text\n", [signer]).replace(f"— {ORIGIN} ", "— impostor.example ")
    with pytest.raises(NoteError, match="no signature by a trusted key") as caught:
        open_note(note, [signer.verifier()])
    assert caught.value.reason is NoteFailure.NO_TRUSTED_SIGNATURE


def test_no_verifiers_means_no_trusted_signature() -> None:
    with pytest.raises(NoteError, match="no signature by a trusted key") as caught:
        open_note(GO_NOTE, [])
    assert caught.value.code == "audit.note.no_trusted_signature"


def test_ambiguous_trust_list_is_refused() -> None:
    v = NoteVerifier.from_vkey(GO_VKEY)
    assert open_note(GO_NOTE, [v, NoteVerifier.from_vkey(GO_VKEY)]).text == GO_TEXT
    clash = object.__new__(NoteVerifier)  # same (name, ID), other key: only a forger makes it
    for name, value in vars(v).items():
        object.__setattr__(clash, name, value)
    object.__setattr__(clash, "public_key", bytes(32))
    with pytest.raises(NoteError, match="ambiguous trusted keys for PeterNeumann\\+c74f20a3"):
        open_note(GO_NOTE, [v, clash])


@pytest.mark.parametrize(
    ("note", "reason", "match"),
    [
        (GO_NOTE.replace("\n\n", "\n"), NoteFailure.MALFORMED, "no blank line"),
        (GO_NOTE[:-1], NoteFailure.MALFORMED, "not newline-terminated"),
        (GO_TEXT + "\n", NoteFailure.MALFORMED, "signature block is empty"),
        (GO_NOTE.replace("If you", "If\tyou"), NoteFailure.MALFORMED, "control character U\\+0009"),
        (GO_NOTE.replace("\n", "\r\n"), NoteFailure.MALFORMED, "control character U\\+000D"),
        (GO_NOTE.replace("If", "If\x00"), NoteFailure.MALFORMED, "control character U\\+0000"),
        (GO_NOTE.replace("If", "If\x1b[31m"), NoteFailure.MALFORMED, "U\\+001B"),
        (GO_NOTE.replace("— ", "- "), NoteFailure.MALFORMED, "does not start with an em dash"),
        (GO_NOTE.replace("— ", "—"), NoteFailure.MALFORMED, "does not start with an em dash"),
        (GO_NOTE.replace("— PeterNeumann ", "— PeterNeumann"), NoteFailure.MALFORMED, "no valid"),
        (GO_NOTE.replace("— PeterNeumann ", "— Peter+Neumann "), NoteFailure.MALFORMED, "key name"),
        (GO_NOTE.replace("x08go/", "x08go!"), NoteFailure.MALFORMED, "is not base64"),
        (GO_NOTE.replace("JnAM=", "JnAM"), NoteFailure.MALFORMED, "is not base64"),
        (GO_NOTE.replace("JnAM=", "JnAN="), NoteFailure.MALFORMED, "is not base64"),
        (GO_NOTE + "\n", NoteFailure.MALFORMED, "empty or not newline-terminated"),
        (GO_TEXT + "\n— PeterNeumann AAAAAA==\n", NoteFailure.MALFORMED, "bad length"),
        (
            GO_NOTE + "".join(f"— n{i} AAAAAAA=\n" for i in range(100)),
            NoteFailure.TOO_LARGE,
            "101 signatures, the limit is 100",
        ),
        ("x" * (256 * 1024) + "\n\n— a AAAAAAA=\n", NoteFailure.TOO_LARGE, "the limit is 262144"),
    ],
)
def test_malformed_notes(note: str, reason: NoteFailure, match: str) -> None:
    with pytest.raises(NoteError, match=match) as caught:
        open_note(note, [NoteVerifier.from_vkey(GO_VKEY)])
    assert caught.value.reason is reason


def test_note_bytes_must_be_utf8() -> None:
    with pytest.raises(NoteError, match="not valid UTF-8") as caught:
        open_note(GO_NOTE.encode().replace(b"If", b"I\xff"), [NoteVerifier.from_vkey(GO_VKEY)])
    assert caught.value.reason is NoteFailure.MALFORMED
    with pytest.raises(NoteError, match="the limit is 262144"):
        open_note(b"x" * (256 * 1024 + 1), [])


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("no newline", "must end with a newline"),
        ("", "must end with a newline"),
        ("bell\x07\n", "control character U\\+0007"),
        ("cr\r\n", "control character U\\+000D"),
        ("\ud800\n", "not valid Unicode"),
    ],
)
def test_sign_note_refuses_bad_text(text: str, match: str) -> None:
    signer = SoftwareSigner.ed25519(ORIGIN)
    with pytest.raises(NoteError, match=match) as caught:
        sign_note(text, [signer])
    assert caught.value.reason is NoteFailure.MALFORMED
    assert signer.calls == []


def test_sign_note_refuses_bad_signers() -> None:
    good = SoftwareSigner.ed25519(ORIGIN)
    with pytest.raises(NoteError, match="at least one signer") as caught:
        sign_note("a\n", [])
    assert caught.value.reason is NoteFailure.INVALID_SIGNER
    with pytest.raises(NoteError, match="invalid signer name 'has space'"):
        sign_note("a\n", [SoftwareSigner.ed25519("has space")])
    with pytest.raises(NoteError, match="appears twice"):
        sign_note("a\n", [good, good])
    with pytest.raises(NoteError, match="the key ID must be 4 bytes"):
        sign_note("a\n", [_WithKeyId(good, b"\x00\x01")])


class _WithKeyId:
    def __init__(self, inner: SoftwareSigner, key_id: bytes) -> None:
        self.inner, self.key_id = inner, key_id
        self.name, self.signature_type = inner.name, inner.signature_type

    def sign(self, message: bytes) -> bytes:
        return self.inner.sign(message)


@pytest.mark.parametrize(
    ("signer", "match"),
    [
        (FixedSigner(ORIGIN, ed25519.Ed25519PrivateKey.generate(), output=b""), "no usable"),
        (FixedSigner(ORIGIN, ed25519.Ed25519PrivateKey.generate(), output=bytes(63)), "63 bytes"),
        (
            FixedSigner(ORIGIN, ec.generate_private_key(ec.SECP256R1()), output=bytes(10_000)),
            "no usable signature",
        ),
        (RawEcdsaSigner(ORIGIN, ec.generate_private_key(ec.SECP256R1())), "not DER"),
    ],
)
def test_sign_note_refuses_malformed_signatures(signer: SoftwareSigner, match: str) -> None:
    with pytest.raises(NoteError, match=match) as caught:
        sign_note("a\n", [signer])
    assert caught.value.reason is NoteFailure.INVALID_SIGNER


def test_signer_errors_propagate_unchanged() -> None:
    class HsmDown(Exception):
        code = "hsm.unavailable"

    class Failing(SoftwareSigner):
        def sign(self, message: bytes) -> bytes:
            raise HsmDown("token gone")

    with pytest.raises(HsmDown, match="token gone"):
        sign_note("a\n", [Failing(ORIGIN, ed25519.Ed25519PrivateKey.generate())])


# -- checkpoints --------------------------------------------------------------------------


def test_checkpoint_body_format() -> None:
    cp = checkpoint(extensions=("ext one", "ext two"))
    root64 = base64.b64encode(ROOT).decode()
    assert cp.body() == f"{ORIGIN}\n42\n{root64}\next one\next two\n"
    assert Checkpoint.parse(cp.body()) == cp
    assert checkpoint(size=0, root_hash=EMPTY_ROOT).body().split("\n")[1] == "0"


def test_sign_and_open_checkpoint(signer: SoftwareSigner) -> None:
    cp = checkpoint()
    note = sign_checkpoint(cp, [signer])
    verified = open_checkpoint(note, [signer.verifier()], origin=ORIGIN)
    assert verified.checkpoint == cp
    assert verified.note.text == cp.body()


def test_checkpoint_from_another_log_is_refused() -> None:
    signer = SoftwareSigner.ed25519(ORIGIN)
    note = sign_checkpoint(checkpoint(origin="other.example/log"), [signer])
    with pytest.raises(NoteError, match=r"from log 'other\.example/log', expected") as caught:
        open_checkpoint(note, [signer.verifier()], origin=ORIGIN)
    assert caught.value.reason is NoteFailure.ORIGIN_MISMATCH


def test_signed_note_that_is_not_a_checkpoint() -> None:
    signer = SoftwareSigner.ed25519(ORIGIN)
    with pytest.raises(NoteError, match="origin, a size and a root hash") as caught:
        open_checkpoint(sign_note("just text\n", [signer]), [signer.verifier()])
    assert caught.value.reason is NoteFailure.INVALID_CHECKPOINT


R64 = base64.b64encode(ROOT).decode()


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (f"{ORIGIN}\n42\n{R64}", "ends with a newline"),
        (f"{ORIGIN}\n42\n", "an origin, a size and a root hash"),
        (f"\n42\n{R64}\n", "origin must be 1 to 256"),
        (f"{ORIGIN}\n042\n{R64}\n", "'042' is not a canonical decimal"),
        (f"{ORIGIN}\n+42\n{R64}\n", "not a canonical decimal"),
        (f"{ORIGIN}\n-1\n{R64}\n", "not a canonical decimal"),
        (f"{ORIGIN}\n 42\n{R64}\n", "not a canonical decimal"),
        (f"{ORIGIN}\n4_2\n{R64}\n", "not a canonical decimal"),
        (f"{ORIGIN}\n٤٢\n{R64}\n", "not a canonical decimal"),
        (f"{ORIGIN}\n\n{R64}\n", "not a canonical decimal"),
        (f"{ORIGIN}\n{2**63}\n{R64}\n", "tree size must be an integer from 0"),
        (f"{ORIGIN}\n{'9' * 40}\n{R64}\n", "tree size is too large"),
        (f"{ORIGIN}\n42\n{R64[:-1]}\n", "root hash line is not canonical base64"),
        (f"{ORIGIN}\n42\n{R64[:-2]}B=\n", "not canonical base64"),
        (f"{ORIGIN}\n42\n{R64} \n", "not canonical base64"),
        (f"{ORIGIN}\n42\n{base64.b64encode(ROOT[:31]).decode()}\n", "must be 32 bytes"),
        (f"{ORIGIN}\n42\n{R64}\n\n", "extension lines must be non-empty"),
        (f"{ORIGIN}\n42\n{R64}\next\n\nmore\n", "extension lines must be non-empty"),
        (f"{ORIGIN}\n0\n{R64}\n", "a tree of size 0 has the empty-tree root"),
        (f"{ORIGIN}\x01\n42\n{R64}\n", "without control characters"),
    ],
)
def test_checkpoint_parse_is_strict(body: str, match: str) -> None:
    with pytest.raises(NoteError, match=match) as caught:
        Checkpoint.parse(body)
    assert caught.value.reason is NoteFailure.INVALID_CHECKPOINT


def test_checkpoint_origin_may_contain_spaces_per_spec() -> None:
    body = f"go.sum database tree\n42\n{R64}\n"
    assert Checkpoint.parse(body).origin == "go.sum database tree"


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"size": -1}, "tree size must be an integer"),
        ({"size": True}, "tree size must be an integer"),
        ({"root_hash": ROOT.hex()}, "root hash must be 32 bytes"),
        ({"origin": "two\nlines"}, "one line"),
        ({"extensions": ("",)}, "extension lines must be non-empty"),
        ({"extensions": ("a\nb",)}, "extension lines must be non-empty single lines"),
    ],
)
def test_checkpoint_constructor_checks(overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(NoteError, match=match):
        checkpoint(**overrides)


# -- forks and consistency ----------------------------------------------------------------


def tree(n: int) -> tuple[list[bytes], dict[tuple[int, int], bytes]]:
    builder, nodes, roots = TreeBuilder(), {}, [EMPTY_ROOT]
    for i in range(n):
        for level, index, value in builder.append(leaf_hash(b"event %d" % i)):
            nodes[level, index] = value
        roots.append(builder.root())
    return roots, nodes


def test_same_size_different_root_is_a_fork() -> None:
    a = checkpoint(size=7, root_hash=hashlib.sha256(b"a").digest())
    b = checkpoint(size=7, root_hash=hashlib.sha256(b"b").digest())
    assert find_fork(a, a) is None
    assert find_fork(a, checkpoint(size=8)) is None
    assert find_fork(a, b) == Fork(
        origin=ORIGIN, size=7, first_root=a.root_hash, second_root=b.root_hash
    )
    with pytest.raises(NoteError, match="signed two different roots for size 7") as caught:
        verify_checkpoint_consistency(a, b, [])
    assert caught.value.reason is NoteFailure.FORK
    assert "proof of misbehaviour" in caught.value.diagnostics()


def test_forked_signed_checkpoints_are_caught_by_an_auditor() -> None:
    """The log signs two views of size 5; each verifies alone, together they prove a fork."""
    signer = SoftwareSigner.ed25519(ORIGIN)
    honest_roots, _ = tree(5)
    evil = TreeBuilder()
    for i in range(5):
        evil.append(leaf_hash(b"event %d" % i if i != 3 else b"rewritten history"))
    notes = [
        sign_checkpoint(checkpoint(size=5, root_hash=r), [signer])
        for r in (honest_roots[5], evil.root())
    ]
    seen = [open_checkpoint(n, [signer.verifier()], origin=ORIGIN).checkpoint for n in notes]
    fork = find_fork(*seen)
    assert fork is not None
    assert fork.size == 5


def test_checkpoints_of_different_logs_cannot_be_compared() -> None:
    with pytest.raises(NoteError, match="checkpoints of different logs") as caught:
        find_fork(checkpoint(), checkpoint(origin="other.example/log"))
    assert caught.value.reason is NoteFailure.ORIGIN_MISMATCH


def test_checkpoint_consistency() -> None:
    roots, nodes = tree(20)
    older = checkpoint(size=7, root_hash=roots[7])
    newer = checkpoint(size=20, root_hash=roots[20])
    proof = consistency_proof(7, 20, lambda level, index: nodes[level, index])
    verify_checkpoint_consistency(older, newer, proof)
    verify_checkpoint_consistency(older, older, [])
    with pytest.raises(ProofError, match="does not lead to the second root"):
        verify_checkpoint_consistency(older, checkpoint(size=20, root_hash=ROOT), proof)
    with pytest.raises(ProofError, match="from size 20 to the smaller size 7"):
        verify_checkpoint_consistency(newer, older, proof)
