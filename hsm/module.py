"""Loading a PKCS#11 module so that several threads may use it at once.

python-pkcs11 calls ``C_Initialize(NULL)``, which tells the module that the application
will never call it from two threads at a time. SoftHSM2 then disables all of its internal
mutexes, and two threads signing on two different sessions crash the process. Right after
python-pkcs11 has loaded the module we finalize it and initialize it again with
``CKF_OS_LOCKING_OK`` through the same shared object (``dlopen`` returns the same handle),
so the module uses OS locks. A module that cannot lock (``CKR_CANT_LOCK``) is initialized
without them again and marked ``thread_safe=False``; the pool then serialises its calls.
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

import pkcs11

from hsm.errors import HsmConfigError, HsmOperationError

CKF_OS_LOCKING_OK = 0x00000002
CKR_OK = 0x00
CKR_CANT_LOCK = 0x0A
CKR_CRYPTOKI_NOT_INITIALIZED = 0x190


class _InitializeArgs(ctypes.Structure):
    _fields_ = (
        ("create_mutex", ctypes.c_void_p),
        ("destroy_mutex", ctypes.c_void_p),
        ("lock_mutex", ctypes.c_void_p),
        ("unlock_mutex", ctypes.c_void_p),
        ("flags", ctypes.c_ulong),
        ("reserved", ctypes.c_void_p),
    )


class CallGate:
    """Any number of calls at a time, or one exclusive section, never both.

    A waiting exclusive section goes first: new calls wait behind it, so it cannot be
    starved by a steady stream of short calls. Not re-entrant. Entering and leaving is
    on every signature's path, so the common case takes the plain lock only.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._calls = 0
        self._exclusive = False

    def enter(self) -> None:
        with self._lock:
            while self._exclusive:
                self._cond.wait()
            self._calls += 1

    def leave(self) -> None:
        with self._lock:
            self._calls -= 1
            if self._exclusive and not self._calls:
                self._cond.notify_all()

    def enter_exclusive(self) -> None:
        with self._lock:
            while self._exclusive:
                self._cond.wait()
            self._exclusive = True
            while self._calls:
                self._cond.wait()

    def leave_exclusive(self) -> None:
        with self._lock:
            self._exclusive = False
            self._cond.notify_all()


class Pkcs11Module:
    """One PKCS#11 module, loaded once per process, initialized for multi-threaded use."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            self.lib: Any = pkcs11.lib(path)
        except pkcs11.PKCS11Error as ex:
            raise HsmConfigError(f"cannot load the PKCS#11 module {path}: {ex!r}") from ex
        self._raw = ctypes.CDLL(path)
        self._gate = CallGate()
        self.generation = 0
        """Incremented on every re-initialization; sessions of older generations are dead."""
        self.thread_safe = False
        self._initialize_with_locking()

    def _initialize_with_locking(self) -> None:
        rv = self._raw.C_Finalize(None)
        if rv not in (CKR_OK, CKR_CRYPTOKI_NOT_INITIALIZED):
            raise HsmOperationError(f"C_Finalize failed with CKR 0x{rv:x}")
        args = _InitializeArgs(flags=CKF_OS_LOCKING_OK)
        rv = self._raw.C_Initialize(ctypes.byref(args))
        if rv == CKR_CANT_LOCK:
            rv = self._raw.C_Initialize(None)
            self.thread_safe = False
        else:
            self.thread_safe = rv == CKR_OK
        if rv != CKR_OK:
            raise HsmOperationError(f"C_Initialize failed with CKR 0x{rv:x}")

    def enter(self) -> int:
        """Start a sequence of calls into the module; return the generation it runs in.

        SoftHSM's ``C_Finalize`` destroys the library's state while other threads may be
        inside ``C_Sign`` on it, which crashes the process; so calls and
        :meth:`reinitialize` exclude each other. Always pair with :meth:`leave`, and never
        call :meth:`reinitialize` in between (it would wait for this very call).
        """
        self._gate.enter()
        return self.generation

    def leave(self) -> None:
        self._gate.leave()

    def reinitialize(self) -> None:
        """Finalize and initialize again: every session is closed and slots are rescanned.

        Used to recover from a token that disappeared or was replaced underneath us.
        Waits until no call entered through :meth:`enter` is still running.
        """
        self._gate.enter_exclusive()
        try:
            self._initialize_with_locking()
            self.generation += 1
        finally:
            self._gate.leave_exclusive()

    def init_token(self, slot_id: int, *, label: str, so_pin: str) -> None:
        """``C_InitToken`` on a slot (python-pkcs11 does not wrap it)."""
        encoded = label.encode("utf-8")
        if len(encoded) > 32:
            raise HsmConfigError("a token label is at most 32 bytes of UTF-8")
        padded = ctypes.create_string_buffer(encoded.ljust(32, b" "), 32)
        pin = so_pin.encode("utf-8")
        rv = self._raw.C_InitToken(ctypes.c_ulong(slot_id), pin, ctypes.c_ulong(len(pin)), padded)
        if rv != CKR_OK:
            raise HsmOperationError(f"C_InitToken failed with CKR 0x{rv:x}")


_loaded: dict[str, Pkcs11Module] = {}
_loaded_lock = threading.Lock()


def load_module(path: str) -> Pkcs11Module:
    """Return the process-wide :class:`Pkcs11Module` for ``path``, loading it once."""
    with _loaded_lock:
        module = _loaded.get(path)
        if module is None:
            module = _loaded[path] = Pkcs11Module(path)
        return module
