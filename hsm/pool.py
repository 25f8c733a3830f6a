"""A pool of logged-in PKCS#11 sessions on one token.

PKCS#11 allows one operation per session at a time and keeps the login state per
application, so the pool logs in once, opens ``pool_size`` read-write sessions and lends
each to one caller at a time. :class:`BlockingSessionPool` is the thread-safe core;
:class:`SessionPool` is the async API used by the service, running each call in a worker
thread (python-pkcs11 releases the GIL inside the module, so two cores sign at once).

Recovery: when the token vanishes or its sessions die (``SessionHandleInvalid``,
``TokenNotPresent``, device errors), the failing caller waits until every session is back,
re-initializes the module, finds the token again, logs in, reopens the sessions and
retries its operation once. An operation whose first attempt failed produced no
signature, so the single retry never signs one request twice. While the token stays away,
callers get :class:`HsmUnavailableError` after at most ``acquire_timeout`` seconds, and
reopen attempts are spaced by ``retry_interval``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar, cast

import pkcs11
from pkcs11 import Attribute, KeyType, ObjectClass, TokenFlag
from pkcs11.types import VerifyMixin

from hsm import der, metrics
from hsm.config import HsmConfig, find_pkcs11_module
from hsm.errors import (
    HsmConfigError,
    HsmError,
    HsmInvalidRequestError,
    HsmKeyNotFoundError,
    HsmKeyRefusedError,
    HsmOperationError,
    HsmPinIncorrectError,
    HsmPinLockedError,
    HsmUnavailableError,
    HsmUnsupportedError,
)
from hsm.keys import (
    PRIVATE_TEMPLATE,
    PUBLIC_TEMPLATE,
    SIGNING_CAPABILITIES,
    KeyInfo,
    KeySpec,
    check_label,
    curve_for,
    describe,
    find_public,
    key_id_for,
    public_key_der,
)
from hsm.module import Pkcs11Module, load_module
from hsm.sealing import (
    SECRET_CAPABILITIES,
    SECRET_KEY_BITS,
    SECRET_TEMPLATE,
    SecretKeyInfo,
    describe_secret,
    seal_with,
    unseal_with,
)
from hsm.signing import HashAlg, SignScheme, default_scheme, plan

log = logging.getLogger("kyso.hsm")

T = TypeVar("T")

RECOVERABLE: tuple[type[pkcs11.PKCS11Error], ...] = (
    pkcs11.SessionHandleInvalid,
    pkcs11.SessionClosed,
    pkcs11.TokenNotPresent,
    pkcs11.TokenNotRecognised,
    pkcs11.DeviceError,
    pkcs11.DeviceRemoved,
    pkcs11.DeviceMemory,
    pkcs11.SlotIDInvalid,
    pkcs11.UserNotLoggedIn,
    pkcs11.KeyHandleInvalid,
    pkcs11.ObjectHandleInvalid,
    pkcs11.GeneralError,
)
"""Errors after which the sessions (or the module) must be reopened."""

_PIN_FLAGS_REFUSED = TokenFlag.USER_PIN_LOCKED | TokenFlag.USER_PIN_FINAL_TRY


_OPEN_RETRY_PAUSE = 0.2
"""Seconds before :meth:`BlockingSessionPool.open` retries a token it did not find."""


@dataclass(frozen=True, kw_only=True)
class TokenInfo:
    """The token a pool is bound to."""

    label: str
    serial: str
    manufacturer: str
    model: str
    slot_id: int
    flags: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class SlotReport:
    slot_id: int
    description: str
    token: TokenInfo | None


@dataclass(frozen=True, kw_only=True)
class ModuleInfo:
    """What ``kyso hsm info`` prints."""

    path: str
    manufacturer: str
    description: str
    library_version: str
    cryptoki_version: str
    thread_safe: bool
    slots: tuple[SlotReport, ...]
    mechanisms: tuple[str, ...]
    """Mechanisms of the pool's token."""


@dataclass(frozen=True, kw_only=True)
class SelfTestResult:
    key: KeyInfo
    ok: bool
    detail: str


class _Session:
    """One open session, the module generation it belongs to, and its key handle cache."""

    __slots__ = ("generation", "handle", "keys", "logged_in", "sealing_keys")

    def __init__(self, handle: pkcs11.Session, generation: int, *, logged_in: bool) -> None:
        self.handle = handle
        self.generation = generation
        self.logged_in = logged_in
        self.keys: dict[bytes, tuple[pkcs11.PrivateKey, KeyType]] = {}
        self.sealing_keys: dict[str, pkcs11.SecretKey] = {}


