"""The few DER structures the HSM layer emits, encoded by hand.

``hsm`` stays a leaf that depends on python-pkcs11 only, and these encoders sit on the
hot signing path (an ECDSA signature is re-encoded on every call), so a dozen lines of
DER beat a general ASN.1 library here.
"""

from __future__ import annotations


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def tlv(tag: int, value: bytes) -> bytes:
    return bytes((tag,)) + _length(len(value)) + value


def _magnitude(value: bytes) -> bytes:
    """INTEGER contents of a non-negative big-endian number: minimal, with a 0x00 ahead of a
    set top bit so that it does not read as negative."""
    value = value.lstrip(b"\x00") or b"\x00"
    return b"\x00" + value if value[0] & 0x80 else value


def integer(value: bytes) -> bytes:
    """A non-negative INTEGER from its big-endian magnitude."""
    return tlv(0x02, _magnitude(value))


def sequence(*items: bytes) -> bytes:
    return tlv(0x30, b"".join(items))


def bit_string(value: bytes) -> bytes:
    return tlv(0x03, b"\x00" + value)


def _short_integer(value: bytes) -> bytes:
    value = _magnitude(value)
    return b"\x02" + bytes((len(value),)) + value


def ecdsa_signature(raw: bytes) -> bytes:
    """PKCS#11 ``r‖s`` → DER ``ECDSA-Sig-Value``.

    On the signing path for every ECDSA signature: for P-256 and P-384 every length fits
    in one byte, so the general encoder is skipped.
    """
    half = len(raw) // 2
    if half > 60:
        return sequence(integer(raw[:half]), integer(raw[half:]))
    body = _short_integer(raw[:half]) + _short_integer(raw[half:])
    return b"\x30" + bytes((len(body),)) + body


RSA_ALGORITHM = sequence(tlv(0x06, bytes.fromhex("2a864886f70d010101")), b"\x05\x00")
EC_ALGORITHM_OID = tlv(0x06, bytes.fromhex("2a8648ce3d0201"))
ED25519_ALGORITHM = sequence(tlv(0x06, bytes.fromhex("2b6570")))


def rsa_spki(modulus: bytes, exponent: bytes) -> bytes:
    return sequence(RSA_ALGORITHM, bit_string(sequence(integer(modulus), integer(exponent))))


def ec_spki(curve_params: bytes, point: bytes) -> bytes:
    """``curve_params`` is the DER of the named-curve OID (CKA_EC_PARAMS)."""
    return sequence(sequence(EC_ALGORITHM_OID, curve_params), bit_string(point))


def ed25519_spki(point: bytes) -> bytes:
    return sequence(ED25519_ALGORITHM, bit_string(point))


def ec_point(value: bytes, raw_length: int) -> bytes:
    """CKA_EC_POINT is specified as a DER OCTET STRING around the point, but some tokens
    return the bare point; the expected bare length tells the two apart unambiguously."""
    if len(value) == raw_length:
        return value
    header = 2 if raw_length < 0x80 else 3
    if len(value) == raw_length + header and value[0] == 0x04:
        return value[header:]
    raise ValueError("unexpected CKA_EC_POINT encoding")
