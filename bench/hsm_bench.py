"""Signing throughput on SoftHSM2: raw python-pkcs11 against Kyso's session pools.

Run from the repository root::

    .venv/bin/python -m bench.hsm_bench [--rounds 25] [--json summary.json]

Variants, each for ECDSA P-256 and RSA-2048 (PKCS#1 v1.5 over a SHA-256 digest):

- ``raw``: a python-pkcs11 session and key object used directly, 1 and 2 threads (each
  thread its own session). The 2-thread figure is what the library itself scales to.
- ``pool``: ``BlockingSessionPool.sign_digest`` from 1 and 2 threads.
- ``async``: ``SessionPool.sign_digest`` from 1 and 2 concurrent asyncio tasks.

Everything runs on one token in a throwaway SoftHSM2 directory, through the one loaded
module (``hsm.module.load_module``), which re-initialises SoftHSM with OS locking: the raw
baseline must measure the same library state as the pool, not a mutex-free SoftHSM.

Timings on a small VM drift by tens of percent between consecutive runs, so the variants
are interleaved: every round runs each variant for a fixed time, in an order that rotates
and reverses from round to round, and the report gives the median over the rounds. The
variants of a ratio are measured next to each other, so each ratio is also given as the
median of its per-round pairs; the pool-versus-raw target is judged on that paired ratio.

The exit status is 0 whatever the figures (this is a measurement, not a test); targets
are marked PASS or MISS. The JSON summary is the last line of stdout, or goes to the file
given with ``--json``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import shutil
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.environment import new_token, softhsm_version, throwaway_softhsm

if TYPE_CHECKING:
    from hsm import KeyInfo, SessionPool

ALGORITHMS: dict[str, float] = {"ecdsa-p256": 0.1, "rsa-2048": 0.25}
"""Algorithm → seconds each variant runs per round (RSA is ~10× slower per signature)."""

VARIANTS: tuple[tuple[str, int], ...] = (
    ("raw", 2),
    ("raw", 1),
    ("pool", 1),
    ("pool", 2),
    ("async", 2),
    ("async", 1),
)
"""Measuring order: the variants compared in a ratio run next to each other."""

DISPLAY = ("raw-1", "raw-2", "pool-1", "pool-2", "async-1", "async-2")
POOL_VS_RAW_TARGET = 0.85

DIGEST = hashlib.sha256("Giấy xác nhận thông tin về cư trú".encode()).digest()

Signer = Callable[[], object]


@dataclass(frozen=True)
class Variant:
    algorithm: str
    kind: str
    workers: int

    @property
    def name(self) -> str:
        unit = {"raw": "thread", "pool": "worker", "async": "task"}[self.kind]
        return f"{self.kind} {self.workers} {unit}{'s' if self.workers > 1 else ''}"

    @property
    def key(self) -> str:
        return f"{self.kind}-{self.workers}"


def _threads_rate(signers: list[Signer], duration: float) -> float:
    """Run each signer in its own thread for ``duration`` s; return signatures per second."""
    barrier = threading.Barrier(len(signers))
    rates = [0.0] * len(signers)

    def loop(index: int) -> None:
        sign = signers[index]
        barrier.wait()
        start = time.perf_counter()
        deadline = start + duration
        count = 0
        while time.perf_counter() < deadline:
            sign()
            count += 1
        rates[index] = count / (time.perf_counter() - start)

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(len(signers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(rates)


async def _tasks_rate(pool: SessionPool, key: KeyInfo, tasks: int, duration: float) -> float:
    from hsm import HashAlg, default_scheme

    scheme = default_scheme(key)
    rates = [0.0] * tasks

    async def loop(index: int) -> None:
        start = time.perf_counter()
        deadline = start + duration
        count = 0
        while time.perf_counter() < deadline:
            await pool.sign_digest(key.key_id, DIGEST, scheme=scheme, hash_alg=HashAlg.SHA256)
            count += 1
        rates[index] = count / (time.perf_counter() - start)

    await asyncio.gather(*(loop(i) for i in range(tasks)))
    return sum(rates)


def _verify(key: KeyInfo, signature: bytes, *, raw: bool) -> None:
    """Check one signature per variant and round: a fast wrong answer is no result."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import (
        Prehashed,
        encode_dss_signature,
    )
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    assert key.public_key is not None
    public = load_der_public_key(key.public_key)
    if isinstance(public, ec.EllipticCurvePublicKey):
        if raw:  # PKCS#11 gives r‖s; the pool gives DER
            half = len(signature) // 2
            signature = encode_dss_signature(
                int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big")
            )
        public.verify(signature, DIGEST, ec.ECDSA(Prehashed(hashes.SHA256())))
    else:
        assert isinstance(public, rsa.RSAPublicKey)
        public.verify(signature, DIGEST, padding.PKCS1v15(), Prehashed(hashes.SHA256()))


