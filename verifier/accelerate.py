"""Process-wide speed-ups for a verifier worker: same answers, less repeated work.

pyHanko and pyhanko-certvalidator redo, for every document, work whose result depends
only on material many documents share: the certification path of a signer (or of a TSA)
and the revocation data about it, the string preparation of the same certificate names.
A worker keeps those results; it never keeps anything keyed by a document's own content,
so no verdict about one document is ever reused for another.

- **Validated paths.** A path that pyhanko-certvalidator accepted is remembered under the
  digest of its certificates, of every CRL and OCSP response its validation context holds
  and of the policy that built the context (:func:`mark_context`). The same path with the
  same revocation data under the same policy is accepted again without redoing the RFC
  5280 processing, for at most :data:`PATH_TTL`, never at or past the end of a
  certificate's validity or the ``nextUpdate`` of any revocation data in the context, and
  never before the moment it was validated. Rejected paths are not remembered: a failure
  is always worked out in full. Contexts that fetch over the network are never cached.
- **Name comparison.** RFC 5280 comparison of two names is a pure function of their
  encodings, and RFC 4518 preparation of a name value a pure function of the string;
  both are memoised.
- **Tokens.** pyHanko's PDF tokenizer reads one byte at a time. For the in-memory streams
  the verifier parses, whitespace runs, names, delimited tokens and hex strings (a
  signature's ``/Contents`` is kilobytes of hex) are matched at once with the same
  character classes; whatever the fast path does not cover exactly (comments, ``#``
  escapes in names, bytes outside printable ASCII, other kinds of stream) goes to
  pyHanko's own reader, so the objects read are the same.

:func:`install` is called once per worker process (the service itself never verifies);
:func:`uninstall` puts pyHanko back as it was (tests compare the two).
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from io import BytesIO
from typing import Any

import pyhanko_certvalidator
from asn1crypto import crl, ocsp, x509
from pyhanko.pdf_utils import generic, misc
from pyhanko_certvalidator.authority import AuthorityWithCert
from pyhanko_certvalidator.context import ValidationContext
from pyhanko_certvalidator.path import ValidationPath
from pyhanko_certvalidator.revinfo import archival

PATH_TTL = timedelta(seconds=60)
"""How long a validated path is reused at most."""

MAX_PATHS = 1024
"""Validated paths remembered per process (least recently used dropped first)."""

_MARK = "_kyso_policy_digest"
_WHITESPACE = misc.PDF_WHITESPACE
_DELIMITERS = misc.PDF_DELIMITERS
_HEX_BODY = re.compile(rb"[0-9A-Fa-f" + re.escape(_WHITESPACE) + rb"]*>")
_WHITESPACE_RUN = re.compile(rb"[" + re.escape(_WHITESPACE) + rb"]*")
_UNTIL_DELIMITER = re.compile(rb"[^" + re.escape(_WHITESPACE + _DELIMITERS) + rb"]*")
# A name pyHanko decodes without escapes: printable ASCII that is neither a delimiter nor #.
_PLAIN_NAME = re.compile(
    rb"/[" + re.escape(bytes(b for b in range(0x21, 0x7F) if b not in _DELIMITERS + b"#")) + rb"]*"
)

# find_valid_path (how pyHanko validates a signer's or a TSA's path) calls the name
# bound in the package module, which is where the cache goes in.
_original_validate_path: Callable[..., Any] = pyhanko_certvalidator.async_validate_path  # type: ignore[attr-defined]
_original_read_hex: Callable[..., Any] = generic.read_hex_string_from_stream
_original_prep: Callable[..., Any] = x509.NameTypeAndValue._ldap_string_prep
_original_non_whitespace: Callable[..., Any] = misc.read_non_whitespace
_original_until_delimiter: Callable[..., Any] = misc.read_until_delimiter
_original_read_name: Callable[..., Any] = generic.NameObject.read_from_stream
_original_name_eq: Callable[..., Any] = x509.Name.__eq__  # for uninstall()


def _patches() -> list[tuple[object, str, object, object]]:
    """(owner, attribute, original, replacement) for every speed-up."""
    return [
        (pyhanko_certvalidator, "async_validate_path", _original_validate_path, _validate_path),
        (generic, "read_hex_string_from_stream", _original_read_hex, _read_hex_string),
        (x509.NameTypeAndValue, "_ldap_string_prep", _original_prep, _prep),
        (x509.Name, "__eq__", _original_name_eq, _name_equal),
        (misc, "read_non_whitespace", _original_non_whitespace, _read_non_whitespace),
        (generic, "read_non_whitespace", _original_non_whitespace, _read_non_whitespace),
        (misc, "read_until_delimiter", _original_until_delimiter, _read_until_delimiter),
        (generic, "read_until_delimiter", _original_until_delimiter, _read_until_delimiter),
        (
            generic.NameObject,
            "read_from_stream",
            staticmethod(_original_read_name),
            staticmethod(_read_name),
        ),
    ]


def install() -> None:
    """Install every speed-up in this process (idempotent)."""
    for owner, attribute, _, replacement in _patches():
        setattr(owner, attribute, replacement)


def uninstall() -> None:
    """Put pyHanko and its libraries back as they were; forget every validated path."""
    for owner, attribute, original, _ in _patches():
        setattr(owner, attribute, original)
    PATHS.clear()
    _names_equal.cache_clear()
    _prep_cached.cache_clear()


def mark_context(context: ValidationContext, policy_digest: str) -> None:
    """Let validated paths of ``context`` be remembered; ``policy_digest`` must change
    whenever anything but its revocation data and certificates would change a verdict
    (anchors, other certificates, constraints). Contexts that may fetch are not marked."""
    if not context.fetching_allowed:
        setattr(context, _MARK, policy_digest)


@dataclass(frozen=True, kw_only=True)
class Validated:
    """A path accepted at ``at``, reusable until just before ``until``."""

    at: datetime
    until: datetime
    policies: Any
    """The qualified policies the validation set on the path."""


class PathCache:
    """Validated paths under their key; an LRU bounded to :data:`MAX_PATHS`."""

    def __init__(self, size: int = MAX_PATHS) -> None:
        self._size = size
        self._entries: OrderedDict[bytes, Validated] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: bytes, moment: datetime) -> Validated | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or not (entry.at <= moment < entry.until):
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry

    def put(self, key: bytes, entry: Validated) -> None:
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

    def entries(self) -> list[Validated]:
        with self._lock:
            return list(self._entries.values())

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.hits = self.misses = 0


PATHS = PathCache()


async def _validate_path(
    validation_context: ValidationContext, path: ValidationPath, parameters: Any = None
) -> Any:
    key = _path_key(validation_context, path, parameters)
    if key is None:
        return await _original_validate_path(validation_context, path, parameters)
    moment = validation_context.moment
    entry = PATHS.get(key, moment)
    if entry is not None:
        _replay(validation_context, path, entry.policies)
        return path.last
    result = await _original_validate_path(validation_context, path, parameters)
    until = min(moment + PATH_TTL, _horizon(validation_context, path))
    if until > moment:
        PATHS.put(key, Validated(at=moment, until=until, policies=path.qualified_policies()))
    return result


def _path_key(context: ValidationContext, path: ValidationPath, parameters: Any) -> bytes | None:
    policy_digest = getattr(context, _MARK, None)
    authority = path.trust_anchor.authority
    if (
        policy_digest is None
        or context.fetching_allowed
        or not isinstance(authority, AuthorityWithCert)
        or not isinstance(path.leaf, x509.Certificate)
    ):
        return None
    digest = hashlib.sha256(policy_digest.encode())
    digest.update(repr(parameters).encode())
    digest.update(repr(path.trust_anchor.trust_qualifiers).encode())
    timing = context.timing_params
    if timing.point_in_time_validation:
        digest.update(timing.validation_time.isoformat().encode())
        digest.update(timing.best_signature_time.isoformat().encode())
    for cert in path.iter_certs(include_root=True):
        digest.update(hashlib.sha256(cert.dump()).digest())
    digest.update(b"|")
    for item in sorted(hashlib.sha256(r.dump()).digest() for r in _revocation_data(context)):
        digest.update(item)
    return digest.digest()


def _revocation_data(
    context: ValidationContext,
) -> Iterable[crl.CertificateList | ocsp.OCSPResponse]:
    yield from context.crls
    yield from context.ocsps


def _horizon(context: ValidationContext, path: ValidationPath) -> datetime:
    """The first moment the verdict on ``path`` could change with time alone."""
    moment = context.moment
    times = [cert["tbs_certificate"]["validity"]["not_after"].native for cert in path]
    for item in _revocation_data(context):
        for this_update, next_update in _windows(item):
            if this_update is None:
                continue
            if this_update > moment:
                times.append(this_update)  # data that becomes usable later
            times.append(next_update or this_update + archival.FRESHNESS_FALLBACK_VALIDITY_DEFAULT)  # type: ignore[attr-defined]
    return min(times)  # type: ignore[no-any-return]


def _windows(
    item: crl.CertificateList | ocsp.OCSPResponse,
) -> Iterable[tuple[datetime | None, datetime | None]]:
    try:
        if isinstance(item, crl.CertificateList):
            tbs = item["tbs_cert_list"]
            yield tbs["this_update"].native, tbs["next_update"].native
            return
        basic = item["response_bytes"]["response"].parsed
        for single in basic["tbs_response_data"]["responses"]:
            yield single["this_update"].native, single["next_update"].native
    except (ValueError, TypeError, KeyError, AttributeError):
        # Unreadable data never made a path valid; it cannot end a cached verdict either.
        return


def _replay(context: ValidationContext, path: ValidationPath, policies: Any) -> None:
    """What validating ``path`` leaves behind: the partial paths recorded as validated in
    ``context`` and the qualified policies on ``path``."""
    authority = path.trust_anchor.authority
    completed = ValidationPath(path.trust_anchor, interm=[], leaf=None)
    if isinstance(authority, AuthorityWithCert):
        context.record_validation(authority.certificate, completed)  # type: ignore[no-untyped-call]
    for cert in path.iter_certs(include_root=False):
        completed = completed.copy_and_append(cert)
        context.record_validation(cert, completed)  # type: ignore[no-untyped-call]
    if policies is not None:
        path._set_qualified_policies(policies)  # type: ignore[no-untyped-call]
        completed._set_qualified_policies(policies)  # type: ignore[no-untyped-call]


def _read_non_whitespace(stream: Any, seek_back: bool = False, allow_eof: bool = False) -> Any:
    if type(stream) is not BytesIO:
        return _original_non_whitespace(stream, seek_back, allow_eof)
    with stream.getbuffer() as view:
        found = _WHITESPACE_RUN.match(view, stream.tell())
        end = found.end() if found else stream.tell()
        token = bytes(view[end : end + 1])
    if token == b"%":
        return _original_non_whitespace(stream, seek_back, allow_eof)  # comments
    if not token:
        stream.seek(end)
        if allow_eof:
            return b""
        raise misc.PdfStreamError("Stream ended prematurely")
    stream.seek(end if seek_back else end + 1)
    return token


def _read_until_delimiter(stream: Any) -> Any:
    if type(stream) is not BytesIO:
        return _original_until_delimiter(stream)
    start = stream.tell()
    with stream.getbuffer() as view:
        found = _UNTIL_DELIMITER.match(view, start)
        end = found.end() if found else start
        token = bytes(view[start:end])
    stream.seek(end)
    return token


def _read_name(stream: Any) -> Any:
    if type(stream) is not BytesIO:
        return _original_read_name(stream)
    start = stream.tell()
    with stream.getbuffer() as view:
        found = _PLAIN_NAME.match(view, start)
        end = found.end() if found else start
        # Plain only if the name stops at a delimiter or at the end, as pyHanko's does.
        plain = found is not None and (end >= len(view) or view[end] in _WHITESPACE + _DELIMITERS)
        name = bytes(view[start:end]) if plain else b""
    if not plain:
        return _original_read_name(stream)
    stream.seek(end)
    return generic.NameObject(name.decode("ascii"))


def _read_hex_string(stream: Any) -> Any:
    if type(stream) is BytesIO:
        start = stream.tell()
        with stream.getbuffer() as view:
            # The opening "<" is at ``start``; pyHanko's reader skips it the same way.
            found = _HEX_BODY.match(view, start + 1)
            body = bytes(view[start + 1 : found.end() - 1]) if found else None
        if found is not None and body is not None:
            digits = body.translate(None, _WHITESPACE)
            stream.seek(found.end())
            odd = b"0" if len(digits) % 2 else b""
            return generic.pdf_string(binascii.unhexlify(digits + odd))
    return _original_read_hex(stream)


def _name_equal(self: x509.Name, other: object) -> bool:
    if not isinstance(other, x509.Name):
        return False
    # The RDN sequences, not the names: a name inside a GeneralName carries a tag of its
    # own that is not part of what is compared.
    return _names_equal(self.chosen.dump(), other.chosen.dump())


@functools.lru_cache(maxsize=4096)
def _names_equal(first: bytes, second: bytes) -> bool:
    return first == second or bool(x509.RDNSequence.load(first) == x509.RDNSequence.load(second))


@functools.lru_cache(maxsize=4096)
def _prep_cached(string: str) -> str:
    return str(_original_prep(None, string))


def _prep(self: Any, string: Any) -> Any:
    if isinstance(string, str):
        return _prep_cached(string)
    return _original_prep(self, string)
