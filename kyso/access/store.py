"""People who sign in, their sessions, and service clients; every change audited.

A person signs in with a username, a password (argon2id) and, for a web session, a TOTP
code. Wrong tries are counted; after :data:`MAX_LOGIN_FAILURES` in a row the account is
locked until an administrator unlocks it. Every refusal says the same thing, whatever was
wrong, so that no answer tells whether an account exists, and costs one password hash.

A TOTP secret is stored sealed (AES-GCM) by a key on the HSM when the store has a
:class:`SecretSealer`, as every production store does: a database dump alone gives no
one-time code away. Each sealed secret is bound to its account's username (which never
changes), so that one copied to another account's row does not open there.

A service client authenticates with its ``client_id`` and a random secret, of which only
the SHA-256 is stored; a rotation keeps the previous secret working for a grace period
so that the client can be redeployed without downtime; a revocation ends it at once.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from audit.events import Action, Actor, Outcome
from audit.log import AuditLog
from audit.store import aware
from kyso.access import factors
from kyso.access.model import (
    AccessConflictError,
    AccessError,
    AccessNotFoundError,
    InvalidAccessInputError,
    InvalidClientError,
    InvalidLoginError,
    Principal,
    Role,
    Scope,
    format_scopes,
    parse_scopes,
)
from kyso.tables import access_clients, access_sessions, access_users
from pki.store import pki_people, pki_units

log = logging.getLogger("kyso.accounts")

MAX_LOGIN_FAILURES = 5
"""Wrong tries in a row that lock an account (an administrator unlocks it)."""

WEB_SESSION = timedelta(hours=8)
"""How long a web session lasts (one working day)."""

CSC_SESSION = timedelta(hours=1)
"""How long a CSC ``auth/login`` session lasts."""

ROTATION_GRACE = timedelta(hours=24)
"""How long a client's previous secret keeps working after a rotation."""

_USERNAME = re.compile(r"[a-z0-9][a-z0-9._-]{2,63}", re.ASCII)
_CLIENT_NAME_MAX = 128
_REFUSED = "wrong username, password or code, or the account may not sign in"

SEALED_PREFIX = "v1:"
"""Marks a sealed TOTP secret (``v1:`` + base64 of nonce, ciphertext and tag); a clear
base32 secret never holds a colon."""


class SecretSealer(Protocol):
    """Seals short secrets with a key the database never sees (on the HSM in production)."""

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        """``plaintext`` sealed and bound to ``aad``; a fresh nonce every time."""
        ...

    def unseal(self, sealed: bytes, aad: bytes) -> bytes | None:
        """The plaintext, or ``None`` when ``sealed`` does not open with ``aad`` (changed,
        or moved from another account). An unreachable key raises its own error."""
        ...


class SealerMissingError(AccessError):
    """A secret cannot be sealed or opened: the store was built without a sealer (a
    construction site that forgot it), or the sealing key is not on the token."""

    code = "access.sealer_missing"


def _totp_aad(username: str) -> bytes:
    return b"kyso totp " + username.encode("ascii")


@dataclass(frozen=True, kw_only=True)
class User:
    id: int
    username: str
    role: Role
    unit_id: int | None
    person_id: int | None
    locked: bool
    disabled: bool
    created_at: datetime

    def principal(self, *, second_factor: bool) -> Principal:
        return Principal(
            kind="user",
            id=f"user:{self.username}",
            role=self.role,
            unit_id=self.unit_id,
            second_factor=second_factor,
        )


@dataclass(frozen=True, kw_only=True)
class Client:
    id: int
    client_id: str
    name: str
    unit_id: int | None
    scopes: frozenset[Scope]
    revoked: bool
    created_at: datetime
    rotated_at: datetime | None

    def principal(self, scopes: frozenset[Scope] | None = None) -> Principal:
        return Principal(
            kind="client",
            id=f"client:{self.client_id}",
            role=None,
            unit_id=self.unit_id,
            scopes=self.scopes if scopes is None else scopes,
        )


