"""Sole control of signing keys: signature activation data (SAD).

Before a signing credential signs, its holder authorises exactly what it will sign:
:meth:`SignatureActivation.authorize` checks who asks, the credential's PIN and, under the
``pin+otp`` policy, the holder's TOTP code, and returns a SAD bound to the credential, to
the hashes (or document ids) and to their number, valid for at most five minutes.
:meth:`SignatureActivation.consume` is what a signing request calls: the SAD is used up
once, for those hashes or documents only, on that credential only, by whoever obtained it.

Who may authorise:

- an officer's credential: the officer it was issued to (their account is linked to the
  person record); never a service client — a service may only queue a document for the
  officer's approval;
- a unit's seal: a clerk (văn thư) of that unit with the seal's PIN; or, without a PIN,
  the one service client a unit admin bound the seal to for automated sealing.

Every issue, use and refusal is an audit event; the SAD itself is never stored (its
SHA-256 is) and never logged.
"""

from __future__ import annotations

import enum
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from audit.events import Action, Actor, Outcome
from audit.log import AuditLog
from audit.store import aware
from kyso.access import factors
from kyso.access.model import (
    AccessError,
    ForbiddenError,
    InvalidAccessInputError,
    Principal,
    Role,
)
from kyso.access.store import AccessStore, User
from kyso.tables import access_activation, access_sads
from pki.authority import Authority, Credential
from pki.errors import PinRequiredError
from pki.store import CredentialKind
from signer.store import MAX_BATCH_ITEMS

SAD_LIFETIME = timedelta(minutes=5)
"""Longest a SAD lasts (the issue's bound; CSC calls it ``expiresIn``)."""

MULTISIGN = 100
"""Most hashes one SAD may authorise (CSC ``multisign``)."""

MAX_DOCUMENTS = MAX_BATCH_ITEMS
"""Most documents one SAD may authorise: a whole batch."""

HASH_ALGORITHMS = {"sha256": 32, "sha384": 48, "sha512": 64}
"""Digest algorithms a SAD may be bound to, with their digest sizes."""

MAX_DOCUMENT_ID = 64


class ActivationPolicy(enum.Enum):
    """What the holder proves to activate a credential."""

    PIN = "pin"
    PIN_OTP = "pin+otp"


class SadRefusedError(AccessError):
    """The SAD is unknown, used, expired, for another credential, another holder, or for
    other hashes, or more signatures are asked than it allows."""

    code = "access.sad_refused"


class OtpRequiredError(AccessError):
    """The credential's policy asks for the holder's TOTP code, which was missing or wrong."""

    code = "access.otp_invalid"


@dataclass(frozen=True, kw_only=True)
class IssuedSad:
    """A SAD as handed to whoever authorised: the secret value, once."""

    value: str
    credential_id: int
    count: int
    expires_at: datetime


@dataclass(frozen=True, kw_only=True)
class Binding:
    """What a SAD is bound to: ``count`` signatures over these hashes or documents."""

    hashes: tuple[bytes, ...] = ()
    hash_algorithm: str | None = None
    document_ids: tuple[str, ...] = ()

    @property
    def count(self) -> int:
        return len(self.hashes) or len(self.document_ids)

    @property
    def most(self) -> int:
        """The most signatures a SAD of this kind may authorise."""
        return MULTISIGN if self.hashes else MAX_DOCUMENTS

    def __post_init__(self) -> None:
        if self.hashes and self.document_ids:
            raise InvalidAccessInputError("a SAD is bound to hashes or to documents, not both")
        if self.hashes:
            size = HASH_ALGORITHMS.get(self.hash_algorithm or "")
            if size is None:
                raise InvalidAccessInputError(
                    f"hash algorithm must be one of {', '.join(sorted(HASH_ALGORITHMS))}"
                )
            if any(len(h) != size for h in self.hashes):
                raise InvalidAccessInputError(f"every {self.hash_algorithm} hash is {size} bytes")
        if any(not d or len(d) > MAX_DOCUMENT_ID or not d.isascii() for d in self.document_ids):
            raise InvalidAccessInputError(
                f"a document id is 1 to {MAX_DOCUMENT_ID} ASCII characters"
            )

    def to_json(self) -> str:
        if self.hashes:
            return json.dumps({"hashes": [h.hex() for h in self.hashes]})
        return json.dumps({"documents": list(self.document_ids)})

    def covered_by(self, stored: dict[str, Any], algorithm: str | None) -> bool:
        """Whether everything asked here was authorised (each at most as often)."""
        if self.hashes:
            allowed = list(stored.get("hashes", ()))
            asked = [h.hex() for h in self.hashes]
            if algorithm != self.hash_algorithm:
                return False
        else:
            allowed = list(stored.get("documents", ()))
            asked = list(self.document_ids)
        if not asked:
            return False
        for item in asked:
            if item not in allowed:
                return False
            allowed.remove(item)
        return True


