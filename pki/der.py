"""The few DER encodings Kyso writes by hand on hot paths (the CMS of each signature, each
timestamp token), where building asn1crypto values costs more than the signature itself."""

from __future__ import annotations

from collections.abc import Iterable

INTEGER, OCTET_STRING, OBJECT_IDENTIFIER, GENERALIZED_TIME = 0x02, 0x04, 0x06, 0x18
SEQUENCE, SET, CONTEXT_0, CONTEXT_1 = 0x30, 0x31, 0xA0, 0xA1


def length(n: int) -> bytes:
    """DER length octets (X.690 §8.1.3, definite form)."""
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def tlv(tag: int, value: bytes) -> bytes:
    """One element: its tag (one octet), length and contents."""
    return bytes((tag,)) + length(len(value)) + value


def integer(value: int) -> bytes:
    """An INTEGER: two's complement, minimal (negative values are legal ASN.1)."""
    size = (value.bit_length() if value >= 0 else (-value - 1).bit_length()) // 8 + 1
    return tlv(INTEGER, value.to_bytes(size, "big", signed=True))


def set_of(encodings: Iterable[bytes]) -> bytes:
    """Contents of a SET OF: its elements' encodings in ascending order (X.690 §11.6)."""
    return b"".join(sorted(encodings))
