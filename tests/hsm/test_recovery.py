"""Recovery: the token's files replaced or removed, the module re-initialised underneath.

What SoftHSM2 2.6 does, found by trying: replacing a token directory with a copy of
itself goes unnoticed (objects are re-read from the files); removing it makes the next
call on a cached key fail with CKR_OBJECT_HANDLE_INVALID, and the token is gone from the
slot list once the module is initialised again; ``C_Finalize``/``C_Initialize`` from
elsewhere in the process (another pool's recovery, provisioning, an operator) invalidates
every session handle, and new sessions reuse the old handle numbers.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import threading
import time
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature

from hsm import (
    BlockingSessionPool,
    HashAlg,
    HsmUnavailableError,
    KeyInfo,
    KeySpec,
    SessionPool,
    SignScheme,
    default_scheme,
)
from hsm.module import Pkcs11Module
from tests.conftest import TestToken, make_token
from tests.hsm import signatures


def _sign(pool: BlockingSessionPool, key: KeyInfo, text: str = "CT07") -> tuple[bytes, bytes]:
    """Sign a fresh digest with ``key`` and check the signature independently."""
    digest = hashlib.sha256(text.encode()).digest()
    scheme = default_scheme(key)
    signature = pool.sign_digest(key.key_id, digest, scheme=scheme, hash_alg=HashAlg.SHA256)
    signatures.verify(key, digest, signature, scheme=scheme, hash_alg=HashAlg.SHA256)
    return digest, signature


def _recoveries(outcome: str = "ok") -> float:
    return signatures.sample("kyso_hsm_recoveries_total", outcome=outcome)


def test_token_files_replaced_underneath(token: TestToken, tmp_path: Path) -> None:
    with BlockingSessionPool(token.config()) as pool:
        ec = pool.generate_key(KeySpec.EC_P256, label="ec")
        rsa = pool.generate_key(KeySpec.RSA_2048, label="rsa")
        _sign(pool, ec)
        _sign(pool, rsa)
        before = _recoveries()

        # Same token, same keys, new files (a restore from backup, a volume remount).
        token_dir = token.token_dir()
        shutil.copytree(token_dir, tmp_path / "backup")
        shutil.rmtree(token_dir)
        shutil.copytree(tmp_path / "backup", token_dir)

        _sign(pool, ec, "after the swap")
        _sign(pool, rsa, "after the swap")
        assert _recoveries() - before <= 1
        assert pool.healthy
        assert {k.key_id for k in pool.list_keys()} == {ec.key_id, rsa.key_id}
        assert pool.get_key(ec.key_id) == ec


def test_module_reinitialised_underneath(pool: BlockingSessionPool, module: Pkcs11Module) -> None:
    key = pool.generate_key(KeySpec.EC_P384, label="p-384")
    _sign(pool, key)
    generation, before = module.generation, _recoveries()

    module.reinitialize()  # every session handle of the pool is now dead

    _sign(pool, key, "after re-initialisation")
    assert _recoveries() - before == 1
    # The pool reopened its sessions without re-initialising the module a second time.
    assert module.generation == generation + 1
    assert pool.healthy
    for n in range(2 * pool.config.pool_size):
        _sign(pool, key, f"steady {n}")
    assert _recoveries() - before == 1
    assert pool.sessions_open == pool.config.pool_size


async def test_async_pool_recovers_from_reinitialisation(
    token: TestToken, module: Pkcs11Module
) -> None:
    pool = SessionPool(token.config())
    await pool.open()
    try:
        key = await pool.generate_key(KeySpec.ED25519, label="checkpoint signer")
        module.reinitialize()
        results = await asyncio.gather(
            *(pool.sign_message(key.key_id, b"%d" % n) for n in range(8))
        )
        for n, signature in enumerate(results):
            signatures.verify(key, b"%d" % n, signature, scheme=SignScheme.ED25519)
        assert pool.healthy
    finally:
        await pool.close()


def test_token_removed_then_restored(token: TestToken, tmp_path: Path) -> None:
    acquire_timeout = 1.0
    with BlockingSessionPool(token.config(acquire_timeout=acquire_timeout)) as pool:
        key = pool.generate_key(KeySpec.EC_P256, label="seal")
        _sign(pool, key)
        unavailable = _recoveries("hsm.unavailable")

        token_dir = token.token_dir()
        shutil.copytree(token_dir, tmp_path / "backup")
        shutil.rmtree(token_dir)

        calls = (
            lambda: _sign(pool, key, "while away"),
            pool.list_keys,
            lambda: pool.get_key(key.key_id),
            pool.check,
            lambda: _sign(pool, key, "still away"),
        )
        for call in calls:
            started = time.monotonic()
            with pytest.raises(HsmUnavailableError, match="is not present"):
                call()
            assert time.monotonic() - started < acquire_timeout + 1
            assert not pool.healthy
        assert _recoveries("hsm.unavailable") > unavailable
        assert signatures.sample("kyso_hsm_pool_sessions_in_use") == 0

        shutil.copytree(tmp_path / "backup", token_dir)

        # The next call brings the pool back by itself.
        _sign(pool, key, "back again")
        assert pool.healthy
        assert pool.sessions_open == pool.config.pool_size
        assert pool.list_keys() == [key]


def test_reopen_attempts_are_spaced(token: TestToken, tmp_path: Path) -> None:
    retry_interval = 0.5
    config = token.config(acquire_timeout=1.0, retry_interval=retry_interval)
    with BlockingSessionPool(config) as pool:
        key = pool.generate_key(KeySpec.EC_P256, label="spaced")
        _sign(pool, key)
        token_dir = token.token_dir()
        shutil.copytree(token_dir, tmp_path / "backup")
        shutil.rmtree(token_dir)
        with pytest.raises(HsmUnavailableError, match="is not present"):
            _sign(pool, key)
        failed_at = time.monotonic()
        shutil.copytree(tmp_path / "backup", token_dir)

        # Within the interval the pool answers at once from its last failure, without
        # hammering the module with another re-initialisation.
        attempts = _recoveries("hsm.unavailable")
        started = time.monotonic()
        with pytest.raises(HsmUnavailableError, match=r"is unavailable: .* is not present"):
            _sign(pool, key)
        assert time.monotonic() - started < 0.1
        assert _recoveries("hsm.unavailable") == attempts

        time.sleep(max(0.0, retry_interval - (time.monotonic() - failed_at)) + 0.05)
        _sign(pool, key, "after the interval")
        assert pool.healthy


@pytest.mark.parametrize("reinitialisations", [1, 3])
def test_reinitialised_while_threads_sign(
    pool: BlockingSessionPool, module: Pkcs11Module, reinitialisations: int
) -> None:
    keys = [
        pool.generate_key(KeySpec.EC_P256, label="ec"),
        pool.generate_key(KeySpec.RSA_2048, label="rsa"),
    ]
    stop = threading.Event()
    lock = threading.Lock()
    signed: list[tuple[KeyInfo, bytes, bytes]] = []
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        i = 0
        while not stop.is_set():
            key = keys[(n + i) % len(keys)]
            digest = hashlib.sha256(b"%d-%d" % (n, i)).digest()
            i += 1
            try:
                signature = pool.sign_digest(
                    key.key_id, digest, scheme=default_scheme(key), hash_alg=HashAlg.SHA256
                )
            except Exception as ex:  # collected, then judged below
                with lock:
                    errors.append(ex)
                continue
            with lock:
                signed.append((key, digest, signature))

    def wait_for(count: int) -> None:
        deadline = time.monotonic() + 20
        while len(signed) < count and time.monotonic() < deadline:
            time.sleep(0.001)
        assert len(signed) >= count

    generation, before = module.generation, _recoveries()
    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    try:
        for _ in range(reinitialisations):
            wait_for(len(signed) + 150)
            module.reinitialize()  # waits for calls in flight, then kills every session
        started = time.monotonic()
        wait_for(len(signed) + 150)
        # Reopening takes milliseconds; a caller left waiting for a wake-up that never
        # comes would show here as seconds (up to acquire_timeout).
        assert time.monotonic() - started < 2.0
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=20)

    assert not any(t.is_alive() for t in threads)
    for key, digest, signature in signed:
        signatures.verify(
            key, digest, signature, scheme=default_scheme(key), hash_alg=HashAlg.SHA256
        )
    assert all(isinstance(ex, HsmUnavailableError) for ex in errors), errors
    assert all("failed again after a reopen" in str(ex) for ex in errors)
    if reinitialisations == 1:
        # A caller whose session died retries once on a reopened one: nobody sees a failure.
        assert errors == []
        assert _recoveries() - before == 1
        # The pool did not re-initialise the module itself: its sessions were only stale.
        assert module.generation == generation + 1
    else:
        # A caller starved long enough to meet two re-initialisations, one per attempt,
        # gets HsmUnavailableError (and marks the pool down until the next success).
        assert module.generation >= generation + reinitialisations
    _sign(pool, keys[0], "after the storm")
    assert pool.healthy
    assert pool.sessions_in_use == 0


def test_reinitialisation_never_mixes_up_two_pools(
    softhsm_dir: Path, tmp_path: Path, module: Pkcs11Module
) -> None:
    # Tokens and keys first: provisioning may itself re-initialise the module.
    token_a = make_token(softhsm_dir, tmp_path, label="Công an phường A")
    token_b = make_token(softhsm_dir, tmp_path, label="Công an phường B")
    with BlockingSessionPool(token_a.config()) as pool:
        key_a = pool.generate_key(KeySpec.EC_P256, label="officer A")
    with BlockingSessionPool(token_b.config()) as pool:
        key_b = pool.generate_key(KeySpec.EC_P256, label="officer B")

    # SoftHSM numbers sessions and objects from 1 after each initialisation. Pool A
    # opens right after one and signs once: sessions 1-4, its key found as the next
    # handle. After the next re-initialisation pool B does exactly the same, so its new
    # session and key get the very numbers pool A's dead session still holds.
    module.reinitialize()
    with BlockingSessionPool(token_a.config()) as pool_a:
        _sign(pool_a, key_a)
        with BlockingSessionPool(token_b.config()) as pool_b:
            generation, before = module.generation, _recoveries()
            module.reinitialize()
            _sign(pool_b, key_b, "B first")
            # Pool A must not sign on B's session with B's key and call it its own.
            for n in range(3):
                digest, signature = _sign(pool_a, key_a, f"A {n}")
                with pytest.raises(InvalidSignature):
                    signatures.verify(
                        key_b, digest, signature, scheme=SignScheme.ECDSA, hash_alg=HashAlg.SHA256
                    )
                _sign(pool_b, key_b, f"B {n}")
            assert pool_a.list_keys() == [key_a]
            assert pool_b.list_keys() == [key_b]
            # Each pool reopened once; neither re-initialised the module under the other.
            assert _recoveries() - before == 2
            assert module.generation == generation + 1
