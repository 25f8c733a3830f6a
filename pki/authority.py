"""Kyso's certificate authority: the CA hierarchy on the HSM, the unit tree and its people,
enrolment (by Kyso's CA, or by an external CA through a CSR and an imported certificate),
status changes with their CRLs, renewal and re-key, expiry warnings, the check that a
credential may sign, and the OCSP responder and timestamp authority built from the stored
state.

Every operation writes its audit event in the same database transaction as the records it
changes. Keys are generated on the token before that transaction: if the transaction then
fails, an unused key stays on the token (listed by ``kyso hsm keys``), never a credential
without its key.

A certificate from an external CA has its status published by that CA only: suspending,
resuming or revoking such a credential changes Kyso's own credential status (so that it can
no longer sign) and is audited, but touches neither the certificate's row nor Kyso's CRL
and OCSP answers. Tell the external CA to revoke the certificate as well.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from asn1crypto import keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509 as cx509
from prometheus_client import Gauge
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import PathError, ValidationError
from sqlalchemy import Connection, Engine, Row, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from audit.events import Action, Actor, DetailValue, Outcome, Subject
from audit.log import AuditLog
from audit.store import aware
from hsm import BlockingSessionPool, KeyInfo, KeySpec
from pki import pins
from pki.certificates import (
    MAX_SERIAL,
    build_csr,
    certificate_matches_key,
    issue_certificate,
    load_certificates,
    to_cryptography,
    to_pem,
    to_utc,
)
from pki.crl import RevocationReason, RevokedEntry, build_crl
from pki.errors import (
    ConflictError,
    CredentialUnusableError,
    InvalidInputError,
    NotFoundError,
    PinInvalidError,
    PinLockedError,
    PinNotSetError,
)
from pki.names import (
    ca_subject,
    display_name,
    officer_subject,
    organisation_subject,
    validate_cccd,
    validate_email,
)
from pki.ocsp import GOOD, UNKNOWN, CertState, CertStatus, OcspResponder
from pki.profiles import TSA_POLICY_OID, PkiUrls, Profile, default_validity
from pki.signing import HsmX509Signer
from pki.store import (
    MAX_SUBJECT,
    CertificateStatus,
    CredentialKind,
    CredentialStatus,
    PersonRole,
    UnitKind,
    pki_certificates,
    pki_credentials,
    pki_crls,
    pki_people,
    pki_state,
    pki_timestamps,
    pki_units,
)
from pki.tsa import TimeStampAuthority

CA_NAMES = {CredentialKind.ROOT_CA: "root", CredentialKind.ISSUING_CA: "issuing"}
"""The URL names of the two CAs: ``/pki/ca/<name>.crt``, ``/pki/crl/<name>.crl``."""

_SERVICE_KINDS = (
    CredentialKind.ROOT_CA,
    CredentialKind.ISSUING_CA,
    CredentialKind.OCSP,
    CredentialKind.TSA,
)
_KEY_LABELS = {
    CredentialKind.ROOT_CA: "kyso-root-ca",
    CredentialKind.ISSUING_CA: "kyso-issuing-ca",
    CredentialKind.OCSP: "kyso-ocsp",
    CredentialKind.TSA: "kyso-tsa",
}
_PROFILES = {
    CredentialKind.ROOT_CA: Profile.ROOT_CA,
    CredentialKind.ISSUING_CA: Profile.ISSUING_CA,
    CredentialKind.OCSP: Profile.OCSP_RESPONDER,
    CredentialKind.TSA: Profile.TSA,
    CredentialKind.OFFICER: Profile.OFFICER_SIGNING,
    CredentialKind.SEAL: Profile.AGENCY_SEAL,
}
_UNIT_PARENT = {
    UnitKind.MINISTRY: None,
    UnitKind.PROVINCE: UnitKind.MINISTRY,
    UnitKind.COMMUNE: UnitKind.PROVINCE,
}
_BACKDATE = timedelta(minutes=5)
"""notBefore is set this far in the past, so a relying party whose clock lags a little
does not see a brand-new certificate as not yet valid."""
_SIGNING_USAGE = frozenset({"digital_signature", "non_repudiation"})
"""The keyUsage bits an officer or seal certificate needs (both profiles sign documents)."""

EXPIRING = Gauge(
    "kyso_pki_certificates_expiring",
    "Active credentials whose certificate ends within the warning window (or has ended), "
    "as of the last update_expiry_metric",
    ["kind"],
)


@dataclass(frozen=True, kw_only=True)
class AuthorityConfig:
    """How the CA names itself and where relying parties reach it."""

    public_url: str
    """Base URL of Kyso's public endpoints (AIA, CRL DP): ``<url>/pki/...``."""

    organisation: str = "Bộ Công an"
    """O of the CA certificates and of officer and seal subjects (the ministry)."""

    root_name: str = "Kyso Root CA"
    issuing_name: str = "Kyso Issuing CA"
    ocsp_name: str = "Kyso OCSP Responder"
    tsa_name: str = "Kyso Timestamp Authority"

    key_spec: KeySpec = KeySpec.EC_P256
    """Key type of CA, responder, TSA and end-entity keys generated on the token."""

    officer_validity: timedelta = field(
        default_factory=lambda: default_validity(Profile.OFFICER_SIGNING)
    )
    seal_validity: timedelta = field(default_factory=lambda: default_validity(Profile.AGENCY_SEAL))

    crl_validity: timedelta = timedelta(days=1)
    """nextUpdate − thisUpdate of every CRL; a CRL is re-signed when half of it has passed."""

    ocsp_validity: timedelta = timedelta(hours=1)

    def urls(self, issuer: CredentialKind) -> PkiUrls:
        base = self.public_url.rstrip("/")
        name = CA_NAMES[issuer]
        return PkiUrls(
            ocsp=f"{base}/pki/ocsp" if issuer is CredentialKind.ISSUING_CA else None,
            ca_issuers=f"{base}/pki/ca/{name}.crt",
            crl=f"{base}/pki/crl/{name}.crl",
        )


@dataclass(frozen=True, kw_only=True)
class Unit:
    id: int
    parent_id: int | None
    kind: UnitKind
    code: str
    name: str
    province: str
    locality: str

    def as_dict(self) -> dict[str, Any]:
        return vars(self) | {"kind": self.kind.value}


@dataclass(frozen=True, kw_only=True)
class Person:
    id: int
    unit_id: int
    role: PersonRole
    full_name: str
    position: str
    cccd: str
    email: str

    def as_dict(self) -> dict[str, Any]:
        return vars(self) | {"role": self.role.value}


