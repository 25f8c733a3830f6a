"""The session pool under concurrency: threads on the blocking pool, tasks on the async one.

Every signature made under load is verified with ``cryptography``, and the Prometheus
counters must account for exactly the operations that were run.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass

import pytest

from hsm import (
    BlockingSessionPool,
    HashAlg,
    HsmUnavailableError,
    KeyInfo,
    KeySpec,
    SessionPool,
    SignScheme,
)
from tests.conftest import TestToken
from tests.hsm import signatures

THREADS = 16
OPERATIONS = 2000
GENERATED = 4
"""Keys generated while the load runs (EC P-256: quick, and they change list_keys)."""

SCHEMES: dict[KeySpec, tuple[tuple[SignScheme, HashAlg | None], ...]] = {
    KeySpec.RSA_2048: tuple(
        (scheme, h)
        for scheme in (SignScheme.RSA_PKCS1V15, SignScheme.RSA_PSS)
        for h in (HashAlg.SHA256, HashAlg.SHA384, HashAlg.SHA512)
    ),
    KeySpec.EC_P256: ((SignScheme.ECDSA, HashAlg.SHA256), (SignScheme.ECDSA, HashAlg.SHA384)),
    KeySpec.EC_P384: ((SignScheme.ECDSA, HashAlg.SHA384), (SignScheme.ECDSA, HashAlg.SHA512)),
    KeySpec.ED25519: ((SignScheme.ED25519, None),),
}


@dataclass(frozen=True)
class Op:
    """One planned operation of the mixed workload."""

    kind: str  # sign | list | get | generate
    key: KeyInfo | None = None
    scheme: SignScheme | None = None
    hash_alg: HashAlg | None = None
    payload: bytes = b""


@dataclass(frozen=True)
class Signed:
    op: Op
    signature: bytes


def _plan(keys: list[KeyInfo], workers: int, seed: int) -> list[list[Op]]:
    """Split OPERATIONS mixed operations over ``workers``; the same seed, the same plan."""
    rng = random.Random(seed)
    per_worker = OPERATIONS // workers
    plans: list[list[Op]] = []
    for worker in range(workers):
        plan: list[Op] = []
        for n in range(per_worker):
            if worker < GENERATED and n == per_worker // 2:
                plan.append(Op("generate"))
                continue
            roll = rng.random()
            if roll < 0.04:
                plan.append(Op("list"))
            elif roll < 0.10:
                plan.append(Op("get", key=rng.choice(keys)))
            else:
                key = rng.choice(keys)
                assert key.spec is not None
                scheme, hash_alg = rng.choice(SCHEMES[key.spec])
                message = f"hồ sơ {worker}-{n}".encode()
                payload = message if hash_alg is None else signatures.digest(message, hash_alg)
                plan.append(Op("sign", key, scheme, hash_alg, payload))
        plans.append(plan)
    assert sum(map(len, plans)) == OPERATIONS
    return plans


def _generate_mixed_keys(pool: BlockingSessionPool) -> list[KeyInfo]:
    return [pool.generate_key(spec, label=f"load {spec.value}") for spec in SCHEMES]


def _metrics_snapshot() -> dict[str, float]:
    snapshot = {op: signatures.operation_count(op) for op in ("sign", "list", "get", "generate")}
    snapshot["failed"] = signatures.failed_operations()
    snapshot["recoveries"] = signatures.sample("kyso_hsm_recoveries_total", outcome="ok")
    snapshot["sign_latency_count"] = signatures.sample(
        "kyso_hsm_operation_seconds_count", operation="sign"
    )
    return snapshot


def _check_results(
    plans: list[list[Op]],
    signed: list[Signed],
    listed: list[list[KeyInfo]],
    keys: list[KeyInfo],
    before: dict[str, float],
) -> None:
    kinds = Counter(op.kind for plan in plans for op in plan)
    assert kinds["generate"] == GENERATED
    assert len(signed) == kinds["sign"] > 0.8 * OPERATIONS
    for item in signed:
        assert item.op.key is not None
        assert item.op.scheme is not None
        signatures.verify(
            item.op.key,
            item.op.payload,
            item.signature,
            scheme=item.op.scheme,
            hash_alg=item.op.hash_alg,
        )
    # Every scheme and key of the mix was exercised.
    assert {(s.op.key.spec, s.op.scheme) for s in signed if s.op.key} == {
        (spec, scheme) for spec, pairs in SCHEMES.items() for scheme, _ in pairs
    }
    base = {k.key_id for k in keys}
    for listing in listed:
        assert base <= {k.key_id for k in listing}
        assert len(listing) <= len(keys) + GENERATED
        # No half-made key shows up while another caller is generating one.
        assert all(k.usable for k in listing), [k.problems for k in listing]

    after = _metrics_snapshot()
    for op in ("sign", "list", "get", "generate"):
        assert after[op] - before[op] == kinds[op], op
    assert after["failed"] == before["failed"]
    # A healthy token under load never needs its sessions reopened.
    assert after["recoveries"] == before["recoveries"]
    assert after["sign_latency_count"] - before["sign_latency_count"] == kinds["sign"]
    assert signatures.sample("kyso_hsm_pool_sessions_in_use") == 0


def test_threads_mixed_load(pool: BlockingSessionPool) -> None:
    keys = _generate_mixed_keys(pool)
    plans = _plan(keys, THREADS, seed=7)
    signed: list[Signed] = []
    listed: list[list[KeyInfo]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(THREADS + 1)
    done = threading.Event()
    peak = 0

    def worker(plan: list[Op]) -> None:
        local_signed: list[Signed] = []
        local_listed: list[list[KeyInfo]] = []
        start.wait()
        try:
            for op in plan:
                if op.kind == "sign":
                    assert op.key is not None
                    assert op.scheme is not None
                    if op.hash_alg is None:
                        signature = pool.sign_message(op.key.key_id, op.payload)
                    else:
                        signature = pool.sign_digest(
                            op.key.key_id, op.payload, scheme=op.scheme, hash_alg=op.hash_alg
                        )
                    local_signed.append(Signed(op, signature))
                elif op.kind == "list":
                    local_listed.append(pool.list_keys())
                elif op.kind == "get":
                    assert op.key is not None
                    assert pool.get_key(op.key.key_id) == op.key
                else:
                    made = pool.generate_key(KeySpec.EC_P256, label="made under load")
                    assert made.usable
        except BaseException as ex:
            with lock:
                errors.append(ex)
            raise
        with lock:
            signed.extend(local_signed)
            listed.extend(local_listed)

    def monitor() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, pool.sessions_in_use)
            time.sleep(0.001)

    before = _metrics_snapshot()
    threads = [threading.Thread(target=worker, args=(plan,)) for plan in plans]
    watcher = threading.Thread(target=monitor)
    for thread in [*threads, watcher]:
        thread.start()
    start.wait()
    for thread in threads:
        thread.join(timeout=60)
    done.set()
    watcher.join()

    assert errors == []
    assert not any(t.is_alive() for t in threads)
    _check_results(plans, signed, listed, keys, before)
    # 16 callers on 4 sessions: the pool was saturated and never lent more than it has.
    assert peak == pool.config.pool_size
    assert pool.sessions_in_use == 0
    assert pool.sessions_open == pool.config.pool_size
    assert len(pool.list_keys()) == len(keys) + GENERATED


async def test_async_mixed_load(token: TestToken) -> None:
    pool = SessionPool(token.config())
    await pool.open()
    try:
        keys = [await pool.generate_key(spec, label=f"load {spec.value}") for spec in SCHEMES]
        plans = _plan(keys, THREADS, seed=11)
        signed: list[Signed] = []
        listed: list[list[KeyInfo]] = []

        async def worker(plan: list[Op]) -> None:
            for op in plan:
                if op.kind == "sign":
                    assert op.key is not None
                    assert op.scheme is not None
                    if op.hash_alg is None:
                        signature = await pool.sign_message(op.key.key_id, op.payload)
                    else:
                        signature = await pool.sign_digest(
                            op.key.key_id, op.payload, scheme=op.scheme, hash_alg=op.hash_alg
                        )
                    signed.append(Signed(op, signature))
                elif op.kind == "list":
                    listed.append(await pool.list_keys())
                elif op.kind == "get":
                    assert op.key is not None
                    assert await pool.get_key(op.key.key_id) == op.key
                else:
                    made = await pool.generate_key(KeySpec.EC_P256, label="made under load")
                    assert made.usable

        before = _metrics_snapshot()
        await asyncio.wait_for(asyncio.gather(*(worker(plan) for plan in plans)), timeout=60)
        _check_results(plans, signed, listed, keys, before)
        assert pool.healthy
        assert pool.blocking.sessions_in_use == 0
        assert len(await pool.list_keys()) == len(keys) + GENERATED
    finally:
        await pool.close()
    assert not pool.healthy


async def test_async_api_surface(token: TestToken) -> None:
    pool = SessionPool(token.config(pool_size=2))
    await pool.open()
    try:
        info = await pool.token_info()
        assert (info.label, info.serial) == (token.label, token.serial)
        assert await pool.check() == info
        key = await pool.generate_key(KeySpec.ED25519, label="kiểm toán")
        assert await pool.list_keys() == [key]
        assert await pool.get_key(key.key_id) == key
        [result] = await pool.selftest()
        assert (result.key, result.ok) == (key, True)
        signature = await pool.sign_message(key.key_id, b"checkpoint")
        signatures.verify(key, b"checkpoint", signature, scheme=SignScheme.ED25519)
    finally:
        await pool.close()


async def test_cancelled_tasks_return_their_sessions(token: TestToken) -> None:
    pool = SessionPool(token.config())
    await pool.open()
    try:
        key = await pool.generate_key(KeySpec.RSA_2048, label="cancelled")
        digest = bytes(32)

        def sign() -> Awaitable[bytes]:
            return pool.sign_digest(
                key.key_id, digest, scheme=SignScheme.RSA_PKCS1V15, hash_alg=HashAlg.SHA256
            )

        tasks = [asyncio.ensure_future(sign()) for _ in range(64)]
        await asyncio.sleep(0.005)
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert any(isinstance(r, asyncio.CancelledError) for r in results)
        # The worker threads finish (or skip) the cancelled calls and give sessions back.
        for _ in range(500):
            if not pool.blocking.sessions_in_use:
                break
            await asyncio.sleep(0.01)
        assert pool.blocking.sessions_in_use == 0
        signature = await sign()
        signatures.verify(
            key, digest, signature, scheme=SignScheme.RSA_PKCS1V15, hash_alg=HashAlg.SHA256
        )
    finally:
        await pool.close()


def test_a_session_is_lent_to_one_caller_at_a_time(pool: BlockingSessionPool) -> None:
    active: set[int] = set()
    overlaps: list[int] = []
    lock = threading.Lock()
    peak = 0

    def probe(session: object) -> None:
        nonlocal peak
        with lock:
            if id(session) in active:
                overlaps.append(id(session))
            active.add(id(session))
            peak = max(peak, len(active))
        time.sleep(0.0005)
        with lock:
            active.discard(id(session))

    def worker() -> None:
        for _ in range(40):
            pool._run("check", probe)

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert overlaps == []
    assert peak == pool.config.pool_size


def test_acquire_timeout(token: TestToken) -> None:
    release = threading.Event()
    with BlockingSessionPool(token.config(pool_size=1, acquire_timeout=0.2)) as pool:
        holder = threading.Thread(target=pool._run, args=("check", lambda s: release.wait(5)))
        holder.start()
        while pool.sessions_in_use == 0:
            time.sleep(0.001)
        started = time.monotonic()
        with pytest.raises(HsmUnavailableError, match=r"no HSM session became free within 0\.2 s"):
            pool.check()
        assert 0.2 <= time.monotonic() - started < 1.0
        release.set()
        holder.join()
        # Waiting callers are not failures of the token.
        assert pool.healthy
        assert pool.check().label == token.label


def test_closed_pool(token: TestToken) -> None:
    pool = BlockingSessionPool(token.config())
    assert not pool.healthy
    pool.open()
    assert pool.healthy
    assert pool.sessions_open == 4
    pool.close()
    assert not pool.healthy
    assert (pool.sessions_open, pool.sessions_in_use) == (0, 0)
    with pytest.raises(HsmUnavailableError, match="the session pool is closed"):
        pool.check()
    # Closing ends the login; a new pool logs in again.
    with BlockingSessionPool(token.config()) as again:
        assert again.check().serial == token.serial


def test_waiters_are_released_on_close(token: TestToken) -> None:
    release = threading.Event()
    outcomes: list[BaseException | str] = []
    pool = BlockingSessionPool(token.config(pool_size=1, acquire_timeout=5))
    pool.open()
    holder = threading.Thread(target=pool._run, args=("check", lambda s: release.wait(5)))
    holder.start()
    while pool.sessions_in_use == 0:
        time.sleep(0.001)

    def waiter() -> None:
        try:
            pool.check()
            outcomes.append("ok")
        except HsmUnavailableError as ex:
            outcomes.append(ex)

    waiting = threading.Thread(target=waiter)
    waiting.start()
    time.sleep(0.05)
    started = time.monotonic()
    pool.close()
    waiting.join(timeout=2)
    assert time.monotonic() - started < 1
    release.set()
    holder.join()
    assert len(outcomes) == 1
    assert isinstance(outcomes[0], HsmUnavailableError)
    assert "closed" in str(outcomes[0])


def test_generation_while_others_use_the_token(pool: BlockingSessionPool) -> None:
    # SoftHSM fails a key generation (CKR_GENERAL_ERROR) and shows half-made keys to
    # searches when other threads read the token's objects meanwhile; the pool runs
    # generation alone.
    key = pool.generate_key(KeySpec.EC_P256, label="steady")
    digest = bytes(32)
    stop = threading.Event()
    errors: list[BaseException] = []
    listings: list[list[KeyInfo]] = []

    def busy(n: int) -> None:
        try:
            while not stop.is_set():
                if n % 2:
                    listings.append(pool.list_keys())
                else:
                    pool.sign_digest(
                        key.key_id, digest, scheme=SignScheme.ECDSA, hash_alg=HashAlg.SHA256
                    )
        except BaseException as ex:
            errors.append(ex)

    before = _metrics_snapshot()
    # Fewer busy callers than sessions, so the generation never waits for one.
    threads = [threading.Thread(target=busy, args=(n,)) for n in range(pool.config.pool_size - 1)]
    for thread in threads:
        thread.start()
    try:
        made = [pool.generate_key(KeySpec.EC_P256, label=f"new {n}") for n in range(20)]
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    assert errors == []
    assert signatures.failed_operations() == before["failed"]
    assert signatures.sample("kyso_hsm_recoveries_total", outcome="ok") == before["recoveries"]
    assert listings
    for listing in listings:
        assert all(k.usable for k in listing), [k.as_dict() for k in listing if not k.usable]
    assert {k.key_id for k in pool.list_keys()} == {key.key_id} | {k.key_id for k in made}


def test_waiting_callers_are_served_in_turn(token: TestToken) -> None:
    # Six callers in tight loops on two sessions: a caller that gives its session back
    # and asks again at once must not overtake those already waiting for one.
    with BlockingSessionPool(token.config(pool_size=2, acquire_timeout=0.5)) as pool:
        key = pool.generate_key(KeySpec.EC_P256, label="busy")
        stop = threading.Event()
        done = Counter[int]()
        errors: list[BaseException] = []

        def caller(n: int) -> None:
            while not stop.is_set():
                try:
                    pool.sign_digest(
                        key.key_id, bytes(32), scheme=SignScheme.ECDSA, hash_alg=HashAlg.SHA256
                    )
                except HsmUnavailableError as ex:
                    errors.append(ex)
                    return
                done[n] += 1

        threads = [threading.Thread(target=caller, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        stop.set()
        for thread in threads:
            thread.join(5)
        assert errors == []
        assert min(done.values()) > 0.5 * max(done.values()), done