class SignatureActivation:
    """Activation policies of credentials, and the SADs that activate them."""

    def __init__(
        self,
        *,
        engine: Engine,
        authority: Authority,
        access: AccessStore,
        clock: Callable[[], datetime] | None = None,
        lifetime: timedelta = SAD_LIFETIME,
    ) -> None:
        if not timedelta(seconds=1) <= lifetime <= SAD_LIFETIME:
            raise InvalidAccessInputError("a SAD lasts at most five minutes")
        self._engine = engine
        self._authority = authority
        self._access = access
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lifetime = lifetime

    # -- policies -------------------------------------------------------------------------

    def policy(self, credential_id: int) -> ActivationPolicy:
        """The credential's activation policy: as set, else PIN + OTP for an officer's
        credential (sole control by default) and PIN for a seal."""
        with self._engine.connect() as connection:
            row = connection.execute(
                select(access_activation.c.policy).where(
                    access_activation.c.credential_id == credential_id
                )
            ).first()
        if row is not None:
            return ActivationPolicy(row.policy)
        credential = self._authority.credential(credential_id)
        if credential.kind is CredentialKind.OFFICER:
            return ActivationPolicy.PIN_OTP
        return ActivationPolicy.PIN

    def set_policy(self, credential_id: int, policy: ActivationPolicy, actor: Actor) -> None:
        credential = self._signing_credential(credential_id)
        self._upsert(
            credential.id, actor, {"change": "policy", "policy": policy.value}, policy=policy.value
        )

    def bind_client(self, credential_id: int, client_id: str | None, actor: Actor) -> None:
        """Let the service client ``client_id`` seal with this seal credential without a
        PIN (``None``: no client may). Only a unit's seal can be bound, never an officer's
        credential."""
        credential = self._signing_credential(credential_id)
        if credential.kind is not CredentialKind.SEAL:
            raise ForbiddenError("only a unit's seal can be bound to a service client")
        bound = None
        if client_id is not None:
            client = self._access.client(client_id)
            if client is None:
                raise InvalidAccessInputError(f"no active client {client_id!r}")
            bound = client.id
        self._upsert(
            credential.id,
            actor,
            {"change": "bound_client", "client_id": client_id or "none"},
            client_id=bound,
        )

    def _upsert(
        self, credential_id: int, actor: Actor, details: dict[str, Any], **values: Any
    ) -> None:
        now = self._clock()
        default = {
            "policy": self.policy(credential_id).value,
            "client_id": self.bound_client_id(credential_id),
        }
        with self._engine.begin() as connection:
            dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
            statement = dialect.insert(access_activation).values(
                credential_id=credential_id, changed_at=now, **(default | values)
            )
            connection.execute(
                statement.on_conflict_do_update(
                    index_elements=[access_activation.c.credential_id],
                    set_={**values, "changed_at": now},
                )
            )
            AuditLog.append_event(
                connection,
                Action.CONFIGURATION_CHANGED,
                actor,
                {**details, "credential_id": credential_id},
            )

    def bound_client_id(self, credential_id: int) -> int | None:
        """The id of the service client the seal is bound to, if any."""
        with self._engine.connect() as connection:
            value = connection.execute(
                select(access_activation.c.client_id).where(
                    access_activation.c.credential_id == credential_id
                )
            ).scalar()
        return int(value) if value is not None else None

    def bound_seals(self, client_id: int) -> set[int]:
        """The ids of the seal credentials bound to the service client ``client_id``."""
        with self._engine.connect() as connection:
            return set(
                connection.execute(
                    select(access_activation.c.credential_id).where(
                        access_activation.c.client_id == client_id
                    )
                ).scalars()
            )

    def _signing_credential(self, credential_id: int) -> Credential:
        credential = self._authority.credential(credential_id)
        if credential.kind not in (CredentialKind.OFFICER, CredentialKind.SEAL):
            raise InvalidAccessInputError("only officer and seal credentials sign documents")
        return credential

    # -- authorisation --------------------------------------------------------------------

    def authorize(
        self,
        principal: Principal,
        credential_id: int,
        binding: Binding,
        *,
        count: int,
        pin: str | None,
        otp: str | None = None,
    ) -> IssuedSad:
        """A SAD for ``count`` signatures with the credential over ``binding``, if
        ``principal`` holds the credential and proves it; else a refusal, audited.

        Raises :class:`ForbiddenError` (not the holder), a ``pki.pin_*`` error (PIN
        missing, wrong — counted —, locked), :class:`OtpRequiredError`,
        :class:`InvalidAccessInputError` (count or binding) or ``pki.credential_unusable``.
        """
        actor = principal.actor()
        try:
            if not 1 <= count <= binding.most:
                raise InvalidAccessInputError(f"a SAD authorises 1 to {binding.most} signatures")
            if binding.count != count:
                raise InvalidAccessInputError(
                    f"{count} signatures were asked but {binding.count} hashes or documents given"
                )
            credential = self._signing_credential(credential_id)
            holder = self.check_holder(principal, credential)
            if holder == "bound-client":
                self._authority.usable_credential(credential_id)
            else:
                if not pin:
                    raise PinRequiredError(f"activating credential {credential_id} needs its PIN")
                self._authority.check_pin(credential_id, pin, actor)
                self._authority.usable_credential(credential_id)
                if self.policy(credential_id) is ActivationPolicy.PIN_OTP:
                    user = self._access.user(principal.id.removeprefix("user:"))
                    if not otp or not self._access.use_code(user.id, otp, counted=True):
                        raise OtpRequiredError(
                            "this credential is activated with its PIN and the holder's "
                            "one-time code; the code is missing, wrong or already used"
                        )
        except Exception as ex:
            code = getattr(ex, "code", "kyso.error")
            self._refused(actor, credential_id, "authorize", str(code))
            raise
        value = secrets.token_urlsafe(32)
        now = self._clock()
        expires = now + self._lifetime
        with self._engine.begin() as connection:
            connection.execute(
                insert(access_sads).values(
                    id=factors.digest(value),
                    credential_id=credential_id,
                    principal=principal.id,
                    hash_algorithm=binding.hash_algorithm if binding.hashes else None,
                    bound_to=binding.to_json(),
                    max_count=count,
                    created_at=now,
                    expires_at=expires,
                )
            )
            AuditLog.append_event(
                connection,
                Action.SAD_ISSUED,
                actor,
                {
                    "credential_id": credential_id,
                    "count": count,
                    "bound": "hashes" if binding.hashes else "documents",
                },
            )
        return IssuedSad(value=value, credential_id=credential_id, count=count, expires_at=expires)

    def check_holder(self, principal: Principal, credential: Credential) -> str:
        """How ``principal`` holds ``credential`` (``person`` or ``bound-client``), or
        :class:`ForbiddenError`."""
        if principal.kind == "client":
            if credential.kind is CredentialKind.SEAL:
                client = self._access.client(principal.id.removeprefix("client:"))
                if client is not None and client.id == self.bound_client_id(credential.id):
                    return "bound-client"
            raise ForbiddenError(
                "a service client cannot activate this credential: it may queue a document "
                "for its holder's approval"
            )
        user = self._access.user(principal.id.removeprefix("user:"))
        if user.locked or user.disabled:
            raise ForbiddenError("this account is locked or disabled")
        if _holds(user, credential):
            return "person"
        raise ForbiddenError("only the credential's holder may activate it")

    # -- use --------------------------------------------------------------------------------

    def activate(
        self,
        principal: Principal,
        credential_id: int,
        binding: Binding,
        *,
        sad: str | None = None,
        pin: str | None = None,
        otp: str | None = None,
    ) -> Credential:
        """What every signing request calls before the HSM signs: the credential, if
        ``principal`` may sign ``binding`` with it now — with a SAD obtained beforehand
        (used up here), or by proving in the request itself what :meth:`authorize` asks
        (the PIN and, under ``pin+otp``, a fresh one-time code). Either way the audit log
        shows a SAD issued (inline) and used for exactly this request."""
        if sad is None:
            sad = self.authorize(
                principal, credential_id, binding, count=binding.count, pin=pin, otp=otp
            ).value
        credential = self._authority.usable_credential(credential_id)
        self.consume(principal, sad, credential_id, binding)
        return credential

    def activate_at_console(
        self, credential_id: int, *, pin: str | None, otp: str | None, actor: Actor
    ) -> Credential:
        """The CLI's activation: the operator at the console types the credential's PIN
        and, under ``pin+otp``, the one-time code of its holder (the officer's account, or
        a clerk of the seal's unit), used up as at sign-in. Refusals are audited."""
        try:
            credential = self._signing_credential(credential_id)
            if not pin:
                raise PinRequiredError(f"signing with credential {credential_id} needs its PIN")
            self._authority.check_pin(credential_id, pin, actor)
            self._authority.usable_credential(credential_id)
            if self.policy(credential_id) is ActivationPolicy.PIN_OTP and not (
                otp
                and any(self._access.use_code(user.id, otp) for user in self._holders(credential))
            ):
                raise OtpRequiredError(
                    "this credential is activated with its PIN and its holder's one-time "
                    "code; the code is missing, wrong or already used"
                )
        except Exception as ex:
            self._refused(actor, credential_id, "console", str(getattr(ex, "code", "kyso.error")))
            raise
        return credential

    def _holders(self, credential: Credential) -> list[User]:
        """The active accounts that hold ``credential``."""
        return [
            user
            for user in self._access.users()
            if not (user.locked or user.disabled) and _holds(user, credential)
        ]

    def consume(self, principal: Principal, sad: str, credential_id: int, binding: Binding) -> None:
        """Use up ``sad`` for signing ``binding`` with the credential; refuse (audited)
        unless it is live, unused, for this credential and holder, and covers ``binding``."""
        actor = principal.actor()
        if not isinstance(sad, str) or not 20 <= len(sad) <= 128:
            self._refused(actor, credential_id, "use", "malformed")
            raise SadRefusedError("the SAD is not valid")
        digest = factors.digest(sad)
        now = self._clock()
        with self._engine.connect() as connection:
            row = connection.execute(select(access_sads).where(access_sads.c.id == digest)).first()
        reason = None
        if row is None:
            reason = "unknown"
        elif row.used_at is not None:
            reason = "used"
        elif aware(row.expires_at) <= now:
            reason = "expired"
        elif row.credential_id != credential_id:
            reason = "other_credential"
        elif row.principal != principal.id:
            reason = "other_holder"
        elif binding.count > row.max_count:
            reason = "over_count"
        elif not binding.covered_by(json.loads(row.bound_to), row.hash_algorithm):
            reason = "other_hashes"
        if reason is None:
            with self._engine.begin() as connection:
                used = connection.execute(
                    update(access_sads)
                    .where(access_sads.c.id == digest, access_sads.c.used_at.is_(None))
                    .values(used_at=now)
                ).rowcount
                if used == 1:
                    AuditLog.append_event(
                        connection,
                        Action.SAD_USED,
                        actor,
                        {
                            "credential_id": credential_id,
                            "count": binding.count,
                        },
                    )
                    return
            reason = "used"
        self._refused(actor, credential_id, "use", reason)
        raise SadRefusedError(f"the SAD is not valid for this request ({reason.replace('_', ' ')})")

    def _refused(self, actor: Actor, credential_id: int, step: str, reason: str) -> None:
        with self._engine.begin() as connection:
            AuditLog.append_event(
                connection,
                Action.SAD_REFUSED,
                actor,
                {"credential_id": credential_id, "step": step, "reason": reason},
                outcome=Outcome(success=False, code=SadRefusedError.code),
            )


def _holds(user: User, credential: Credential) -> bool:
    """Whether ``user`` is the credential's holder: the officer it was issued to, or a
    clerk (văn thư) of the seal's unit."""
    if credential.kind is CredentialKind.OFFICER:
        return (
            user.role is Role.OFFICER
            and user.person_id is not None
            and user.person_id == credential.person_id
        )
    return (
        user.role is Role.CLERK and user.unit_id is not None and user.unit_id == credential.unit_id
    )