@dataclass(frozen=True, kw_only=True)
class Credential:
    """A signing credential and its current certificate."""

    id: int
    kind: CredentialKind
    status: CredentialStatus
    unit_id: int | None
    person_id: int | None
    key_id: str
    """The HSM key's CKA_ID (SKI) in hex."""
    key_spec: str
    external: bool
    certificate: asn1_x509.Certificate | None
    serial: str | None
    """Certificate serial, lower-case hex."""
    not_after: datetime | None
    replaces_id: int | None = None
    """The credential this one renewed or re-keyed."""
    chain: tuple[asn1_x509.Certificate, ...] = ()
    """An external certificate's issuers as validated on import, its issuer first and the
    trust anchor last. Empty for certificates of Kyso's own CA: their chain is
    :meth:`Authority.ca_certificate` of the issuing CA, then of the root."""
    pin_set: bool = False
    """Whether the credential has a signing PIN (its hash never leaves the database)."""
    pin_failures: int = 0
    """Consecutive wrong PINs since the last right one, set or unlock."""
    pin_locked_at: datetime | None = None
    """When the PIN locked after :data:`pki.pins.MAX_FAILURES` wrong ones; None if not."""

    def check_usable(self, moment: datetime) -> None:
        """Raise :class:`~pki.errors.CredentialUnusableError` naming why this credential,
        as read, may not sign at ``moment`` (timezone-aware)."""
        certificate = self.certificate
        if self.status is not CredentialStatus.ACTIVE:
            why = f"is {self.status.value}"
        elif certificate is None or self.not_after is None:
            why = "has no certificate"
        elif moment > self.not_after:
            why = f"expired at {self.not_after.isoformat()}"
        elif moment < certificate.not_valid_before:
            why = f"is not yet valid (from {certificate.not_valid_before.isoformat()})"
        else:
            return
        raise CredentialUnusableError(f"credential {self.id} {why}; it cannot sign")

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind.value,
            "status": self.status.value,
            "unit_id": self.unit_id,
            "person_id": self.person_id,
            "replaces_id": self.replaces_id,
            "key_id": self.key_id,
            "key_spec": self.key_spec,
            "external": self.external,
            "serial": self.serial,
            "subject": display_name(self.certificate.subject) if self.certificate else None,
            "not_after": self.not_after.isoformat() if self.not_after else None,
            "pin": {
                "set": self.pin_set,
                "failures": self.pin_failures,
                "locked_at": self.pin_locked_at.isoformat() if self.pin_locked_at else None,
            },
        }


@dataclass(frozen=True, kw_only=True)
class _Holder:
    """Whom an officer or seal credential belongs to, as its certificate names them."""

    kind: CredentialKind
    subject: asn1_x509.Name
    label: str
    """CKA_LABEL of the key generated for it."""
    unit_id: int
    person_id: int | None
    email: str | None
    """The officer's e-mail for the subjectAltName; seals have none."""
    validity: timedelta
    """How long a certificate from Kyso's CA lives."""


TIMESTAMP_SERIAL_BLOCK = 1 << 20
"""Timestamp serials a process reserves at a time (see :meth:`Authority.next_timestamp_serial`):
one database write per million tokens, so that the write — which may wait for SQLite's lock
while every timestamp waits for it — is off the signing path. A constant: serials of blocks of
different sizes could meet. Rows made before blocks existed used serial = row id, below any
block's first serial; so did blocks of 1,024 (an earlier size), whose row ids are all lower."""


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _serial_hex(serial: int) -> str:
    return format(serial, "x")


