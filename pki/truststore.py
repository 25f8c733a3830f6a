"""The trust store: the anchors a certificate must chain to, and a pool of intermediates.

A folder holds ``anchors/*.pem`` (self-signed roots, or intermediates trusted explicitly)
and ``intermediates/*.pem`` (untrusted certificates that only help path building); each
file may hold several PEM certificates. The internal root is not kept there: the caller
passes it as an extra anchor. A :class:`TrustStore` is an immutable snapshot;
:class:`TrustStoreHolder` reloads it and adds anchors.

Key-free: the verifier validates untrusted certificates against it, so it never imports
:mod:`hsm`. pyhanko-certvalidator does the path validation (RFC 5280 §6).
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Literal

from asn1crypto import crl, ocsp, x509
from cryptography import x509 as crypto_x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import PathError, ValidationError
from pyhanko_certvalidator.fetchers.api import Fetchers

from pki.certificates import MAX_CERTIFICATES_BYTES, load_certificates, to_pem, to_utc
from pki.errors import ConflictError, InvalidInputError
from pki.names import display_name

ANCHORS = "anchors"
INTERMEDIATES = "intermediates"
MAX_TRUST_FILES = 256
"""At most this many ``*.pem`` files in ``anchors/`` and ``intermediates/`` together."""

_CODE = "pki.trust_store"
_LABEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

RevocationMode = Literal["none", "soft-fail", "hard-fail", "require"]
"""pyhanko-certvalidator's revocation modes; ``none`` checks no revocation at all."""


def fingerprint(certificate: x509.Certificate) -> str:
    """The SHA-256 fingerprint of the DER certificate, lowercase hex."""
    return str(certificate.sha256.hex())


def _require_ca(certificate: x509.Certificate, *, what: str) -> None:
    problem = None
    if not certificate.ca:
        problem = "is not a CA certificate (basicConstraints CA:true)"
    elif (usage := certificate.key_usage_value) is not None and "key_cert_sign" not in usage.native:
        problem = "may not sign certificates (its keyUsage lacks keyCertSign)"
    if problem is not None:
        raise InvalidInputError(
            f"{what}: {display_name(certificate.subject)} {problem}", code=_CODE
        )


def _self_signed(certificate: x509.Certificate) -> bool:
    parsed = crypto_x509.load_der_x509_certificate(certificate.dump())
    try:
        parsed.verify_directly_issued_by(parsed)
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return True


def _read_file(path: Path, *, what: str) -> list[x509.Certificate]:
    # is_file() first: opening a FIFO dropped into the folder would block the reload.
    if not path.is_file():
        raise InvalidInputError(f"{what} is not a regular file", code=_CODE)
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_CERTIFICATES_BYTES + 1)
    except OSError as ex:
        raise InvalidInputError(f"{what} cannot be read: {ex.strerror}", code=_CODE) from ex
    try:
        certificates = load_certificates(data)
    except InvalidInputError as ex:
        raise InvalidInputError(f"{what}: {ex.message}", code=_CODE) from ex
    for certificate in certificates:
        _require_ca(certificate, what=what)
    return certificates


def _pem_files(directory: Path, kind: str) -> list[Path]:
    # scandir, not glob: glob would treat an unreadable folder as empty. islice: a folder
    # flooded with files is refused without listing all of it.
    folder = directory / kind
    try:
        with os.scandir(folder) as entries:
            names = list(
                islice(
                    (entry.name for entry in entries if entry.name.endswith(".pem")),
                    MAX_TRUST_FILES + 1,
                )
            )
    except FileNotFoundError:
        return []
    except OSError as ex:
        raise InvalidInputError(f"{kind}/ cannot be listed: {ex.strerror}", code=_CODE) from ex
    return sorted(folder / name for name in names)


def _unique(
    certificates: Iterable[x509.Certificate], *, exclude: Iterable[x509.Certificate] = ()
) -> tuple[x509.Certificate, ...]:
    seen = {fingerprint(certificate) for certificate in exclude}
    unique = []
    for certificate in certificates:
        if (digest := fingerprint(certificate)) not in seen:
            seen.add(digest)
            unique.append(certificate)
    return tuple(unique)


@dataclass(frozen=True, kw_only=True)
class TrustEntry:
    """One certificate of the trust store, as shown to operators."""

    subject: str
    """The subject for people (:func:`pki.names.display_name`), Vietnamese intact."""

    fingerprint: str
    """SHA-256 of the DER certificate, lowercase hex."""

    not_before: datetime
    """Start of the validity period (UTC)."""

    not_after: datetime
    """End of the validity period (UTC)."""

    anchor: bool
    """A trust anchor (``True``) or an intermediate of the path-building pool (``False``)."""

    def as_dict(self) -> dict[str, object]:
        return {
            "subject": self.subject,
            "fingerprint": self.fingerprint,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "anchor": self.anchor,
        }

    @classmethod
    def of(cls, certificate: x509.Certificate, *, anchor: bool) -> TrustEntry:
        return cls(
            subject=display_name(certificate.subject),
            fingerprint=fingerprint(certificate),
            not_before=certificate.not_valid_before,
            not_after=certificate.not_valid_after,
            anchor=anchor,
        )