def run(rounds: int) -> dict[str, Any]:
    softhsm_dir = throwaway_softhsm()
    # SOFTHSM2_CONF is read when the module is loaded; import hsm only now.
    from pkcs11 import Mechanism, ObjectClass

    from hsm import HashAlg, HsmConfig, KeySpec, PinSource, SessionPool, default_scheme
    from hsm.config import find_pkcs11_module
    from hsm.module import load_module

    label, pin_file = new_token(softhsm_dir)

    loop = asyncio.new_event_loop()
    pool = SessionPool(
        HsmConfig(token_label=label, pin=PinSource(file=pin_file), pool_size=4, retry_interval=0)
    )
    loop.run_until_complete(pool.open())
    blocking = pool.blocking
    keys = {
        "ecdsa-p256": blocking.generate_key(KeySpec.EC_P256, label="bench ecdsa p-256"),
        "rsa-2048": blocking.generate_key(KeySpec.RSA_2048, label="bench rsa-2048"),
    }

    # Raw sessions through the very module object the pool uses. The pool is logged in,
    # and PKCS#11 login state is per application, so these sessions see the private keys.
    module = load_module(find_pkcs11_module())
    token = module.lib.get_token(token_label=label)
    raw_sessions = [token.open(rw=True) for _ in range(2)]

    def raw_signers(algorithm: str, count: int) -> list[Signer]:
        key_id = keys[algorithm].key_id
        signers: list[Signer] = []
        for session in raw_sessions[:count]:
            private = session.get_key(object_class=ObjectClass.PRIVATE_KEY, id=key_id)
            if algorithm == "ecdsa-p256":
                signers.append(partial(private.sign, DIGEST, mechanism=Mechanism.ECDSA))
            else:
                # CKM_RSA_PKCS pads whatever it gets: the DigestInfo is the caller's job.
                data = HashAlg.SHA256.digest_info_prefix + DIGEST
                signers.append(partial(private.sign, data, mechanism=Mechanism.RSA_PKCS))
        return signers

    def pool_signers(algorithm: str, count: int) -> list[Signer]:
        key = keys[algorithm]
        scheme = default_scheme(key)

        def sign() -> bytes:
            return blocking.sign_digest(key.key_id, DIGEST, scheme=scheme, hash_alg=HashAlg.SHA256)

        return [sign] * count

    def measure(variant: Variant, duration: float) -> float:
        key = keys[variant.algorithm]
        if variant.kind == "raw":
            signers = raw_signers(variant.algorithm, variant.workers)
            rate = _threads_rate(signers, duration)
            _verify(key, signers[0](), raw=True)  # type: ignore[arg-type]
            return rate
        if variant.kind == "pool":
            signers = pool_signers(variant.algorithm, variant.workers)
            rate = _threads_rate(signers, duration)
            _verify(key, signers[0](), raw=False)  # type: ignore[arg-type]
            return rate
        rate = loop.run_until_complete(_tasks_rate(pool, key, variant.workers, duration))
        scheme = default_scheme(key)
        signature = loop.run_until_complete(
            pool.sign_digest(key.key_id, DIGEST, scheme=scheme, hash_alg=HashAlg.SHA256)
        )
        _verify(key, signature, raw=False)
        return rate

    variants = [Variant(a, kind, n) for a in ALGORITHMS for kind, n in VARIANTS]
    samples: dict[Variant, list[float]] = {v: [] for v in variants}
    started = time.perf_counter()
    try:
        for algorithm in ALGORITHMS:
            # Warm-up: first-call costs (key lookup, page faults) stay out of the samples.
            for variant in variants:
                if variant.algorithm == algorithm:
                    measure(variant, 0.05)
        for round_no in range(rounds):
            order = variants[round_no % len(variants) :] + variants[: round_no % len(variants)]
            if round_no % 2:
                order.reverse()
            for variant in order:
                samples[variant].append(measure(variant, ALGORITHMS[variant.algorithm]))
            print(f"round {round_no + 1}/{rounds} done", file=sys.stderr, flush=True)
    finally:
        for session in raw_sessions:
            session.close()
        loop.run_until_complete(pool.close())
        loop.close()
        shutil.rmtree(softhsm_dir, ignore_errors=True)

    results: dict[str, dict[str, Any]] = {}
    for algorithm in ALGORITHMS:
        by_key = {v.key: v for v in variants if v.algorithm == algorithm}
        medians = {key: statistics.median(samples[v]) for key, v in by_key.items()}

        def paired(top: str, bottom: str, by_key: dict[str, Variant] = by_key) -> float:
            """Median over the rounds of a ratio of two neighbouring measurements: less
            exposed to the machine speeding up or slowing down between rounds."""
            pairs = zip(samples[by_key[top]], samples[by_key[bottom]], strict=True)
            return round(statistics.median(t / b for t, b in pairs), 3)

        base = medians["raw-1"]
        results[algorithm] = {
            key: {
                "name": by_key[key].name,
                "median_ops_per_s": round(medians[key], 1),
                "vs_raw_1": round(medians[key] / base, 3),
                "samples": [round(s, 1) for s in samples[by_key[key]]],
            }
            for key in DISPLAY
        }
        pool_vs_raw = medians["pool-1"] / base
        results[algorithm]["ratios"] = {
            "pool_1_vs_raw_1": round(pool_vs_raw, 3),
            "pool_1_vs_raw_1_paired": paired("pool-1", "raw-1"),
            "pool_2_vs_pool_1_paired": paired("pool-2", "pool-1"),
            "pool_1_vs_raw_1_target": POOL_VS_RAW_TARGET,
            # Judged on the paired ratio: the two sides ran back to back in every round.
            "pool_1_vs_raw_1_pass": paired("pool-1", "raw-1") >= POOL_VS_RAW_TARGET,
            "pool_2_vs_pool_1": round(medians["pool-2"] / medians["pool-1"], 3),
            "raw_2_vs_raw_1": round(medians["raw-2"] / base, 3),
            "async_1_vs_raw_1": round(medians["async-1"] / base, 3),
            "async_2_vs_async_1": round(medians["async-2"] / medians["async-1"], 3),
        }
    return {
        "softhsm": softhsm_version(),
        "module": module.path,
        "thread_safe": module.thread_safe,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "rounds": rounds,
        "seconds_per_variant": ALGORITHMS,
        "elapsed_s": round(time.perf_counter() - started, 1),
        "results": results,
    }