class Authority:
    """The CA service over one database and one HSM token. Thread-safe."""

    def __init__(
        self, *, engine: Engine, pool: BlockingSessionPool, config: AuthorityConfig
    ) -> None:
        self._engine = engine
        self._pool = pool
        self._config = config
        self._lock = threading.Lock()
        self._signers: dict[str, HsmX509Signer] = {}
        self._serial_lock = threading.Lock()
        self._serials: Iterator[int] = iter(())
        self._verified_pins = pins.VerifiedPins()

    @property
    def config(self) -> AuthorityConfig:
        return self._config

    @property
    def engine(self) -> Engine:
        """The database the authority works on (the composition root keeps its other
        records there too, e.g. the demo's accounts)."""
        return self._engine

    # -- keys ------------------------------------------------------------------------------

    def _signer(self, key_id: str) -> HsmX509Signer:
        with self._lock:
            signer = self._signers.get(key_id)
        if signer is None:
            signer = HsmX509Signer(self._pool, self._pool.get_key(bytes.fromhex(key_id)))
            with self._lock:
                self._signers[key_id] = signer
        return signer

    def _generate(self, label: str) -> KeyInfo:
        # The caller writes the key.generated event together with the credential's records.
        return self._pool.generate_key(self._config.key_spec, label=label)

    # -- the CA hierarchy ------------------------------------------------------------------

    def ensure_hierarchy(self, actor: Actor) -> list[CredentialKind]:
        """Create what is missing of root CA, issuing CA, OCSP responder and TSA (keys on
        the HSM), and the CAs' first CRLs; returns the kinds created."""
        created = []
        for kind in _SERVICE_KINDS:
            if self._active(kind) is None:
                self._create_service_credential(kind, actor)
                created.append(kind)
        for kind in CA_NAMES:
            if self._latest_crl(kind) is None:
                self.publish_crl(kind)
        return created

    def _create_service_credential(self, kind: CredentialKind, actor: Actor) -> None:
        config = self._config
        key = self._generate(_KEY_LABELS[kind])
        public = keys.PublicKeyInfo.load(key.public_key or b"")
        names = {
            CredentialKind.ROOT_CA: config.root_name,
            CredentialKind.ISSUING_CA: config.issuing_name,
            CredentialKind.OCSP: config.ocsp_name,
            CredentialKind.TSA: config.tsa_name,
        }
        subject = ca_subject(common_name=names[kind], organisation=config.organisation)
        now = _now()
        if kind is CredentialKind.ROOT_CA:
            signer = HsmX509Signer(self._pool, key)
            issuer_cert, urls = None, None
        else:
            issuer_kind = (
                CredentialKind.ROOT_CA
                if kind is CredentialKind.ISSUING_CA
                else (CredentialKind.ISSUING_CA)
            )
            issuer = self._require_active(issuer_kind)
            assert issuer.certificate is not None
            signer = self._signer(issuer.key_id)
            issuer_cert, urls = issuer.certificate, config.urls(issuer_kind)
        profile = _PROFILES[kind]
        not_after = now + default_validity(profile)
        if issuer_cert is not None:
            not_after = min(not_after, issuer_cert.not_valid_after)
        certificate = issue_certificate(
            profile=profile,
            subject=subject,
            public_key=public,
            signer=signer,
            issuer=issuer_cert,
            not_before=now - _BACKDATE,
            not_after=not_after,
            urls=urls,
        )
        with self._engine.begin() as connection:
            credential_id = self._insert_credential(
                connection, kind=kind, key=key, unit_id=None, person_id=None, actor=actor
            )
            self._insert_certificate(connection, credential_id, certificate, actor)

    def record_change(self, actor: Actor, change: str, **details: DetailValue) -> None:
        """Audit a PKI configuration change made outside the database (the trust store)."""
        with self._engine.begin() as connection:
            AuditLog.append_event(
                connection,
                Action.CONFIGURATION_CHANGED,
                actor,
                details={"change": change, **details},
            )

    # -- units and people ------------------------------------------------------------------

    def add_unit(
        self,
        *,
        kind: UnitKind,
        code: str,
        name: str,
        province: str,
        locality: str,
        parent_id: int | None,
        actor: Actor,
    ) -> Unit:
        code = code.strip()
        if not code or len(code) > 32 or not code.isascii() or not code.replace("-", "").isalnum():
            raise InvalidInputError("a unit code is 1 to 32 ASCII letters, digits or '-'")
        # Built only to validate the texts (length, control characters) before storing them.
        organisation_subject(
            province=province, locality=locality, ministry=self._config.organisation, unit=name
        )
        with self._engine.begin() as connection:
            expected_parent = _UNIT_PARENT[kind]
            if expected_parent is None:
                if parent_id is not None:
                    raise InvalidInputError("a ministry has no parent unit")
            else:
                parent = self._unit(connection, parent_id) if parent_id is not None else None
                if parent is None or parent.kind is not expected_parent:
                    raise InvalidInputError(
                        f"a {kind.value} unit belongs to a {expected_parent.value} unit"
                    )
            try:
                unit_id = connection.execute(
                    insert(pki_units)
                    .values(
                        parent_id=parent_id,
                        kind=kind.value,
                        code=code,
                        name=name.strip(),
                        province=province.strip(),
                        locality=locality.strip(),
                        created_at=_now(),
                    )
                    .returning(pki_units.c.id)
                ).scalar_one()
            except IntegrityError as ex:
                raise ConflictError(
                    f"a unit with code {code!r} or this name under the same parent exists"
                ) from ex
            AuditLog.append_event(
                connection,
                Action.CONFIGURATION_CHANGED,
                actor,
                details={"change": "unit.added", "unit_id": unit_id, "code": code},
            )
            unit = self._unit(connection, unit_id)
            assert unit is not None
            return unit

    def unit(self, unit_id: int) -> Unit:
        with self._engine.connect() as connection:
            unit = self._unit(connection, unit_id)
        if unit is None:
            raise NotFoundError(f"no unit {unit_id}")
        return unit

    def units(self) -> list[Unit]:
        with self._engine.connect() as connection:
            rows = connection.execute(select(pki_units).order_by(pki_units.c.id)).all()
        return [_unit(row) for row in rows]

    @staticmethod
    def _unit(connection: Connection, unit_id: int) -> Unit | None:
        row = connection.execute(select(pki_units).where(pki_units.c.id == unit_id)).first()
        return None if row is None else _unit(row)

    def add_person(
        self,
        *,
        unit_id: int,
        role: PersonRole,
        full_name: str,
        position: str,
        cccd: str,
        email: str,
        actor: Actor,
    ) -> Person:
        cccd = validate_cccd(cccd)
        email = validate_email(email)
        with self._engine.begin() as connection:
            unit = self._unit(connection, unit_id)
            if unit is None:
                raise NotFoundError(f"no unit {unit_id}")
            # Validates every subject field the person's certificate will carry.
            officer_subject(
                province=unit.province,
                locality=unit.locality,
                ministry=self._config.organisation,
                unit=unit.name,
                full_name=full_name,
                cccd=cccd,
            )
            try:
                person_id = connection.execute(
                    insert(pki_people)
                    .values(
                        unit_id=unit_id,
                        role=role.value,
                        full_name=full_name.strip(),
                        position=position.strip(),
                        cccd=cccd,
                        email=email,
                        created_at=_now(),
                    )
                    .returning(pki_people.c.id)
                ).scalar_one()
            except IntegrityError as ex:
                raise ConflictError("a person with this CCCD number is already registered") from ex
            AuditLog.append_event(
                connection,
                Action.OFFICER_ENROLLED,
                actor,
                details={"person_id": person_id, "unit_id": unit_id, "role": role.value},
            )
        return self.person(person_id)

    def person(self, person_id: int) -> Person:
        with self._engine.connect() as connection:
            row = connection.execute(select(pki_people).where(pki_people.c.id == person_id)).first()
        if row is None:
            raise NotFoundError(f"no person {person_id}")
        return _person(row)

    def people(self, *, unit_id: int | None = None) -> list[Person]:
        query = select(pki_people).order_by(pki_people.c.id)
        if unit_id is not None:
            query = query.where(pki_people.c.unit_id == unit_id)
        with self._engine.connect() as connection:
            return [_person(row) for row in connection.execute(query).all()]

    # -- enrolment -------------------------------------------------------------------------

    def enroll_person(self, person_id: int, actor: Actor) -> Credential:
        """Generate the person's signing key on the token and issue its certificate."""
        return self._enroll(self._holder(person_id=person_id), actor)

    def enroll_seal(self, unit_id: int, actor: Actor) -> Credential:
        """Generate the unit's agency seal key on the token and issue its certificate."""
        return self._enroll(self._holder(unit_id=unit_id), actor)

    def _holder(self, *, person_id: int | None = None, unit_id: int | None = None) -> _Holder:
        person = None
        if person_id is not None and unit_id is None:
            person = self.person(person_id)
            unit_id = person.unit_id
        elif unit_id is None or person_id is not None:
            raise InvalidInputError("name either a person (officer) or a unit (seal)")
        with self._engine.connect() as connection:
            unit = self._unit(connection, unit_id)
        if unit is None:
            raise NotFoundError(f"no unit {unit_id}")
        if person is None:
            return _Holder(
                kind=CredentialKind.SEAL,
                subject=organisation_subject(
                    province=unit.province,
                    locality=unit.locality,
                    ministry=self._config.organisation,
                    unit=unit.name,
                ),
                label=f"seal-{unit.code}",
                unit_id=unit.id,
                person_id=None,
                email=None,
                validity=self._config.seal_validity,
            )
        return _Holder(
            kind=CredentialKind.OFFICER,
            subject=officer_subject(
                province=unit.province,
                locality=unit.locality,
                ministry=self._config.organisation,
                unit=unit.name,
                full_name=person.full_name,
                cccd=person.cccd,
            ),
            label=f"officer-{person.id}",
            unit_id=unit.id,
            person_id=person.id,
            email=person.email,
            validity=self._config.officer_validity,
        )

    def _holder_of(self, credential: Credential) -> _Holder:
        if credential.kind is CredentialKind.OFFICER:
            return self._holder(person_id=credential.person_id)
        return self._holder(unit_id=credential.unit_id)

    def _enroll(self, holder: _Holder, actor: Actor) -> Credential:
        key = self._generate(holder.label)
        certificate = self._issue(holder, key)
        with self._engine.begin() as connection:
            credential_id = self._insert_credential(
                connection,
                kind=holder.kind,
                key=key,
                unit_id=holder.unit_id,
                person_id=holder.person_id,
                actor=actor,
            )
            self._insert_certificate(connection, credential_id, certificate, actor)
        return self.credential(credential_id)

    def _issue(self, holder: _Holder, key: KeyInfo) -> asn1_x509.Certificate:
        issuer = self._require_active(CredentialKind.ISSUING_CA)
        assert issuer.certificate is not None
        now = _now()
        return issue_certificate(
            profile=_PROFILES[holder.kind],
            subject=holder.subject,
            public_key=keys.PublicKeyInfo.load(key.public_key or b""),
            signer=self._signer(issuer.key_id),
            issuer=issuer.certificate,
            not_before=now - _BACKDATE,
            not_after=min(now + holder.validity, issuer.certificate.not_valid_after),
            urls=self._config.urls(CredentialKind.ISSUING_CA),
            email=holder.email,
        )

    def request_certificate(
        self, *, person_id: int | None = None, unit_id: int | None = None, actor: Actor
    ) -> tuple[Credential, bytes]:
        """Generate a key on the token for a person (officer) or a unit (seal), to be
        certified by an external CA: returns the pending credential and a PEM PKCS#10
        request signed by the new key. The certificate comes back through
        :meth:`import_certificate`."""
        holder = self._holder(person_id=person_id, unit_id=unit_id)
        key = self._generate(holder.label)
        request = self._csr(holder, HsmX509Signer(self._pool, key))
        with self._engine.begin() as connection:
            credential_id = self._insert_credential(
                connection,
                kind=holder.kind,
                key=key,
                unit_id=holder.unit_id,
                person_id=holder.person_id,
                actor=actor,
                status=CredentialStatus.PENDING,
                external=True,
            )
        return self.credential(credential_id), request

    def csr(self, credential_id: int) -> bytes:
        """The PEM PKCS#10 request of a pending credential again, signed anew by its key."""
        credential = self.credential(credential_id)
        if credential.status is not CredentialStatus.PENDING:
            raise ConflictError(
                f"credential {credential_id} is {credential.status.value}; "
                "only a pending credential has a certificate request"
            )
        return self._csr(self._holder_of(credential), self._signer(credential.key_id))

    @staticmethod
    def _csr(holder: _Holder, signer: HsmX509Signer) -> bytes:
        return to_pem(build_csr(subject=holder.subject, signer=signer, email=holder.email))

    def import_certificate(
        self,
        credential_id: int,
        data: bytes,
        *,
        anchors: Sequence[asn1_x509.Certificate],
        actor: Actor,
    ) -> Credential:
        """Activate a pending credential with the certificate an external CA issued for its
        request. ``data`` is a PEM bundle, the certificate first and then its chain (or one
        DER certificate). The certificate must be for the credential's key on the HSM, be an
        end-entity certificate with keyUsage digitalSignature and nonRepudiation, and chain
        to one of ``anchors`` now (revocation is not fetched).

        Validation runs in ``asyncio.run``: call this from a thread without an event loop.
        """
        credential = self.credential(credential_id)
        if credential.status is not CredentialStatus.PENDING:
            raise ConflictError(
                f"credential {credential_id} is {credential.status.value}; "
                "a certificate is imported only for a pending credential"
            )
        leaf, *others = load_certificates(data)
        public_key = self._signer(credential.key_id).public_key
        if not certificate_matches_key(leaf, public_key.dump()):
            raise InvalidInputError(
                f"the certificate is not for the key of credential {credential_id}",
                code="pki.key_mismatch",
            )
        _require_signing_profile(leaf)
        chain = _validated_chain(leaf, others, anchors)
        with self._engine.begin() as connection:
            changed = connection.execute(
                update(pki_credentials)
                .where(
                    pki_credentials.c.id == credential_id,
                    pki_credentials.c.status == CredentialStatus.PENDING.value,
                )
                .values(status=CredentialStatus.ACTIVE.value)
            ).rowcount
            if changed != 1:
                raise ConflictError(f"credential {credential_id} changed meanwhile")
            try:
                self._insert_certificate(
                    connection,
                    credential_id,
                    leaf,
                    actor,
                    chain=chain,
                    details={"external": True},
                )
            except IntegrityError as ex:
                raise ConflictError(
                    "this issuer's certificate with this serial is already stored"
                ) from ex
        return self.credential(credential_id)

    # -- renewal ---------------------------------------------------------------------------

    def renew(self, credential_id: int, actor: Actor, *, rekey: bool = False) -> Credential:
        """A new certificate from Kyso's CA for an active officer or seal credential, with
        the holder's current names; returns the new credential, whose ``replaces_id`` is the
        old one, which becomes superseded and can no longer sign.

        ``rekey=False`` certifies the same key again, and the old certificate stays valid
        until it expires (documents already signed with it keep verifying; the key was not
        retired). ``rekey=True`` generates a new key on the token and revokes the old
        certificate as superseded, with a new CRL.
        """
        old = self.credential(credential_id)
        if old.kind not in (CredentialKind.OFFICER, CredentialKind.SEAL) or old.external:
            raise InvalidInputError(
                "only officer and seal credentials from Kyso's CA are renewed here; "
                "an external CA's certificate is replaced through a new certificate request"
            )
        if old.status is not CredentialStatus.ACTIVE:
            raise ConflictError(
                f"credential {credential_id} is {old.status.value}; only an active credential "
                "is renewed"
            )
        holder = self._holder_of(old)
        key = (
            self._generate(holder.label) if rekey else self._pool.get_key(bytes.fromhex(old.key_id))
        )
        certificate = self._issue(holder, key)
        with self._engine.begin() as connection:
            changed = connection.execute(
                update(pki_credentials)
                .where(
                    pki_credentials.c.id == credential_id,
                    pki_credentials.c.status == CredentialStatus.ACTIVE.value,
                )
                .values(status=CredentialStatus.SUPERSEDED.value)
            ).rowcount
            if changed != 1:
                raise ConflictError(f"credential {credential_id} changed meanwhile; try again")
            new_id = self._insert_credential(
                connection,
                kind=holder.kind,
                key=key,
                unit_id=holder.unit_id,
                person_id=holder.person_id,
                actor=actor,
                replaces_id=credential_id,
                new_key=rekey,
            )
            self._copy_pin(connection, credential_id, new_id)
            self._insert_certificate(
                connection,
                new_id,
                certificate,
                actor,
                details={"replaces_id": credential_id, "rekey": rekey},
            )
            if rekey:
                self._record_status(
                    connection,
                    old,
                    CertificateStatus.REVOKED,
                    RevocationReason.SUPERSEDED,
                    Action.CERTIFICATE_REVOKED,
                    actor,
                )
        return self.credential(new_id)

    # -- records ---------------------------------------------------------------------------

    def _insert_credential(
        self,
        connection: Connection,
        *,
        kind: CredentialKind,
        key: KeyInfo,
        unit_id: int | None,
        person_id: int | None,
        actor: Actor,
        status: CredentialStatus = CredentialStatus.ACTIVE,
        external: bool = False,
        replaces_id: int | None = None,
        new_key: bool = True,
    ) -> int:
        """Store a credential and, for a key just generated, its key.generated event."""
        credential_id: int = connection.execute(
            insert(pki_credentials)
            .values(
                kind=kind.value,
                status=status.value,
                unit_id=unit_id,
                person_id=person_id,
                key_id=key.key_id.hex(),
                key_spec=key.spec.value if key.spec else key.key_type,
                external=external,
                replaces_id=replaces_id,
                created_at=_now(),
            )
            .returning(pki_credentials.c.id)
        ).scalar_one()
        if new_key:
            AuditLog.append_event(
                connection,
                Action.KEY_GENERATED,
                actor,
                subject=Subject(key_id=key.key_id.hex()),
                details={
                    "label": key.label,
                    "credential_id": credential_id,
                    "kind": kind.value,
                    "external": external,
                },
            )
        return credential_id

    def _insert_certificate(
        self,
        connection: Connection,
        credential_id: int,
        certificate: asn1_x509.Certificate,
        actor: Actor,
        *,
        chain: Sequence[asn1_x509.Certificate] = (),
        details: dict[str, DetailValue] | None = None,
    ) -> None:
        serial = _serial_hex(certificate.serial_number)
        connection.execute(
            insert(pki_certificates).values(
                credential_id=credential_id,
                issuer_key_id=(
                    certificate.authority_key_identifier or certificate.key_identifier
                ).hex(),
                serial=serial,
                subject=display_name(certificate.subject),
                not_before=certificate.not_valid_before,
                not_after=certificate.not_valid_after,
                der=certificate.dump(),
                chain=b"".join(map(to_pem, chain)) or None,
                status=CertificateStatus.GOOD.value,
                created_at=_now(),
            )
        )
        AuditLog.append_event(
            connection,
            Action.CERTIFICATE_ISSUED,
            actor,
            # The SHA-1 of the key bits: the HSM's key id, whatever SKI an external CA wrote.
            subject=Subject(certificate_serial=serial, key_id=certificate.public_key.sha1.hex()),
            details={"credential_id": credential_id, **(details or {})},
        )

    # -- credentials -----------------------------------------------------------------------

    def credential(self, credential_id: int) -> Credential:
        with self._engine.connect() as connection:
            found = self._credentials(connection, pki_credentials.c.id == credential_id)
        if not found:
            raise NotFoundError(f"no credential {credential_id}")
        return found[0]

    def credentials(
        self, *, person_id: int | None = None, unit_id: int | None = None
    ) -> list[Credential]:
        clauses = []
        if person_id is not None:
            clauses.append(pki_credentials.c.person_id == person_id)
        if unit_id is not None:
            clauses.append(pki_credentials.c.unit_id == unit_id)
        with self._engine.connect() as connection:
            return self._credentials(connection, *clauses)

    @staticmethod
    def _credentials(
        connection: Connection, *where: Any, order_by: Sequence[Any] = (pki_credentials.c.id,)
    ) -> list[Credential]:
        newer = pki_certificates.alias("newer")
        latest = (
            select(func.max(newer.c.id))
            .where(newer.c.credential_id == pki_credentials.c.id)
            .correlate(pki_credentials)
            .scalar_subquery()
        )
        rows = connection.execute(
            select(
                pki_credentials,
                pki_certificates.c.der,
                pki_certificates.c.serial,
                pki_certificates.c.not_after,
                pki_certificates.c.chain,
            )
            .select_from(
                pki_credentials.outerjoin(pki_certificates, pki_certificates.c.id == latest)
            )
            .where(*where)
            .order_by(*order_by)
        ).all()
        return [_credential(row) for row in rows]

    def _active(self, kind: CredentialKind) -> Credential | None:
        with self._engine.connect() as connection:
            found = self._credentials(
                connection,
                pki_credentials.c.kind == kind.value,
                pki_credentials.c.status == CredentialStatus.ACTIVE.value,
            )
        return found[-1] if found else None

    def _require_active(self, kind: CredentialKind) -> Credential:
        found = self._active(kind)
        if found is None or found.certificate is None:
            raise NotFoundError(f"no active {kind.value} credential; run 'kyso init'")
        return found

    def ca_certificate(self, kind: CredentialKind) -> asn1_x509.Certificate:
        certificate = self._require_active(kind).certificate
        assert certificate is not None
        return certificate

    def internal_chain(self) -> tuple[asn1_x509.Certificate, ...]:
        """Issuing CA then root: the chain of every certificate Kyso's CA issues."""
        return (
            self.ca_certificate(CredentialKind.ISSUING_CA),
            self.ca_certificate(CredentialKind.ROOT_CA),
        )

    # -- status changes --------------------------------------------------------------------

    def suspend(self, credential_id: int, actor: Actor) -> Credential:
        return self._change_status(
            credential_id, "suspend", RevocationReason.CERTIFICATE_HOLD, actor
        )

    def resume(self, credential_id: int, actor: Actor) -> Credential:
        return self._change_status(credential_id, "resume", None, actor)

    def revoke(self, credential_id: int, reason: RevocationReason, actor: Actor) -> Credential:
        """Revoke a credential for good; a pending one too (its request is abandoned and no
        certificate will be imported for it)."""
        if reason is RevocationReason.CERTIFICATE_HOLD:
            raise InvalidInputError("certificateHold is a suspension: use suspend")
        return self._change_status(credential_id, "revoke", reason, actor)

    def _change_status(
        self,
        credential_id: int,
        change: str,
        reason: RevocationReason | None,
        actor: Actor,
    ) -> Credential:
        credential = self.credential(credential_id)
        if credential.kind not in (CredentialKind.OFFICER, CredentialKind.SEAL):
            raise InvalidInputError("only officer and seal credentials change status here")
        allowed = {
            "suspend": {CredentialStatus.ACTIVE},
            "resume": {CredentialStatus.SUSPENDED},
            "revoke": {
                CredentialStatus.ACTIVE,
                CredentialStatus.SUSPENDED,
                CredentialStatus.PENDING,
            },
        }[change]
        if credential.status not in allowed:
            raise ConflictError(
                f"credential {credential_id} is {credential.status.value}; cannot {change} it"
            )
        new_status, cert_status, action = {
            "suspend": (
                CredentialStatus.SUSPENDED,
                CertificateStatus.ON_HOLD,
                Action.CERTIFICATE_SUSPENDED,
            ),
            "resume": (CredentialStatus.ACTIVE, CertificateStatus.GOOD, Action.CERTIFICATE_RESUMED),
            "revoke": (
                CredentialStatus.REVOKED,
                CertificateStatus.REVOKED,
                Action.CERTIFICATE_REVOKED,
            ),
        }[change]
        with self._engine.begin() as connection:
            changed = connection.execute(
                update(pki_credentials)
                .where(
                    pki_credentials.c.id == credential_id,
                    pki_credentials.c.status == credential.status.value,
                )
                .values(status=new_status.value)
            ).rowcount
            if changed != 1:
                raise ConflictError(f"credential {credential_id} changed meanwhile; try again")
            self._record_status(connection, credential, cert_status, reason, action, actor)
        return self.credential(credential_id)

    def _record_status(
        self,
        connection: Connection,
        credential: Credential,
        status: CertificateStatus,
        reason: RevocationReason | None,
        action: Action,
        actor: Actor,
    ) -> None:
        """The status change of a credential's current certificate, in the caller's
        transaction: its audit event, the status generation and, for a certificate of Kyso's
        CA, its row and a new CRL (only an external CA publishes its certificates' status)."""
        now = _now()
        published = credential.serial is not None and not credential.external
        if published:
            connection.execute(
                update(pki_certificates)
                .where(
                    pki_certificates.c.credential_id == credential.id,
                    pki_certificates.c.serial == credential.serial,
                )
                .values(
                    status=status.value,
                    revoked_at=None if reason is None else now,
                    reason=None if reason is None else reason.value,
                )
            )
        # Every status change moves the generation, an external certificate's too: signing
        # caches trust a credential they checked until it moves.
        connection.execute(update(pki_state).values(generation=pki_state.c.generation + 1))
        AuditLog.append_event(
            connection,
            action,
            actor,
            subject=Subject(certificate_serial=credential.serial, key_id=credential.key_id),
            details={
                "credential_id": credential.id,
                "external": credential.external,
                **({"reason": reason.value} if reason else {}),
            },
        )
        if published:
            # The CRL changes with the status, in the same transaction.
            self._publish_crl(connection, CredentialKind.ISSUING_CA, now)

    # -- signing PINs ----------------------------------------------------------------------

    def set_pin(self, credential_id: int, pin: str, actor: Actor) -> Credential:
        """Set or change the signing PIN of an officer or seal credential, audited as
        ``pin.set``; only its argon2id hash is stored, and the failure count starts again.

        A locked PIN is refused with :class:`~pki.errors.PinLockedError`: clearing a lock
        is :meth:`unlock_pin`, an administrator's own audited step.
        """
        pin_hash = pins.hash_pin(pin)  # the policy check, and the slow part, before any lock
        credential = self.credential(credential_id)
        _require_pin_holder(credential)
        with self._engine.begin() as connection:
            changed = connection.execute(
                update(pki_credentials)
                .where(
                    pki_credentials.c.id == credential_id,
                    pki_credentials.c.pin_locked_at.is_(None),
                )
                .values(pin_hash=pin_hash, pin_failures=0)
            ).rowcount
            if changed == 1:
                AuditLog.append_event(
                    connection,
                    Action.PIN_SET,
                    actor,
                    subject=Subject(key_id=credential.key_id),
                    details={"credential_id": credential_id, "replaced": credential.pin_set},
                )
        if changed != 1:
            raise _locked(credential_id)
        return self.credential(credential_id)

    def check_pin(self, credential_id: int, pin: str, actor: Actor) -> None:
        """Return if ``pin`` is the credential's signing PIN, else raise.

        A wrong PIN is counted in its own committed transaction, with its ``pin.failed``
        event, before :class:`~pki.errors.PinInvalidError` says how many tries remain; the
        :data:`~pki.pins.MAX_FAILURES`-th consecutive one also locks the credential
        (``pin.locked``) and raises :class:`~pki.errors.PinLockedError`. A locked
        credential refuses every PIN, the right one too, until :meth:`unlock_pin`. A right
        PIN clears the count (writing only when there was one). No PIN set:
        :class:`~pki.errors.PinNotSetError`.

        Every call costs one argon2 hash, whatever the answer, except a right PIN verified
        in this process within the last minutes with no failure since
        (:class:`~pki.pins.VerifiedPins`). Concurrent wrong PINs are all counted: the count
        is one atomic ``UPDATE … RETURNING``.
        """
        with self._engine.connect() as connection:
            row = connection.execute(
                select(
                    pki_credentials.c.key_id,
                    pki_credentials.c.pin_hash,
                    pki_credentials.c.pin_failures,
                    pki_credentials.c.pin_locked_at,
                ).where(pki_credentials.c.id == credential_id)
            ).first()
        locked = row is not None and row.pin_locked_at is not None
        stored = None if row is None or locked else row.pin_hash
        remembered = (
            row is not None
            and stored is not None
            and not row.pin_failures
            and self._verified_pins.knows(credential_id, stored, pin)
        )
        right = remembered or pins.verify_pin(stored, pin)
        if row is None:
            raise NotFoundError(f"no credential {credential_id}")
        subject = Subject(key_id=row.key_id)
        if locked:
            self._refuse_locked(credential_id, subject, row.pin_failures, actor)
        if row.pin_hash is None:
            raise PinNotSetError(
                f"credential {credential_id} has no signing PIN yet; an administrator sets "
                "one first"
            )
        if right:
            if row.pin_failures or pins.needs_rehash(row.pin_hash):
                self._pin_accepted(credential_id, row.pin_hash, pin)
            elif not remembered:
                self._verified_pins.remember(credential_id, row.pin_hash, pin)
            return
        self._pin_rejected(credential_id, subject, actor)

    def _pin_accepted(self, credential_id: int, stored: str, pin: str) -> None:
        values: dict[str, Any] = {"pin_failures": 0}
        if pins.needs_rehash(stored):
            values["pin_hash"] = pins.hash_pin(pin)
        with self._engine.begin() as connection:
            changed = connection.execute(
                update(pki_credentials)
                .where(
                    pki_credentials.c.id == credential_id,
                    pki_credentials.c.pin_locked_at.is_(None),
                    # A PIN set meanwhile is not overwritten by the re-hash of the old one.
                    pki_credentials.c.pin_hash == stored,
                )
                .values(**values)
            ).rowcount
            locked = changed != 1 and self._pin_locked(connection, credential_id)
        if locked:
            raise _locked(credential_id)
        if changed != 1:
            raise ConflictError(f"the PIN of credential {credential_id} changed meanwhile")

    def _pin_rejected(self, credential_id: int, subject: Subject, actor: Actor) -> NoReturn:
        with self._engine.begin() as connection:
            failures = connection.execute(
                update(pki_credentials)
                .where(
                    pki_credentials.c.id == credential_id,
                    pki_credentials.c.pin_locked_at.is_(None),
                )
                .values(pin_failures=pki_credentials.c.pin_failures + 1)
                .returning(pki_credentials.c.pin_failures)
            ).scalar()
            if failures is not None:
                remaining = max(0, pins.MAX_FAILURES - failures)
                AuditLog.append_event(
                    connection,
                    Action.PIN_FAILED,
                    actor,
                    subject=subject,
                    details={
                        "credential_id": credential_id,
                        "failures": failures,
                        "remaining": remaining,
                    },
                    outcome=Outcome(success=False, code=PinInvalidError.code),
                )
                if not remaining:
                    connection.execute(
                        update(pki_credentials)
                        .where(pki_credentials.c.id == credential_id)
                        .values(pin_locked_at=_now())
                    )
                    AuditLog.append_event(
                        connection,
                        Action.PIN_LOCKED,
                        actor,
                        subject=subject,
                        details={"credential_id": credential_id, "failures": failures},
                    )
        # Raised after the commit: the failure must count although the request fails.
        if failures is None:
            # Another request locked it between the read and this update.
            self._refuse_locked(credential_id, subject, pins.MAX_FAILURES, actor)
        if not remaining:
            raise _locked(credential_id)
        raise PinInvalidError(
            f"wrong PIN for credential {credential_id}; {remaining} "
            f"{'try' if remaining == 1 else 'tries'} left before it locks",
            remaining=remaining,
        )

    def _refuse_locked(
        self, credential_id: int, subject: Subject, failures: int, actor: Actor
    ) -> NoReturn:
        """Audit a try on a locked credential (not counted) and refuse it."""
        with self._engine.begin() as connection:
            AuditLog.append_event(
                connection,
                Action.PIN_FAILED,
                actor,
                subject=subject,
                details={"credential_id": credential_id, "failures": failures, "remaining": 0},
                outcome=Outcome(success=False, code=PinLockedError.code),
            )
        raise _locked(credential_id)

    @staticmethod
    def _pin_locked(connection: Connection, credential_id: int) -> bool:
        return (
            connection.execute(
                select(pki_credentials.c.pin_locked_at).where(pki_credentials.c.id == credential_id)
            ).scalar()
            is not None
        )

    def unlock_pin(
        self, credential_id: int, actor: Actor, *, new_pin: str | None = None
    ) -> Credential:
        """An administrator's reset of a credential's PIN state, audited as
        ``pin.unlocked``: the lock and the failure count are cleared, and with ``new_pin``
        the PIN is replaced too (for an officer who forgot it)."""
        new_hash = None if new_pin is None else pins.hash_pin(new_pin)
        credential = self.credential(credential_id)
        _require_pin_holder(credential)
        values: dict[str, Any] = {"pin_failures": 0, "pin_locked_at": None}
        if new_hash is not None:
            values["pin_hash"] = new_hash
        with self._engine.begin() as connection:
            connection.execute(
                update(pki_credentials)
                .where(pki_credentials.c.id == credential_id)
                .values(**values)
            )
            AuditLog.append_event(
                connection,
                Action.PIN_UNLOCKED,
                actor,
                subject=Subject(key_id=credential.key_id),
                details={
                    "credential_id": credential_id,
                    "was_locked": credential.pin_locked_at is not None,
                    "failures": credential.pin_failures,
                    "replaced": new_hash is not None,
                },
            )
        return self.credential(credential_id)

    @staticmethod
    def _copy_pin(connection: Connection, from_id: int, to_id: int) -> None:
        """A renewed credential keeps the PIN state of the one it replaces: the same
        holder signs with it, and a renewal must not lift a lock."""
        row = connection.execute(
            select(
                pki_credentials.c.pin_hash,
                pki_credentials.c.pin_failures,
                pki_credentials.c.pin_locked_at,
            ).where(pki_credentials.c.id == from_id)
        ).one()
        connection.execute(
            update(pki_credentials)
            .where(pki_credentials.c.id == to_id)
            .values(
                pin_hash=row.pin_hash,
                pin_failures=row.pin_failures,
                pin_locked_at=row.pin_locked_at,
            )
        )

    # -- refusal to sign and expiry --------------------------------------------------------

    def usable_credential(self, credential_id: int, *, at: datetime | None = None) -> Credential:
        """The credential if it may sign at ``at`` (default: now), else
        :class:`~pki.errors.CredentialUnusableError` naming why.

        Reads the status from the database on every call, never from a cache, so that a
        suspension or revocation stops the very next signature in every process.
        """
        moment = _now() if at is None else to_utc(at, what="at")
        credential = self.credential(credential_id)
        credential.check_usable(moment)
        return credential

    def expiring(self, within: timedelta) -> list[Credential]:
        """Active credentials of every kind (the CAs, OCSP responder and TSA too) whose
        certificate ends within ``within`` from now or has already ended, soonest first."""
        if within < timedelta(0):
            raise InvalidInputError("the expiry warning window cannot be negative")
        with self._engine.connect() as connection:
            return self._credentials(
                connection,
                pki_credentials.c.status == CredentialStatus.ACTIVE.value,
                pki_certificates.c.not_after <= _now() + within,
                order_by=(pki_certificates.c.not_after, pki_credentials.c.id),
            )

    def update_expiry_metric(self, within: timedelta) -> None:
        """Set ``kyso_pki_certificates_expiring`` per kind from :meth:`expiring`."""
        counts = Counter(credential.kind for credential in self.expiring(within))
        for kind in CredentialKind:
            EXPIRING.labels(kind=kind.value).set(counts[kind])

    def status_generation(self) -> int:
        """Bumped by every status change of any credential; OCSP and signing caches
        compare it."""
        with self._engine.connect() as connection:
            return int(connection.execute(select(pki_state.c.generation)).scalar_one())

    # -- CRLs ------------------------------------------------------------------------------

    def publish_crl(self, kind: CredentialKind) -> bytes:
        """Sign and store a new CRL for the CA ``kind``; returns its DER."""
        with self._engine.begin() as connection:
            return self._publish_crl(connection, kind, _now())

    def _publish_crl(self, connection: Connection, kind: CredentialKind, now: datetime) -> bytes:
        ca = self._require_active(kind)
        assert ca.certificate is not None
        issuer_key_id = ca.certificate.key_identifier.hex()
        last = connection.execute(
            select(func.max(pki_crls.c.number)).where(pki_crls.c.issuer_key_id == issuer_key_id)
        ).scalar()
        number = 1 if last is None else int(last) + 1
        revoked = [
            RevokedEntry(
                serial=int(row.serial, 16),
                revoked_at=aware(row.revoked_at),
                reason=RevocationReason(row.reason),
            )
            for row in connection.execute(
                select(
                    pki_certificates.c.serial,
                    pki_certificates.c.revoked_at,
                    pki_certificates.c.reason,
                ).where(
                    pki_certificates.c.issuer_key_id == issuer_key_id,
                    pki_certificates.c.status != CertificateStatus.GOOD.value,
                )
            ).all()
        ]
        next_update = now + self._config.crl_validity
        crl = build_crl(
            issuer=ca.certificate,
            signer=self._signer(ca.key_id),
            number=number,
            this_update=now,
            next_update=next_update,
            revoked=revoked,
        )
        der: bytes = crl.dump()
        try:
            connection.execute(
                insert(pki_crls).values(
                    issuer_key_id=issuer_key_id,
                    number=number,
                    this_update=now,
                    next_update=next_update,
                    der=der,
                )
            )
        except IntegrityError as ex:
            raise ConflictError("another process published a CRL at the same time") from ex
        return der

    def _latest_crl(self, kind: CredentialKind) -> Row[Any, Any, Any] | None:
        ca = self._active(kind)
        if ca is None or ca.certificate is None:
            return None
        with self._engine.connect() as connection:
            return connection.execute(
                select(pki_crls.c.der, pki_crls.c.this_update, pki_crls.c.next_update)
                .where(pki_crls.c.issuer_key_id == ca.certificate.key_identifier.hex())
                .order_by(pki_crls.c.number.desc())
                .limit(1)
            ).first()

    def current_crl(self, kind: CredentialKind) -> bytes:
        """The CA's latest CRL, re-signed first when half its validity has passed."""
        row = self._latest_crl(kind)
        now = _now()
        if row is not None:
            this_update = aware(row.this_update)
            next_update = aware(row.next_update)
            if now < this_update + (next_update - this_update) / 2:
                return bytes(row.der)
        try:
            return self.publish_crl(kind)
        except ConflictError:
            row = self._latest_crl(kind)
            assert row is not None
            return bytes(row.der)

    # -- OCSP and TSA ----------------------------------------------------------------------

    def certificate_status(self, issuer: cx509.Certificate, serial: int) -> CertStatus:
        """OCSP status of ``serial`` among the certificates ``issuer`` issued."""
        issuer_key_id = issuer.extensions.get_extension_for_class(
            cx509.SubjectKeyIdentifier
        ).value.digest.hex()
        with self._engine.connect() as connection:
            row = connection.execute(
                select(
                    pki_certificates.c.status,
                    pki_certificates.c.revoked_at,
                    pki_certificates.c.reason,
                ).where(
                    pki_certificates.c.issuer_key_id == issuer_key_id,
                    pki_certificates.c.serial == _serial_hex(serial),
                )
            ).first()
        if row is None:
            return UNKNOWN
        if row.status == CertificateStatus.GOOD.value:
            return GOOD
        return CertStatus(
            state=CertState.REVOKED, revoked_at=aware(row.revoked_at), reason=row.reason
        )

    def ocsp_responder(self) -> OcspResponder:
        responder = self._require_active(CredentialKind.OCSP)
        assert responder.certificate is not None
        return OcspResponder(
            signer=self._signer(responder.key_id),
            responder_cert=to_cryptography(responder.certificate),
            # The responder's certificate was delegated by the issuing CA, so it may answer
            # for that CA's certificates only (RFC 6960 §4.2.2.2); the root's CRL covers the
            # root's own.
            issuers=[to_cryptography(self.ca_certificate(CredentialKind.ISSUING_CA))],
            lookup=self.certificate_status,
            validity=self._config.ocsp_validity,
        )

    def timestamp_authority(self) -> TimeStampAuthority:
        tsa = self._require_active(CredentialKind.TSA)
        assert tsa.certificate is not None
        return TimeStampAuthority(
            signer=self._signer(tsa.key_id),
            certificate=to_cryptography(tsa.certificate),
            chain=[
                to_cryptography(self.ca_certificate(kind))
                for kind in (CredentialKind.ISSUING_CA, CredentialKind.ROOT_CA)
            ],
            policy=TSA_POLICY_OID,
            serials=self.next_timestamp_serial,
        )

    def next_timestamp_serial(self) -> int:
        """A serial unique across processes. Each process takes a block of
        :data:`TIMESTAMP_SERIAL_BLOCK` serials with one new row (serial = row id × block
        size + i), so a token costs no database write; serials a process did not use before
        it stopped are skipped, which RFC 3161 allows (unique, not consecutive)."""
        with self._serial_lock:
            serial = next(self._serials, None)
            if serial is None:
                with self._engine.begin() as connection:
                    block = int(
                        connection.execute(
                            insert(pki_timestamps)
                            .values(created_at=_now())
                            .returning(pki_timestamps.c.serial)
                        ).scalar_one()
                    )
                first = block * TIMESTAMP_SERIAL_BLOCK
                self._serials = iter(range(first + 1, first + TIMESTAMP_SERIAL_BLOCK))
                serial = first
            return serial