def _token_info(token: pkcs11.Token) -> TokenInfo:
    return TokenInfo(
        label=token.label,
        serial=token.serial.decode("ascii", "replace").strip(),
        manufacturer=token.manufacturer_id,
        model=token.model,
        slot_id=token.slot.slot_id,
        flags=tuple(f.name or str(f) for f in TokenFlag if f and f in token.flags),
    )


class BlockingSessionPool:
    """Thread-safe, blocking session pool. Use from threads or the CLI."""

    def __init__(self, config: HsmConfig) -> None:
        self.config = config
        self._module: Pkcs11Module | None = None
        self._token: pkcs11.Token | None = None
        self._cond = threading.Condition()
        self._idle: list[_Session] = []
        self._live = 0
        self._generation = -1
        self._recovering = False
        self._waiting = 0
        self._closed = True
        self._down: HsmError | None = None
        self._last_attempt = 0.0
        self._recover_lock = threading.Lock()
        self._serial: threading.Lock | None = None
        self._exclusive = False
        self._exclusive_waiting = 0
        self._pin_key = secrets.token_bytes(32)
        self._rejected_pin: bytes | None = None
        metrics.register_pool(self)

    # -- lifecycle -----------------------------------------------------------------

    def open(self) -> None:
        """Load the module, log in and open the sessions. Raises a typed HsmError."""
        path = find_pkcs11_module(self.config.module_path)
        self._module = load_module(path)
        self._serial = None if self._module.thread_safe else threading.Lock()
        self._closed = False
        with self._recover_lock:
            try:
                self._reopen(reinitialize=False)
            except HsmUnavailableError:
                # SoftHSM 2.6 now and then misses a token that another process is opening at
                # the same moment; the retry the error message promises, from a fresh module.
                time.sleep(_OPEN_RETRY_PAUSE)
                self._reopen(reinitialize=True)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            sessions, self._idle = self._idle, []
            self._live = 0
            self._cond.notify_all()
        if self._module is None:
            return
        generation = self._module.enter()
        try:
            # Close the logged-in session last: C_Logout on it ends the login for all.
            for s in sorted(sessions, key=lambda s: s.logged_in):
                if s.generation == generation:
                    with contextlib.suppress(pkcs11.PKCS11Error):
                        s.handle.close()
        finally:
            self._module.leave()

    def __enter__(self) -> BlockingSessionPool:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def module(self) -> Pkcs11Module:
        if self._module is None:
            raise HsmConfigError("the session pool is not open")
        return self._module

    @property
    def healthy(self) -> bool:
        return not self._closed and self._down is None

    def _find_token(self) -> pkcs11.Token:
        lib = self.module.lib
        try:
            if self.config.token_serial:
                token: pkcs11.Token = lib.get_token(token_serial=self.config.token_serial.encode())
            else:
                token = lib.get_token(token_label=self.config.token_label)
        except pkcs11.NoSuchToken:
            raise HsmUnavailableError(f"token {self._token_name} is not present") from None
        except pkcs11.MultipleTokensReturned:
            raise HsmConfigError(
                f"several tokens match {self._token_name}; select the token by serial"
            ) from None
        return token

    @property
    def _token_name(self) -> str:
        if self.config.token_serial:
            return f"with serial {self.config.token_serial}"
        return repr(self.config.token_label)

    def _login(self, token: pkcs11.Token) -> pkcs11.Session:
        flags = token.flags
        if flags & _PIN_FLAGS_REFUSED:
            state = "locked" if flags & TokenFlag.USER_PIN_LOCKED else "on its final try"
            raise HsmPinLockedError(f"the user PIN of token {self._token_name} is {state}")
        pin = self.config.pin.read()
        fingerprint = hmac.new(self._pin_key, pin.encode(), hashlib.sha256).digest()
        if self._rejected_pin is not None and hmac.compare_digest(fingerprint, self._rejected_pin):
            raise HsmPinIncorrectError(
                f"the token {self._token_name} already rejected this user PIN; not trying again"
            )
        try:
            session: pkcs11.Session = token.open(rw=True, user_pin=pin)
        except pkcs11.PinIncorrect:
            self._rejected_pin = fingerprint
            raise HsmPinIncorrectError(
                f"the token {self._token_name} rejected the user PIN"
            ) from None
        except pkcs11.PinLocked:
            raise HsmPinLockedError(f"the user PIN of token {self._token_name} is locked") from None
        except (pkcs11.PinExpired, pkcs11.PinInvalid, pkcs11.PinLenRange) as ex:
            raise HsmPinIncorrectError(
                f"the token {self._token_name} refused the user PIN ({type(ex).__name__})"
            ) from None
        except pkcs11.UserAlreadyLoggedIn:
            session = token.open(rw=True)
        self._rejected_pin = None
        return session

    def _reopen(self, *, reinitialize: bool) -> None:
        """Reopen every session. Caller holds ``_recover_lock`` and no session is lent out."""
        module = self.module
        self._last_attempt = time.monotonic()
        generation = module.generation
        try:
            if reinitialize:
                module.reinitialize()
            generation = module.enter()
            try:
                token = self._find_token()
                first = self._login(token)
                opened = [first] + [token.open(rw=True) for _ in range(self.config.pool_size - 1)]
            finally:
                module.leave()
        except HsmError as ex:
            # Remember the generation tried, so that the next attempt re-initialises again.
            self._generation = generation
            self._down = ex
            metrics.RECOVERIES.labels(outcome=ex.code).inc()
            raise
        except pkcs11.PKCS11Error as ex:
            self._generation = generation
            self._down = HsmUnavailableError(f"cannot open sessions on {self._token_name}: {ex!r}")
            metrics.RECOVERIES.labels(outcome=self._down.code).inc()
            raise self._down from ex
        self._token = token
        with self._cond:
            self._generation = generation
            self._idle = [_Session(h, generation, logged_in=h is first) for h in opened]
            self._live = len(opened)
            self._down = None
            self._cond.notify_all()
        metrics.RECOVERIES.labels(outcome="ok").inc()

    def _recover(self, failed_generation: int) -> None:
        """Reopen after a failure seen on ``failed_generation`` (once, whoever comes first)."""
        with self._recover_lock:
            if self._closed:
                raise HsmUnavailableError("the session pool is closed")
            if self._generation != failed_generation and self._down is None:
                return  # another caller already recovered
            wait = self.config.retry_interval - (time.monotonic() - self._last_attempt)
            if self._down is not None and wait > 0:
                raise HsmUnavailableError(
                    f"token {self._token_name} is unavailable: {self._down.message}"
                )
            deadline = time.monotonic() + self.config.acquire_timeout
            with self._cond:
                self._recovering = True
                # Wait until no session is lent out: C_Finalize must not race a C_Sign.
                while len(self._idle) < self._live:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        self._recovering = False
                        self._cond.notify_all()
                        raise HsmUnavailableError("sessions still busy; recovery postponed")
                    self._cond.wait(remaining)
                self._idle = []
                self._live = 0
            try:
                log.warning("reopening HSM sessions on token %s", self._token_name)
                # When the module was re-initialised since our sessions were opened (by
                # another pool, provisioning, an operator), that already killed them and
                # rescanned the slots; doing it again would kill the other pools' new
                # sessions, and two pools would keep re-initialising under each other.
                self._reopen(reinitialize=self._generation == self.module.generation)
            finally:
                with self._cond:
                    self._recovering = False
                    self._cond.notify_all()

    # -- lending -------------------------------------------------------------------

    def _acquire(self, *, exclusive: bool = False) -> _Session:
        """Lend a session; ``exclusive`` waits until the pool is idle and keeps it so."""
        deadline = time.monotonic() + self.config.acquire_timeout
        while True:
            with self._cond:
                woken = False
                if exclusive:
                    self._exclusive_waiting += 1
                try:
                    while True:
                        if self._closed:
                            raise HsmUnavailableError("the session pool is closed")
                        if not (self._recovering or self._exclusive):
                            # Callers already waiting go first: a caller that gives a session
                            # back and asks again at once would otherwise win it every time,
                            # and the waiting ones would time out while the pool is busy. A
                            # waiting exclusive caller goes before everyone, or a steady
                            # stream of signatures would never leave the pool idle.
                            turn = woken or not self._waiting
                            if exclusive:
                                if self._idle and len(self._idle) == self._live:
                                    self._exclusive = True
                                    return self._idle.pop()
                            elif self._idle and turn and not self._exclusive_waiting:
                                return self._idle.pop()
                            if self._live == 0:
                                break  # the token is down: try to bring it back below
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            raise HsmUnavailableError(
                                "no HSM session became free within "
                                f"{self.config.acquire_timeout:g} s"
                            )
                        self._waiting += 1
                        try:
                            self._cond.wait(remaining)
                        finally:
                            self._waiting -= 1
                        woken = True
                finally:
                    if exclusive:
                        self._exclusive_waiting -= 1
                        if not self._exclusive:
                            # Gave up (or goes to recover): the callers it held back may go.
                            self._cond.notify_all()
            self._recover(self._generation)

    def _release(self, session: _Session, *, exclusive: bool = False) -> None:
        with self._cond:
            if exclusive:
                self._exclusive = False
            # A session of an older generation died with its module; never close its
            # handle, the number may already belong to a new session.
            if session.generation == self._generation and not self._closed:
                self._idle.append(session)
            if exclusive or self._recovering or self._exclusive_waiting:
                # The caller waiting for an idle pool (recovery, key generation) is among
                # ordinary callers, who would swallow a single notify and keep waiting.
                self._cond.notify_all()
            else:
                self._cond.notify()

    @property
    def sessions_in_use(self) -> int:
        return 0 if self._closed else self._live - len(self._idle)

    @property
    def sessions_open(self) -> int:
        return 0 if self._closed else self._live

    def _run(self, operation: str, fn: Callable[[_Session], T], *, exclusive: bool = False) -> T:
        """Run ``fn`` on a lent session; after a session/token failure reopen and retry once.

        One flat function on purpose: this is the whole per-signature overhead of the pool.
        """
        start = time.perf_counter()
        try:
            for attempt in (1, 2):
                session = self._acquire(exclusive=exclusive)
                module = self.module
                generation = module.enter()
                try:
                    if session.generation != generation:
                        # The module was re-initialised under this session: its handle
                        # number (and its cached keys') may now belong to another pool's new
                        # session on another token, so it must never reach the module again.
                        raise pkcs11.SessionHandleInvalid("the module was re-initialised")
                    if self._serial is None:
                        result = fn(session)
                    else:
                        with self._serial:
                            result = fn(session)
                except RECOVERABLE as ex:
                    module.leave()
                    self._release(session, exclusive=exclusive)
                    log.warning("HSM %s failed (%s); reopening", operation, type(ex).__name__)
                    if attempt == 2:
                        self._down = HsmUnavailableError(
                            f"token {self._token_name} failed again after a reopen: "
                            f"{type(ex).__name__}"
                        )
                        raise self._down from ex
                    self._recover(session.generation)
                    continue
                except pkcs11.PKCS11Error as ex:
                    module.leave()
                    self._release(session, exclusive=exclusive)
                    raise _translate(ex, operation) from ex
                except BaseException:
                    module.leave()
                    self._release(session, exclusive=exclusive)
                    raise
                module.leave()
                self._release(session, exclusive=exclusive)
                if self._down is not None:
                    self._down = None  # the token answers again
                metrics.record(operation, "ok", time.perf_counter() - start)
                return result
            raise AssertionError("unreachable")
        except HsmError as ex:
            metrics.record(operation, ex.code, time.perf_counter() - start)
            raise

    # -- operations ----------------------------------------------------------------

    def token_info(self) -> TokenInfo:
        return self._run("info", lambda s: _token_info(s.handle.token))

    def check(self) -> TokenInfo:
        """Readiness probe: a round trip to the token through a pooled session."""
        return self._run("check", lambda s: _token_info(s.handle.token))

    def module_info(self) -> ModuleInfo:
        def read(session: _Session) -> ModuleInfo:
            lib = self.module.lib
            slots = []
            for slot in lib.get_slots():
                try:
                    token = _token_info(slot.get_token())
                except pkcs11.PKCS11Error:
                    token = None
                slots.append(
                    SlotReport(slot_id=slot.slot_id, description=slot.slot_description, token=token)
                )
            mechanisms = sorted(
                m.name if isinstance(m, pkcs11.Mechanism) else f"0x{m:x}"
                for m in session.handle.token.slot.get_mechanisms()
            )
            return ModuleInfo(
                path=self.module.path,
                manufacturer=lib.manufacturer_id,
                description=lib.library_description,
                library_version="{}.{}".format(*lib.library_version),
                cryptoki_version="{}.{}".format(*lib.cryptoki_version),
                thread_safe=self.module.thread_safe,
                slots=tuple(slots),
                mechanisms=tuple(mechanisms),
            )

        return self._run("info", read)

    def supports(self, spec: KeySpec) -> bool:
        mechanism = {
            KeyType.RSA: pkcs11.Mechanism.RSA_PKCS_KEY_PAIR_GEN,
            KeyType.EC: pkcs11.Mechanism.EC_KEY_PAIR_GEN,
            KeyType.EC_EDWARDS: pkcs11.Mechanism.EC_EDWARDS_KEY_PAIR_GEN,
        }[spec.key_type]
        return self._run("info", lambda s: mechanism in s.handle.token.slot.get_mechanisms())

    def generate_key(self, spec: KeySpec, *, label: str) -> KeyInfo:
        """Generate a non-extractable key pair on the token; its id is its SKI."""
        check_label(label)
        if not self.supports(spec):
            raise HsmUnsupportedError(f"the token cannot generate {spec.value} keys")

        def generate(session: _Session) -> KeyInfo:
            handle = session.handle
            temporary_id = secrets.token_bytes(20)
            kwargs: dict[str, Any] = {
                "store": True,
                "label": label,
                "id": temporary_id,
                "capabilities": SIGNING_CAPABILITIES,
                "private_template": dict(PRIVATE_TEMPLATE),
                "public_template": dict(PUBLIC_TEMPLATE),
            }
            if spec.key_type == KeyType.RSA:
                public, private = handle.generate_keypair(KeyType.RSA, spec.rsa_bits, **kwargs)
            else:
                params = handle.create_domain_parameters(
                    spec.key_type, {Attribute.EC_PARAMS: curve_for(spec).params}, local=True
                )
                public, private = params.generate_keypair(**kwargs)
            _, spki = public_key_der(public)
            key_id = key_id_for(spki)
            public[Attribute.ID] = key_id
            private[Attribute.ID] = key_id
            return describe(private, public)

        # SoftHSM writes a new key's object file while other threads may read the token's
        # objects (a search, C_SignInit): generation then fails with CKR_GENERAL_ERROR and
        # searches see a half-made key. So generation waits for the pool to be idle.
        return self._run("generate", generate, exclusive=True)

    def list_keys(self) -> list[KeyInfo]:
        def list_(session: _Session) -> list[KeyInfo]:
            found = []
            # One find operation per session at a time: collect before looking up halves.
            privates = list(session.handle.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY}))
            for obj in privates:
                key_id = bytes(obj[Attribute.ID] or b"")
                found.append(
                    describe(
                        cast(pkcs11.PrivateKey, obj),
                        find_public(session.handle, key_id) if key_id else None,
                    )
                )
            return sorted(found, key=lambda k: (k.label, k.key_id))

        return self._run("list", list_)

    def get_key(self, key_id: bytes) -> KeyInfo:
        return self._run("get", lambda s: describe(*self._lookup(s.handle, key_id)))

    def _lookup(
        self, handle: pkcs11.Session, key_id: bytes
    ) -> tuple[pkcs11.PrivateKey, pkcs11.PublicKey | None]:
        if not 1 <= len(key_id) <= 64:
            raise HsmInvalidRequestError("a key id is 1–64 bytes")
        found = list(
            handle.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.ID: key_id})
        )
        if not found:
            raise HsmKeyNotFoundError(f"no private key with id {key_id.hex()} on the token")
        if len(found) > 1:
            raise HsmKeyRefusedError(f"several private keys share id {key_id.hex()}")
        return found[0], find_public(handle, key_id)  # type: ignore[return-value]

    def _signing_key(self, session: _Session, key_id: bytes) -> tuple[pkcs11.PrivateKey, KeyType]:
        cached = session.keys.get(key_id)
        if cached is not None:
            return cached
        private, public = self._lookup(session.handle, key_id)
        info = describe(private, public)
        if info.problems:
            # CKA_EXTRACTABLE can only become false and CKA_SENSITIVE only true, so a key
            # that passes once keeps passing and the check can be cached per session.
            raise HsmKeyRefusedError(
                f"key {key_id.hex()} is refused for signing: {'; '.join(info.problems)}"
            )
        entry = (private, private.key_type)
        session.keys[key_id] = entry
        return entry

    def sign_digest(
        self, key_id: bytes, digest: bytes, *, scheme: SignScheme, hash_alg: HashAlg
    ) -> bytes:
        """Sign a digest. ECDSA signatures come back DER-encoded (ECDSA-Sig-Value)."""
        return self._run("sign", partial(self._sign, key_id, digest, scheme, hash_alg))

    def sign_message(self, key_id: bytes, message: bytes) -> bytes:
        """Ed25519 (pure EdDSA) over a short message."""
        return self._run("sign", partial(self._sign, key_id, message, SignScheme.ED25519, None))

    def _sign(
        self,
        key_id: bytes,
        payload: bytes,
        scheme: SignScheme,
        hash_alg: HashAlg | None,
        session: _Session,
    ) -> bytes:
        private, key_type = self._signing_key(session, key_id)
        how = plan(key_type, scheme, hash_alg)
        signature: bytes = private.sign(  # type: ignore[attr-defined]
            how.payload(payload), mechanism=how.mechanism, mechanism_param=how.mechanism_param
        )
        return der.ecdsa_signature(signature) if how.der_ecdsa else signature

    # -- sealing (secret keys) -------------------------------------------------------

    def generate_secret_key(self, label: str) -> SecretKeyInfo:
        """Generate an AES-256 sealing key on the token: sensitive, never extractable,
        encrypt/decrypt only. Refused when a secret key already carries ``label``, since
        :meth:`seal` would then refuse both."""
        check_label(label)
        wanted = (pkcs11.Mechanism.AES_KEY_GEN, pkcs11.Mechanism.AES_GCM)
        mechanisms = self._run("info", lambda s: s.handle.token.slot.get_mechanisms())
        if not all(m in mechanisms for m in wanted):
            raise HsmUnsupportedError("the token cannot generate AES keys or seal with AES-GCM")

        def generate(session: _Session) -> SecretKeyInfo:
            if _secret_keys(session.handle, label):
                raise HsmInvalidRequestError(f"a secret key labelled {label!r} exists already")
            key = session.handle.generate_key(
                KeyType.AES,
                SECRET_KEY_BITS,
                label=label,
                id=secrets.token_bytes(16),
                store=True,
                capabilities=SECRET_CAPABILITIES,
                template=dict(SECRET_TEMPLATE),
            )
            return describe_secret(key)

        # Exclusive for the same reason as generate_key: SoftHSM writes the object file.
        return self._run("generate", generate, exclusive=True)

    def find_secret_key(self, label: str) -> SecretKeyInfo | None:
        """The secret key labelled ``label``, usable or not; ``None`` when there is none."""
        check_label(label)

        def find(session: _Session) -> SecretKeyInfo | None:
            found = _secret_keys(session.handle, label)
            if len(found) > 1:
                raise HsmKeyRefusedError(f"several secret keys are labelled {label!r}")
            return describe_secret(found[0]) if found else None

        return self._run("get", find)

    def seal(self, label: str, plaintext: bytes, aad: bytes) -> bytes:
        """AES-GCM under the secret key ``label``: ``nonce || ciphertext || tag``, with a
        fresh random nonce, so two seals of one plaintext differ."""
        return self._run("seal", lambda s: seal_with(self._sealing_key(s, label), plaintext, aad))

    def unseal(self, label: str, sealed: bytes, aad: bytes) -> bytes:
        """The plaintext of :meth:`seal`'s output; :class:`HsmSealedDataError` when it was
        changed or ``aad`` differs."""
        return self._run("unseal", lambda s: unseal_with(self._sealing_key(s, label), sealed, aad))

    def _sealing_key(self, session: _Session, label: str) -> pkcs11.SecretKey:
        cached = session.sealing_keys.get(label)
        if cached is not None:
            return cached
        check_label(label)
        found = _secret_keys(session.handle, label)
        if not found:
            raise HsmKeyNotFoundError(f"no secret key labelled {label!r} on the token")
        if len(found) > 1:
            raise HsmKeyRefusedError(f"several secret keys are labelled {label!r}")
        problems = describe_secret(found[0]).problems
        if problems:
            # As for signing keys: the attributes only ever get stricter, so cache a pass.
            raise HsmKeyRefusedError(
                f"secret key {label!r} is refused for sealing: {'; '.join(problems)}"
            )
        session.sealing_keys[label] = found[0]
        return found[0]

    def selftest(self) -> list[SelfTestResult]:
        """Sign and verify (on the token) with every key; report refused keys."""
        results = []
        for info in self.list_keys():
            if info.problems:
                results.append(SelfTestResult(key=info, ok=False, detail="; ".join(info.problems)))
                continue
            results.append(self._selftest_key(info))
        return results

    def _selftest_key(self, info: KeyInfo) -> SelfTestResult:
        assert info.spec is not None
        payload = hashlib.sha256(b"kyso self-test " + info.key_id).digest()
        try:
            if info.spec is KeySpec.ED25519:
                signature = self.sign_message(info.key_id, payload)
            else:
                signature = self.sign_digest(
                    info.key_id, payload, scheme=default_scheme(info), hash_alg=HashAlg.SHA256
                )
            verified = self._run("verify", partial(_verify_on_token, info, payload, signature))
        except HsmError as ex:
            return SelfTestResult(key=info, ok=False, detail=ex.message)
        return SelfTestResult(
            key=info, ok=verified, detail="signed and verified" if verified else "bad signature"
        )