@dataclass(frozen=True, kw_only=True)
class TrustStore:
    """An immutable snapshot of the trust anchors and the intermediate pool."""

    anchors: tuple[x509.Certificate, ...]
    """The certificates a path must end at."""

    intermediates: tuple[x509.Certificate, ...] = ()
    """Untrusted CA certificates offered to path building."""

    source: Path | None = None
    """The folder the snapshot was loaded from; ``None`` when built in memory."""

    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    """When the snapshot was taken."""

    @classmethod
    def load(cls, directory: Path, *, extra_anchors: Sequence[x509.Certificate] = ()) -> TrustStore:
        """Read ``directory`` (see the module docstring); ``extra_anchors`` are trusted too.

        A missing ``anchors/`` or ``intermediates/`` subfolder is empty. Every certificate
        must be a CA; duplicates are dropped, and a certificate that is both an anchor and
        an intermediate is an anchor. A bad file is an error naming it, never skipped.
        """
        if not directory.is_dir():
            raise InvalidInputError(
                f"the trust store folder {directory} does not exist", code=_CODE
            )
        files = {kind: _pem_files(directory, kind) for kind in (ANCHORS, INTERMEDIATES)}
        if sum(map(len, files.values())) > MAX_TRUST_FILES:
            raise InvalidInputError(
                f"the trust store {directory} holds more than {MAX_TRUST_FILES} files",
                code=_CODE,
            )
        for index, certificate in enumerate(extra_anchors, start=1):
            _require_ca(certificate, what=f"extra anchor {index}")
        read = {
            kind: [
                certificate
                for path in paths
                for certificate in _read_file(path, what=f"{kind}/{path.name}")
            ]
            for kind, paths in files.items()
        }
        anchors = _unique([*extra_anchors, *read[ANCHORS]])
        return cls(
            anchors=anchors,
            intermediates=_unique(read[INTERMEDIATES], exclude=anchors),
            source=directory,
        )

    def is_anchor(self, certificate: x509.Certificate) -> bool:
        """Whether this very certificate (by fingerprint) is a trust anchor."""
        digest = fingerprint(certificate)
        return any(fingerprint(anchor) == digest for anchor in self.anchors)

    def entries(self) -> tuple[TrustEntry, ...]:
        """The anchors, then the intermediates."""
        return tuple(TrustEntry.of(item, anchor=True) for item in self.anchors) + tuple(
            TrustEntry.of(item, anchor=False) for item in self.intermediates
        )

    def validation_context(
        self,
        *,
        moment: datetime | None = None,
        revocation_mode: RevocationMode = "soft-fail",
        other_certs: Iterable[x509.Certificate] = (),
        crls: Iterable[crl.CertificateList] = (),
        ocsps: Iterable[ocsp.OCSPResponse] = (),
        allow_fetching: bool = False,
        fetchers: Fetchers | None = None,
    ) -> ValidationContext:
        """A pyhanko-certvalidator context trusting exactly this snapshot's anchors.

        ``moment`` (timezone-aware) validates at that time instead of now; ``other_certs``
        join the intermediate pool (e.g. a chain uploaded with a certificate). Fetching
        revocation data over the network happens only with ``allow_fetching``.
        """
        return ValidationContext(
            # Always a list: None would make pyhanko fall back to the OS's TLS roots.
            trust_roots=list(self.anchors),
            other_certs=[*self.intermediates, *other_certs],
            moment=None if moment is None else to_utc(moment, what="the validation time"),
            revocation_mode=revocation_mode,
            crls=list(crls),
            ocsps=list(ocsps),
            allow_fetching=allow_fetching,
            fetchers=fetchers,
        )

    async def async_validate_chain(
        self,
        certificate: x509.Certificate,
        *,
        key_usage: Iterable[str] = (),
        extended_key_usage: Iterable[str] | None = None,
        moment: datetime | None = None,
        other_certs: Iterable[x509.Certificate] = (),
        revocation_mode: RevocationMode = "none",
    ) -> list[x509.Certificate]:
        """The validated path, leaf first and anchor last.

        ``key_usage`` (asn1crypto names such as ``non_repudiation``) must all be present;
        ``extended_key_usage``, when given, must be present in an EKU extension. Revocation
        is not checked unless ``revocation_mode`` says so. Raises :class:`InvalidInputError`
        ``pki.untrusted`` with the validator's reason.
        """
        context = self.validation_context(
            moment=moment, revocation_mode=revocation_mode, other_certs=other_certs
        )
        validator = CertificateValidator(certificate, validation_context=context)
        try:
            path = await validator.async_validate_usage(  # type: ignore[no-untyped-call]
                set(key_usage),
                set(extended_key_usage or ()),
                extended_optional=extended_key_usage is None,
            )
        # ValueError: asn1crypto parses lazily, so a malformed extension surfaces here.
        except (ValidationError, PathError, ValueError) as ex:
            raise InvalidInputError(
                f"{display_name(certificate.subject)} is not trusted: {ex}", code="pki.untrusted"
            ) from ex
        return list(reversed(list(path.iter_certs(include_root=True))))

    def validate_chain(
        self,
        certificate: x509.Certificate,
        *,
        key_usage: Iterable[str] = (),
        extended_key_usage: Iterable[str] | None = None,
        moment: datetime | None = None,
        other_certs: Iterable[x509.Certificate] = (),
        revocation_mode: RevocationMode = "none",
    ) -> list[x509.Certificate]:
        """:meth:`async_validate_chain` for code without an event loop (the CLI)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(
                self.async_validate_chain(
                    certificate,
                    key_usage=key_usage,
                    extended_key_usage=extended_key_usage,
                    moment=moment,
                    other_certs=other_certs,
                    revocation_mode=revocation_mode,
                )
            )
        raise RuntimeError("an event loop is running: await async_validate_chain instead")


class TrustStoreHolder:
    """The current :class:`TrustStore` of a folder; reloads and additions are serialised.

    Readers take :attr:`current` without a lock: a snapshot is immutable and is swapped
    in whole.
    """

    def __init__(self, directory: Path, *, extra_anchors: Sequence[x509.Certificate] = ()) -> None:
        self._directory = directory
        self._extra_anchors = tuple(extra_anchors)
        self._lock = threading.Lock()
        self._current = TrustStore.load(directory, extra_anchors=self._extra_anchors)

    @property
    def current(self) -> TrustStore:
        """The snapshot in use."""
        return self._current

    def reload(self) -> TrustStore:
        """Re-read the folder; on error the previous snapshot stays and the error is raised."""
        with self._lock:
            return self._reload()

    def _reload(self) -> TrustStore:
        self._current = TrustStore.load(self._directory, extra_anchors=self._extra_anchors)
        return self._current

    def list(self) -> tuple[TrustEntry, ...]:
        """The certificates of the current snapshot, anchors first."""
        return self._current.entries()

    def add_anchor(self, data: bytes, *, name: str, allow_intermediate: bool = False) -> TrustEntry:
        """Trust one more anchor: written to ``anchors/<name>-<sha256>.pem`` and reloaded.

        ``data`` is one PEM or DER certificate; it must be a CA, and self-signed unless
        ``allow_intermediate`` trusts an intermediate CA explicitly. ``name`` (ASCII letters,
        digits, ``.``, ``_``, ``-``; at most 64) tells operators what the file is. If the
        reload fails, the file is removed again and the previous snapshot stays.
        """
        if not _LABEL.fullmatch(name):
            raise InvalidInputError(
                "an anchor's name is 1 to 64 ASCII letters, digits, '.', '_' or '-', "
                "starting with a letter or digit",
                code=_CODE,
            )
        try:
            certificates = load_certificates(data)
        except InvalidInputError as ex:
            raise InvalidInputError(f"the new anchor: {ex.message}", code=_CODE) from ex
        if len(certificates) != 1:
            raise InvalidInputError(
                f"add one anchor at a time, not {len(certificates)} certificates", code=_CODE
            )
        (certificate,) = certificates
        _require_ca(certificate, what="the new anchor")
        if not allow_intermediate and not _self_signed(certificate):
            raise InvalidInputError(
                f"the new anchor {display_name(certificate.subject)} is not self-signed; "
                "trusting an intermediate CA as an anchor must be allowed explicitly",
                code=_CODE,
            )
        with self._lock:
            if self._current.is_anchor(certificate):
                raise ConflictError(
                    f"{display_name(certificate.subject)} is already a trust anchor"
                )
            directory = self._directory / ANCHORS
            directory.mkdir(mode=0o755, exist_ok=True)
            target = directory / f"{name}-{fingerprint(certificate)}.pem"
            _write_atomically(target, to_pem(certificate))
            try:
                self._reload()
            except BaseException:
                target.unlink(missing_ok=True)
                raise
        return TrustEntry.of(certificate, anchor=True)


def _write_atomically(target: Path, data: bytes) -> None:
    # A concurrent reader (another process reloading) sees the whole file or none: the
    # temporary name does not end in .pem, and rename is atomic within a folder.
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