def _require_signing_profile(certificate: asn1_x509.Certificate) -> None:
    """Refuse an external certificate that cannot be an officer or seal certificate, or
    that Kyso cannot store (columns sized for RFC 5280 serials and key identifiers)."""
    usage = certificate.key_usage_value
    if certificate.ca or usage is None or not _SIGNING_USAGE.issubset(usage.native):
        raise InvalidInputError(
            "the certificate must be an end-entity certificate (not a CA) with keyUsage "
            "digitalSignature and nonRepudiation",
            code="pki.profile_mismatch",
        )
    authority_key_id = certificate.authority_key_identifier
    if authority_key_id is None or not 0 < len(authority_key_id) <= 64:
        raise InvalidInputError(
            "the certificate needs an authority key identifier of 1 to 64 bytes "
            "(RFC 5280 §4.2.1.1)",
            code="pki.profile_mismatch",
        )
    if not 0 < certificate.serial_number <= MAX_SERIAL:
        raise InvalidInputError(
            "the certificate's serial number is not a positive integer of at most 20 octets",
            code="pki.invalid_serial",
        )
    if len(display_name(certificate.subject)) > MAX_SUBJECT:
        raise InvalidInputError(
            "the certificate's subject name is too long", code="pki.invalid_certificate"
        )


def _validated_chain(
    leaf: asn1_x509.Certificate,
    others: Sequence[asn1_x509.Certificate],
    anchors: Sequence[asn1_x509.Certificate],
) -> list[asn1_x509.Certificate]:
    """The leaf's issuers up to one of ``anchors`` (issuer first), as validated now."""
    if not anchors:
        raise InvalidInputError("no trust anchor is configured", code="pki.untrusted")
    context = ValidationContext(
        trust_roots=list(anchors),
        other_certs=others,
        revocation_mode="soft-fail",
        allow_fetching=False,
    )
    validator = CertificateValidator(leaf, intermediate_certs=others, validation_context=context)
    try:
        path = asyncio.run(
            validator.async_validate_usage(set(_SIGNING_USAGE))  # type: ignore[no-untyped-call]
        )
    except (PathError, ValidationError) as ex:
        raise InvalidInputError(
            f"the certificate does not chain to a configured trust anchor: {ex}",
            code="pki.untrusted",
        ) from ex
    # iter_certs runs from the anchor to the leaf.
    return list(path.iter_certs(include_root=True))[-2::-1]


