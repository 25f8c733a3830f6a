"""The loaded PKCS#11 module: what it reports, and that re-initialising it is safe."""

from __future__ import annotations

import threading
import time

from hsm import BlockingSessionPool, find_pkcs11_module
from hsm.module import CallGate, Pkcs11Module, load_module
from tests.conftest import TestToken


def test_module_info(pool: BlockingSessionPool, token: TestToken) -> None:
    info = pool.module_info()
    assert info.path == find_pkcs11_module()
    assert info.manufacturer == "SoftHSM"
    assert info.description == "Implementation of PKCS11"
    assert info.library_version.startswith("2.")
    assert info.cryptoki_version.split(".")[0] in ("2", "3")
    # Initialised with CKF_OS_LOCKING_OK: SoftHSM keeps its mutexes, threads may share it.
    assert info.thread_safe is True
    for mechanism in (
        "ECDSA",
        "RSA_PKCS",
        "RSA_PKCS_PSS",
        "EDDSA",
        "EC_KEY_PAIR_GEN",
        "RSA_PKCS_KEY_PAIR_GEN",
        "EC_EDWARDS_KEY_PAIR_GEN",
    ):
        assert mechanism in info.mechanisms
    assert list(info.mechanisms) == sorted(info.mechanisms)

    mine = [s for s in info.slots if s.token is not None and s.token.serial == token.serial]
    assert len(mine) == 1
    assert mine[0].token is not None
    assert mine[0].token.label == token.label
    assert mine[0].token.slot_id == mine[0].slot_id
    assert mine[0].token == pool.token_info()
    # SoftHSM always keeps one uninitialised slot free for the next token.
    assert any(s.token is not None and "TOKEN_INITIALIZED" not in s.token.flags for s in info.slots)


def test_module_is_loaded_once(module: Pkcs11Module) -> None:
    assert load_module(find_pkcs11_module()) is module
    assert module.thread_safe


def test_reinitialize_waits_for_calls_in_flight(module: Pkcs11Module) -> None:
    # C_Finalize under a running C_Sign crashes SoftHSM (it deletes its own state), so
    # a re-initialisation waits for every call entered through the module.
    generation = module.generation
    module.enter()
    finished = threading.Event()

    def reinitialize() -> None:
        module.reinitialize()
        finished.set()

    reinit = threading.Thread(target=reinitialize)
    try:
        reinit.start()
        assert not finished.wait(0.2)
        assert module.generation == generation
    finally:
        module.leave()
    assert finished.wait(5)
    reinit.join()
    assert module.generation == generation + 1


def test_calls_wait_for_a_pending_reinitialisation(module: Pkcs11Module) -> None:
    module.enter()
    entered = threading.Event()
    seen: list[int] = []

    def late_call() -> None:
        seen.append(module.enter())
        entered.set()
        module.leave()

    generation = module.generation
    reinit = threading.Thread(target=module.reinitialize)
    reinit.start()
    time.sleep(0.05)  # the re-initialisation is now waiting for the first call
    late = threading.Thread(target=late_call)
    late.start()
    # A call that arrives while the re-initialisation waits goes after it, not before:
    # otherwise a steady stream of calls would starve the recovery.
    assert not entered.wait(0.1)
    module.leave()
    reinit.join(5)
    late.join(5)
    assert seen == [generation + 1]


def test_call_gate_admits_many_calls_or_one_exclusive_section() -> None:
    gate = CallGate()
    inside = 0
    peak_shared = 0
    overlap: list[str] = []
    lock = threading.Lock()

    def shared() -> None:
        nonlocal inside, peak_shared
        for _ in range(200):
            gate.enter()
            with lock:
                inside += 1
                peak_shared = max(peak_shared, inside)
            time.sleep(0)
            with lock:
                inside -= 1
            gate.leave()

    def exclusive() -> None:
        for _ in range(20):
            gate.enter_exclusive()
            with lock:
                if inside:
                    overlap.append("exclusive section ran next to a call")
            time.sleep(0.001)
            with lock:
                if inside:
                    overlap.append("a call entered an exclusive section")
            gate.leave_exclusive()

    threads = [threading.Thread(target=shared) for _ in range(6)]
    threads += [threading.Thread(target=exclusive) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert overlap == []
    assert peak_shared > 1