def _verify_on_token(info: KeyInfo, payload: bytes, signature: bytes, session: _Session) -> bool:
    found = find_public(session.handle, info.key_id)
    if found is None:
        return False
    public = cast(VerifyMixin, found)
    if info.spec is KeySpec.ED25519:
        return bool(public.verify(payload, signature, mechanism=pkcs11.Mechanism.EDDSA))
    if info.spec is not None and info.spec.key_type == KeyType.RSA:
        data = HashAlg.SHA256.digest_info_prefix + payload
        return bool(public.verify(data, signature, mechanism=pkcs11.Mechanism.RSA_PKCS))
    raw = pkcs11.util.ec.decode_ecdsa_signature(signature)
    return bool(public.verify(payload, raw, mechanism=pkcs11.Mechanism.ECDSA))


def _secret_keys(handle: pkcs11.Session, label: str) -> list[pkcs11.SecretKey]:
    found = handle.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: label})
    return cast(list[pkcs11.SecretKey], list(found))


def _translate(ex: pkcs11.PKCS11Error, operation: str) -> HsmError:
    name = type(ex).__name__
    if isinstance(ex, pkcs11.MechanismInvalid | pkcs11.FunctionNotSupported | pkcs11.KeySizeRange):
        return HsmUnsupportedError(f"the token does not support this {operation}: {name}")
    if isinstance(ex, pkcs11.DataLenRange | pkcs11.DataInvalid | pkcs11.MechanismParamInvalid):
        return HsmInvalidRequestError(f"the token rejected the {operation} input: {name}")
    if isinstance(ex, pkcs11.PinLocked):
        return HsmPinLockedError("the user PIN is locked")
    return HsmOperationError(f"HSM {operation} failed: {name}")