def report(summary: dict[str, Any]) -> str:
    lines = [
        f"SoftHSM {summary['softhsm']} ({summary['module']}, OS locking: "
        f"{summary['thread_safe']}), {summary['cpus']} CPUs, Python {summary['python']}",
        f"{summary['rounds']} interleaved rounds; median signatures per second over the rounds",
    ]
    for algorithm, result in summary["results"].items():
        ratios = result["ratios"]
        lines += [
            "",
            f"{algorithm:<20} {'ops/s':>9} {'vs raw 1':>9}   per-round samples",
        ]
        for key, row in result.items():
            if key == "ratios":
                continue
            spread = " ".join(f"{s:.0f}" for s in row["samples"])
            lines.append(
                f"  {row['name']:<18} {row['median_ops_per_s']:>9.0f} {row['vs_raw_1']:>9.2f}"
                f"   {spread}"
            )
        verdict = "PASS" if ratios["pool_1_vs_raw_1_pass"] else "MISS"
        lines += [
            f"  pool 1 worker / raw = {ratios['pool_1_vs_raw_1_paired']:.2f} per-round pairs "
            f"(target >= {POOL_VS_RAW_TARGET:.2f}) {verdict}"
            f"   [ratio of medians: {ratios['pool_1_vs_raw_1']:.2f}]",
            f"  pool 2 workers / pool 1 worker = {ratios['pool_2_vs_pool_1']:.2f} "
            "(scaling on the second core)"
            f"   [per-round pairs: {ratios['pool_2_vs_pool_1_paired']:.2f}]",
            f"  raw 2 threads / raw 1 thread = {ratios['raw_2_vs_raw_1']:.2f} "
            "(what SoftHSM itself scales to)",
            f"  async 1 task / raw = {ratios['async_1_vs_raw_1']:.2f}, "
            f"async 2 tasks / async 1 task = {ratios['async_2_vs_async_1']:.2f}",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=25, help="interleaved rounds (default 25)")
    parser.add_argument("--json", type=Path, help="write the JSON summary here, not to stdout")
    args = parser.parse_args(argv)
    summary = run(max(1, args.rounds))
    print(report(summary))
    print(f"\ntotal {summary['elapsed_s']} s")
    encoded = json.dumps(summary, ensure_ascii=False, separators=(",", ":"))
    if args.json:
        args.json.write_text(encoded + "\n", encoding="utf-8")
        print(f"JSON summary written to {args.json}")
    else:
        print(encoded)
    return 0


if __name__ == "__main__":
    sys.exit(main())