def _require_pin_holder(credential: Credential) -> None:
    """Only officer and seal credentials sign documents, and so have a signing PIN; one
    that will never sign again needs none."""
    if credential.kind not in (CredentialKind.OFFICER, CredentialKind.SEAL):
        raise InvalidInputError("only officer and seal credentials have a signing PIN")
    if credential.status in (CredentialStatus.REVOKED, CredentialStatus.SUPERSEDED):
        raise ConflictError(
            f"credential {credential.id} is {credential.status.value} and will never sign "
            "again; it needs no PIN"
        )


def _locked(credential_id: int) -> PinLockedError:
    return PinLockedError(
        f"the PIN of credential {credential_id} is locked after {pins.MAX_FAILURES} "
        "consecutive wrong PINs; an administrator must unlock it"
    )


def _unit(row: Row[Any]) -> Unit:
    return Unit(
        id=row.id,
        parent_id=row.parent_id,
        kind=UnitKind(row.kind),
        code=row.code,
        name=row.name,
        province=row.province,
        locality=row.locality,
    )


def _person(row: Row[Any]) -> Person:
    return Person(
        id=row.id,
        unit_id=row.unit_id,
        role=PersonRole(row.role),
        full_name=row.full_name,
        position=row.position,
        cccd=row.cccd,
        email=row.email,
    )


def _credential(row: Row[Any]) -> Credential:
    return Credential(
        id=row.id,
        kind=CredentialKind(row.kind),
        status=CredentialStatus(row.status),
        unit_id=row.unit_id,
        person_id=row.person_id,
        key_id=row.key_id,
        key_spec=row.key_spec,
        external=bool(row.external),
        certificate=None if row.der is None else asn1_x509.Certificate.load(bytes(row.der)),
        serial=row.serial,
        not_after=None if row.not_after is None else aware(row.not_after),
        replaces_id=row.replaces_id,
        chain=() if row.chain is None else tuple(load_certificates(bytes(row.chain))),
        pin_set=row.pin_hash is not None,
        pin_failures=row.pin_failures,
        pin_locked_at=None if row.pin_locked_at is None else aware(row.pin_locked_at),
    )