@dataclass(frozen=True, kw_only=True)
class Session:
    """A signed-in person: what the secret in their cookie (or bearer token) stands for."""

    user: User
    kind: str
    csrf_hash: str
    expires_at: datetime

    def principal(self) -> Principal:
        return self.user.principal(second_factor=self.kind == "web")


@dataclass(frozen=True, kw_only=True)
class OpenedSession:
    """The secrets of a new session, handed to the person once; only hashes are stored."""

    secret: str
    csrf: str
    expires_at: datetime
    user: User


class AccessStore:
    """Accounts, sessions and clients in the database; audit events in the same transaction."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Callable[[], datetime] | None = None,
        sealer: SecretSealer | None = None,
    ) -> None:
        """Without ``sealer`` TOTP secrets are stored in clear: for tests on a bare
        database only; every production store passes the HSM sealer."""
        self._engine = engine
        self._clock = clock or (lambda: datetime.now(UTC))
        self._sealer = sealer

    # -- people ---------------------------------------------------------------------------

    def add_user(
        self,
        *,
        username: str,
        role: Role,
        unit_id: int | None,
        password: str,
        actor: Actor,
        person_id: int | None = None,
        totp_secret: str | None = None,
    ) -> tuple[User, str]:
        """Create an account; returns it and its TOTP secret (to enrol an authenticator
        app, shown once). A system admin has no unit; every other role has one."""
        if not isinstance(username, str) or not _USERNAME.fullmatch(username):
            raise InvalidAccessInputError(
                "a username is 3 to 64 lower-case ASCII letters, digits or ._- "
                "(starting with a letter or digit)"
            )
        if (role is Role.SYSTEM_ADMIN) != (unit_id is None):
            raise InvalidAccessInputError("a system admin has no unit; every other role has one")
        password_hash = factors.hash_password(password)
        secret = totp_secret or factors.new_totp_secret()
        stored = self._stored_secret(username, secret)
        now = self._clock()
        with self._engine.begin() as connection:
            self._check_unit_and_person(connection, unit_id, person_id, role)
            try:
                inserted = connection.execute(
                    insert(access_users).values(
                        username=username,
                        role=role.value,
                        unit_id=unit_id,
                        person_id=person_id,
                        password_hash=password_hash,
                        totp_secret=stored,
                        failed_logins=0,
                        created_at=now,
                        password_changed_at=now,
                    )
                ).inserted_primary_key
            except IntegrityError as ex:
                raise AccessConflictError(f"the username {username!r} is taken") from ex
            assert inserted is not None
            user_id = inserted[0]
            AuditLog.append_event(
                connection,
                Action.USER_CHANGED,
                actor,
                {"change": "created", "username": username, "role": role.value},
            )
            user = _user(_user_row(connection, user_id=int(user_id)))
        return user, secret

    def users(self) -> list[User]:
        with self._engine.connect() as connection:
            rows = connection.execute(select(access_users).order_by(access_users.c.id)).all()
        return [_user(row) for row in rows]

    def user(self, username: str) -> User:
        with self._engine.connect() as connection:
            row = _user_row(connection, username=username)
        if row is None:
            raise AccessNotFoundError(f"no account {username!r}")
        return _user(row)

    def authenticate(self, username: str, password: str, code: str | None, *, kind: str) -> User:
        """The account if ``password`` (and, for a ``web`` sign-in, the TOTP ``code``) is
        right and it may sign in; else :class:`InvalidLoginError`, with the try counted.
        A ``csc`` sign-in (CSC ``auth/login``, HTTP Basic) takes no code: the second
        factor is asked where it matters, when a signing credential is activated."""
        name = username if isinstance(username, str) and _USERNAME.fullmatch(username) else ""
        with self._engine.connect() as connection:
            row = _user_row(connection, username=name) if name else None
        # One hash whatever happens, so that the time taken says nothing either.
        password_ok = factors.verify_password(row.password_hash if row else None, password)
        if row is None:
            self._failed(None, name, "unknown")
            raise InvalidLoginError(_REFUSED)
        if row.disabled_at is not None or row.locked_at is not None:
            self._failed(None, name, "disabled" if row.disabled_at else "locked")
            raise InvalidLoginError(_REFUSED)
        step = None
        secret_ok = True
        if kind == "web":
            # Opened whatever the password, so that the time taken does not tell.
            secret = self._open_secret(row.id, name, row.totp_secret)
            secret_ok = secret is not None
            if secret is not None:
                step = factors.match_totp(
                    secret, code or "", after_step=row.totp_last_step, at=self._now_ts()
                )
        if not password_ok or (kind == "web" and step is None):
            reason = "password" if not password_ok else "code" if secret_ok else "sealed_secret"
            self._failed(row.id, name, reason)
            raise InvalidLoginError(_REFUSED)
        with self._engine.begin() as connection:
            condition = access_users.c.id == row.id
            if step is not None:
                # A code is used once: a second sign-in with it loses this race.
                condition &= access_users.c.totp_last_step.is_(None) | (
                    access_users.c.totp_last_step < step
                )
            changed = connection.execute(
                update(access_users)
                .where(condition, access_users.c.locked_at.is_(None))
                .values(failed_logins=0, totp_last_step=step or row.totp_last_step)
            ).rowcount
            if changed != 1:
                raise InvalidLoginError(_REFUSED)
            AuditLog.append_event(
                connection,
                Action.LOGIN_SUCCEEDED,
                Actor(id=f"user:{name}", role=row.role),
                {"kind": kind},
            )
            return _user(_user_row(connection, user_id=row.id))

    def _failed(self, user_id: int | None, username: str, reason: str) -> None:
        details: dict[str, Any] = {"reason": reason}
        with self._engine.begin() as connection:
            if user_id is not None:
                connection.execute(
                    update(access_users)
                    .where(access_users.c.id == user_id)
                    .values(failed_logins=access_users.c.failed_logins + 1)
                )
                failures = connection.execute(
                    select(access_users.c.failed_logins).where(access_users.c.id == user_id)
                ).scalar_one()
                details["failures"] = failures
                if failures >= MAX_LOGIN_FAILURES:
                    locked = connection.execute(
                        update(access_users)
                        .where(access_users.c.id == user_id, access_users.c.locked_at.is_(None))
                        .values(locked_at=self._clock())
                    ).rowcount
                    details["locked"] = bool(locked)
            actor = Actor(id=f"user:{username[:60]}") if username else Actor()
            AuditLog.append_event(
                connection,
                Action.LOGIN_FAILED,
                actor,
                details,
                outcome=Outcome(success=False, code=InvalidLoginError.code),
            )

    def unlock(self, username: str, actor: Actor) -> User:
        """Unlock an account and clear its failure count (an administrator's act)."""
        return self._change(
            username, actor, {"change": "unlocked"}, locked_at=None, failed_logins=0
        )

    def disable(self, username: str, actor: Actor) -> User:
        """Stop an account from signing in, and end its sessions."""
        user = self._change(username, actor, {"change": "disabled"}, disabled_at=self._clock())
        with self._engine.begin() as connection:
            connection.execute(
                update(access_sessions)
                .where(access_sessions.c.user_id == user.id, access_sessions.c.revoked_at.is_(None))
                .values(revoked_at=self._clock())
            )
        return user

    def set_password(
        self, username: str, password: str, actor: Actor, *, keep_session: str | None = None
    ) -> User:
        """A new password; every session of the account ends but ``keep_session`` (the
        secret of the session the holder changed it from): whoever knew the old one is out."""
        user = self._change(
            username,
            actor,
            {"change": "password"},
            password_hash=factors.hash_password(password),
            password_changed_at=self._clock(),
        )
        kept = factors.digest(keep_session) if keep_session else None
        with self._engine.begin() as connection:
            connection.execute(
                update(access_sessions)
                .where(
                    access_sessions.c.user_id == user.id,
                    access_sessions.c.revoked_at.is_(None),
                    access_sessions.c.id != (kept or ""),
                )
                .values(revoked_at=self._clock())
            )
        return user

    def check_password(self, username: str, password: str) -> None:
        """:class:`InvalidLoginError` unless ``password`` is the account's current one: the
        holder proves it before changing it. A wrong one counts towards the lock, as a
        wrong sign-in does, so that a stolen session cannot guess it."""
        with self._engine.connect() as connection:
            row = _user_row(connection, username=username)
        if not factors.verify_password(row.password_hash if row else None, password):
            self._failed(row.id if row else None, username, "password")
            raise InvalidLoginError(_REFUSED)

    def reset_totp(self, username: str, actor: Actor) -> str:
        """A new TOTP secret for the account (the old authenticator stops working)."""
        secret = factors.new_totp_secret()
        self._change(
            username,
            actor,
            {"change": "second_factor"},
            totp_secret=self._stored_secret(username, secret),
            totp_last_step=None,
        )
        return secret

    def seal_clear_secrets(self) -> int:
        """Seal every TOTP secret still stored in clear (made before sealing, or by a store
        without a sealer); how many were. Idempotent: ``kyso init`` runs it every time."""
        if self._sealer is None:
            raise SealerMissingError("sealing the TOTP secrets needs a sealer")
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(access_users.c.id, access_users.c.username, access_users.c.totp_secret)
            ).all()
        clear = [row for row in rows if not row.totp_secret.startswith(SEALED_PREFIX)]
        return sum(self._seal_in_place(row.id, row.username, row.totp_secret) for row in clear)

    def _stored_secret(self, username: str, secret: str) -> str:
        """What the database keeps of ``secret``: sealed when there is a sealer."""
        if self._sealer is None:
            return secret
        sealed = self._sealer.seal(secret.encode("ascii"), _totp_aad(username))
        return SEALED_PREFIX + base64.b64encode(sealed).decode("ascii")

    def _open_secret(self, user_id: int, username: str, stored: str) -> str | None:
        """The clear secret of a row; ``None`` when a sealed one does not open (the row
        was changed or copied from another account). A clear one is sealed on the way."""
        if not stored.startswith(SEALED_PREFIX):
            if self._sealer is not None:
                self._seal_in_place(user_id, username, stored)
            return stored
        if self._sealer is None:
            raise SealerMissingError("this account's second factor is sealed; no sealer here")
        try:
            sealed = base64.b64decode(stored.removeprefix(SEALED_PREFIX), validate=True)
        except binascii.Error:
            sealed = b""
        opened = self._sealer.unseal(sealed, _totp_aad(username)) if sealed else None
        if opened is None:
            log.warning("the sealed second-factor secret of account %r does not open", username)
            return None
        return opened.decode("ascii")

    def _seal_in_place(self, user_id: int, username: str, clear: str) -> bool:
        """Replace a clear secret by its sealed form, unless it changed meanwhile."""
        stored = self._stored_secret(username, clear)
        with self._engine.begin() as connection:
            return bool(
                connection.execute(
                    update(access_users)
                    .where(access_users.c.id == user_id, access_users.c.totp_secret == clear)
                    .values(totp_secret=stored)
                ).rowcount
            )

    def set_role(self, username: str, role: Role, unit_id: int | None, actor: Actor) -> User:
        if (role is Role.SYSTEM_ADMIN) != (unit_id is None):
            raise InvalidAccessInputError("a system admin has no unit; every other role has one")
        with self._engine.connect() as connection:
            self._check_unit_and_person(connection, unit_id, None, role)
        return self._change(
            username,
            actor,
            {"change": "role", "role": role.value},
            role=role.value,
            unit_id=unit_id,
        )

    def _change(self, username: str, actor: Actor, details: dict[str, Any], **values: Any) -> User:
        with self._engine.begin() as connection:
            changed = connection.execute(
                update(access_users).where(access_users.c.username == username).values(**values)
            ).rowcount
            if changed != 1:
                raise AccessNotFoundError(f"no account {username!r}")
            AuditLog.append_event(
                connection, Action.USER_CHANGED, actor, {**details, "username": username}
            )
            return _user(_user_row(connection, username=username))

    def _check_unit_and_person(
        self, connection: Connection, unit_id: int | None, person_id: int | None, role: Role
    ) -> None:
        if (
            unit_id is not None
            and connection.execute(select(pki_units.c.id).where(pki_units.c.id == unit_id)).first()
            is None
        ):
            raise AccessNotFoundError(f"no unit {unit_id}")
        if person_id is None:
            return
        person = connection.execute(
            select(pki_people.c.unit_id, pki_people.c.role).where(pki_people.c.id == person_id)
        ).first()
        if person is None:
            raise AccessNotFoundError(f"no person {person_id}")
        if person.unit_id != unit_id or person.role != role.value:
            raise InvalidAccessInputError(
                "an officer's or clerk's account has that person's role and unit"
            )

    def use_code(self, user_id: int, code: str, *, counted: bool = False) -> bool:
        """Whether ``code`` is the account's current TOTP code, not used before; a right
        code is used up (a second use of it, or of an earlier one, is refused).

        ``counted`` (signature activation): a wrong or used code counts as a failed try of
        the account, as a wrong sign-in does — five in a row lock it, and its sessions with
        it — and a right one clears the count; so a stolen session that knows the PIN
        cannot go on guessing codes."""
        used = self._use_code(user_id, code)
        if counted:
            if used:
                with self._engine.begin() as connection:
                    connection.execute(
                        update(access_users)
                        .where(access_users.c.id == user_id)
                        .values(failed_logins=0)
                    )
            else:
                username = self._username(user_id)
                if username is not None:
                    self._failed(user_id, username, "activation_code")
        return used

    def _username(self, user_id: int) -> str | None:
        with self._engine.connect() as connection:
            name: str | None = connection.execute(
                select(access_users.c.username).where(access_users.c.id == user_id)
            ).scalar()
        return name

    def _use_code(self, user_id: int, code: str) -> bool:
        with self._engine.connect() as connection:
            row = connection.execute(
                select(
                    access_users.c.username,
                    access_users.c.totp_secret,
                    access_users.c.totp_last_step,
                ).where(access_users.c.id == user_id)
            ).first()
        if row is None:
            return False
        secret = self._open_secret(user_id, row.username, row.totp_secret)
        if secret is None:
            return False
        step = factors.match_totp(secret, code, after_step=row.totp_last_step, at=self._now_ts())
        if step is None:
            return False
        # The step check in the update makes the read and the write one atomic use.
        with self._engine.begin() as connection:
            return (
                connection.execute(
                    update(access_users)
                    .where(
                        access_users.c.id == user_id,
                        access_users.c.totp_last_step.is_(None)
                        | (access_users.c.totp_last_step < step),
                    )
                    .values(totp_last_step=step)
                ).rowcount
                == 1
            )

    def _now_ts(self) -> float:
        return self._clock().timestamp()

    # -- sessions -------------------------------------------------------------------------

    def open_session(self, user: User, *, kind: str) -> OpenedSession:
        """A new session for ``user`` (just authenticated): its secret (the cookie or the
        CSC bearer token) and a CSRF secret for cookie sessions, each given out once."""
        secret, csrf = factors.new_session_secret(), factors.new_session_secret()
        now = self._clock()
        expires = now + (WEB_SESSION if kind == "web" else CSC_SESSION)
        with self._engine.begin() as connection:
            connection.execute(
                insert(access_sessions).values(
                    id=factors.digest(secret),
                    user_id=user.id,
                    kind=kind,
                    csrf_hash=factors.digest(csrf),
                    created_at=now,
                    expires_at=expires,
                )
            )
        return OpenedSession(secret=secret, csrf=csrf, expires_at=expires, user=user)

    def session(self, secret: str, *, kind: str) -> Session | None:
        """The live session of ``kind`` (``web`` or ``csc``) ``secret`` stands for, or
        ``None`` (unknown, of the other kind, expired, revoked, or its account locked or
        disabled since). A CSC session was opened without the second factor: it never
        passes for a web one."""
        if not isinstance(secret, str) or not 20 <= len(secret) <= 128:
            return None
        with self._engine.connect() as connection:
            row = connection.execute(
                select(access_sessions).where(access_sessions.c.id == factors.digest(secret))
            ).first()
            if (
                row is None
                or row.kind != kind
                or row.revoked_at is not None
                or aware(row.expires_at) <= self._clock()
            ):
                return None
            user = _user(_user_row(connection, user_id=row.user_id))
        if user.locked or user.disabled:
            return None
        return Session(
            user=user, kind=row.kind, csrf_hash=row.csrf_hash, expires_at=aware(row.expires_at)
        )

    def end_session(self, secret: str, actor: Actor) -> bool:
        """Revoke the session; True if it was live."""
        with self._engine.begin() as connection:
            ended = connection.execute(
                update(access_sessions)
                .where(
                    access_sessions.c.id == factors.digest(secret),
                    access_sessions.c.revoked_at.is_(None),
                )
                .values(revoked_at=self._clock())
            ).rowcount
            if ended:
                AuditLog.append_event(
                    connection, Action.SESSION_ENDED, actor, {"change": "signed_out"}
                )
        return bool(ended)

    # -- service clients ------------------------------------------------------------------

    def add_client(
        self,
        *,
        name: str,
        scopes: frozenset[Scope],
        unit_id: int | None,
        actor: Actor,
        secret: str | None = None,
    ) -> tuple[Client, str]:
        """Register a service client; returns it and its secret (shown once)."""
        if not isinstance(name, str) or not name.strip() or len(name) > _CLIENT_NAME_MAX:
            raise InvalidAccessInputError(f"a client's name is 1 to {_CLIENT_NAME_MAX} characters")
        if not scopes:
            raise InvalidAccessInputError("a client needs at least one scope")
        secret = secret or factors.new_client_secret()
        client_id = f"kyso-{secrets.token_hex(8)}"
        with self._engine.begin() as connection:
            self._check_unit_and_person(connection, unit_id, None, Role.UNIT_ADMIN)
            connection.execute(
                insert(access_clients).values(
                    client_id=client_id,
                    name=name.strip(),
                    unit_id=unit_id,
                    scopes=format_scopes(scopes),
                    secret_hash=factors.digest(secret),
                    created_at=self._clock(),
                )
            )
            AuditLog.append_event(
                connection,
                Action.CLIENT_CHANGED,
                actor,
                {"change": "created", "client_id": client_id, "scopes": format_scopes(scopes)},
            )
            client = _client(_client_row(connection, client_id))
        return client, secret

    def clients(self) -> list[Client]:
        with self._engine.connect() as connection:
            rows = connection.execute(select(access_clients).order_by(access_clients.c.id)).all()
        return [_client(row) for row in rows]

    def client(self, client_id: str) -> Client | None:
        """The client if it exists and is not revoked."""
        with self._engine.connect() as connection:
            row = _client_row(connection, client_id)
        if row is None or row.revoked_at is not None:
            return None
        return _client(row)

    def authenticate_client(self, client_id: str, secret: str) -> Client:
        """The client if ``secret`` is its secret (or its previous one, within the grace
        period of a rotation) and it is not revoked; else :class:`InvalidClientError`."""
        with self._engine.connect() as connection:
            row = (
                _client_row(connection, client_id)
                if isinstance(client_id, str) and len(client_id) <= 64
                else None
            )
        current = factors.digests_match(row.secret_hash if row else _DECOY_DIGEST, secret)
        previous = (
            row is not None
            and row.previous_secret_hash is not None
            and row.previous_valid_until is not None
            and aware(row.previous_valid_until) > self._clock()
            and factors.digests_match(row.previous_secret_hash, secret)
        )
        if row is None or row.revoked_at is not None or not (current or previous):
            raise InvalidClientError("unknown client, wrong secret, or a revoked client")
        return _client(row)

    def rotate_client(
        self, client_id: str, actor: Actor, *, grace: timedelta = ROTATION_GRACE
    ) -> str:
        """A new secret for the client; the current one keeps working for ``grace``."""
        secret = factors.new_client_secret()
        now = self._clock()
        with self._engine.begin() as connection:
            row = _client_row(connection, client_id)
            if row is None or row.revoked_at is not None:
                raise AccessNotFoundError(f"no active client {client_id!r}")
            connection.execute(
                update(access_clients)
                .where(access_clients.c.id == row.id)
                .values(
                    secret_hash=factors.digest(secret),
                    previous_secret_hash=row.secret_hash,
                    previous_valid_until=now + grace,
                    rotated_at=now,
                )
            )
            AuditLog.append_event(
                connection,
                Action.CLIENT_CHANGED,
                actor,
                {
                    "change": "rotated",
                    "client_id": client_id,
                    "grace_seconds": int(grace.total_seconds()),
                },
            )
        return secret

    def revoke_client(self, client_id: str, actor: Actor) -> Client:
        """End the client: its secrets and every token issued to it stop working now."""
        with self._engine.begin() as connection:
            changed = connection.execute(
                update(access_clients)
                .where(
                    access_clients.c.client_id == client_id, access_clients.c.revoked_at.is_(None)
                )
                .values(revoked_at=self._clock())
            ).rowcount
            if changed != 1:
                raise AccessNotFoundError(f"no active client {client_id!r}")
            AuditLog.append_event(
                connection,
                Action.CLIENT_CHANGED,
                actor,
                {"change": "revoked", "client_id": client_id},
            )
            return _client(_client_row(connection, client_id))

    def record_grant(self, client: Client, scopes: frozenset[Scope]) -> None:
        """Audit an access token issued to ``client`` for ``scopes``."""
        with self._engine.begin() as connection:
            AuditLog.append_event(
                connection,
                Action.ACCESS_GRANTED,
                client.principal().actor(),
                {"scopes": format_scopes(scopes)},
            )


_DECOY_DIGEST = factors.digest(secrets.token_urlsafe(32))


def _user_row(
    connection: Connection, *, user_id: int | None = None, username: str | None = None
) -> Any:
    query = select(access_users)
    query = query.where(
        access_users.c.id == user_id if user_id is not None else access_users.c.username == username
    )
    return connection.execute(query).first()


def _client_row(connection: Connection, client_id: str) -> Any:
    return connection.execute(
        select(access_clients).where(access_clients.c.client_id == client_id)
    ).first()


def _user(row: Any) -> User:
    return User(
        id=row.id,
        username=row.username,
        role=Role(row.role),
        unit_id=row.unit_id,
        person_id=row.person_id,
        locked=row.locked_at is not None,
        disabled=row.disabled_at is not None,
        created_at=aware(row.created_at),
    )


def _client(row: Any) -> Client:
    return Client(
        id=row.id,
        client_id=row.client_id,
        name=row.name,
        unit_id=row.unit_id,
        scopes=parse_scopes(row.scopes),
        revoked=row.revoked_at is not None,
        created_at=aware(row.created_at),
        rotated_at=aware(row.rotated_at) if row.rotated_at else None,
    )