class SessionPool:
    """The async API: each call runs on a worker thread of the pool's own executor."""

    def __init__(self, config: HsmConfig) -> None:
        self.blocking = BlockingSessionPool(config)
        self._executor = ThreadPoolExecutor(
            max_workers=config.pool_size, thread_name_prefix="kyso-hsm"
        )

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(fn, *args, **kwargs))

    async def open(self) -> None:
        await self._call(self.blocking.open)

    async def close(self) -> None:
        await self._call(self.blocking.close)
        self._executor.shutdown(wait=False)

    @property
    def healthy(self) -> bool:
        return self.blocking.healthy

    async def check(self) -> TokenInfo:
        return await self._call(self.blocking.check)

    async def token_info(self) -> TokenInfo:
        return await self._call(self.blocking.token_info)

    async def generate_key(self, spec: KeySpec, *, label: str) -> KeyInfo:
        return await self._call(self.blocking.generate_key, spec, label=label)

    async def list_keys(self) -> list[KeyInfo]:
        return await self._call(self.blocking.list_keys)

    async def get_key(self, key_id: bytes) -> KeyInfo:
        return await self._call(self.blocking.get_key, key_id)

    async def sign_digest(
        self, key_id: bytes, digest: bytes, *, scheme: SignScheme, hash_alg: HashAlg
    ) -> bytes:
        return await self._call(
            self.blocking.sign_digest, key_id, digest, scheme=scheme, hash_alg=hash_alg
        )

    async def sign_message(self, key_id: bytes, message: bytes) -> bytes:
        return await self._call(self.blocking.sign_message, key_id, message)

    async def selftest(self) -> list[SelfTestResult]:
        return await self._call(self.blocking.selftest)
