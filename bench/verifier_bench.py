"""Verification throughput: Kyso's verifier against pyHanko's ``validate_pdf_signature``,
same documents, same trust material, same run.

Run from the repository root::

    .venv/bin/python -m bench.verifier_bench [--seconds 2]

The corpus is signed by Kyso on a throwaway SoftHSM token: 1 and 50 pages, B-B and B-LT,
four distinct documents of each.
Every variant validates with the demo root as the only anchor and revocation status
required; the CRLs of Kyso's CAs are handed to both (Kyso reads them from its database), so
B-B documents are decidable offline. The baseline is what a caller of pyHanko does per
document: open the PDF, build a validation context from the DSS, run
``validate_pdf_signature`` with the difference analysis on. Kyso's verdict must equal
pyHanko's (``bottom_line`` ⇔ TOTAL-PASSED) on every document.

Measured one after the other: pyHanko in this process, on one core; Kyso as the service runs
it, through its pool of isolated worker processes: one worker (one core) against pyHanko,
then two workers (both cores) against one. The workers' speed-ups (``verifier.accelerate``)
exist only in the worker processes, so the baseline here runs pyHanko unchanged. The last
line of the output is the JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import threading
import time
from collections.abc import Callable
from io import BytesIO
from typing import Any

from bench.environment import enroll_officer, new_token, softhsm_version, throwaway_softhsm
from bench.signer_bench import one_page_pdf
from bench.size_bench import pdf_with_pages

DOCUMENTS_PER_VARIANT = 4
"""Distinct documents of each kind in the corpus, verified in turn."""

TARGET_RATIO = 5.0
"""Kyso on one core against pyHanko on one core (issue 6)."""


def _rate(verify: Callable[[bytes], object], corpus: list[bytes], seconds: float) -> float:
    start = time.perf_counter()
    deadline = start + seconds
    count = 0
    while time.perf_counter() < deadline or count < len(corpus):
        verify(corpus[count % len(corpus)])
        count += 1
    return count / (time.perf_counter() - start)


def _threads_rate(
    verify: Callable[[bytes], object], corpus: list[bytes], threads: int, seconds: float
) -> float:
    counts = [0] * threads
    deadline = time.perf_counter() + seconds

    def loop(index: int) -> None:
        while time.perf_counter() < deadline:
            verify(corpus[(counts[index] + index) % len(corpus)])
            counts[index] += 1

    start = time.perf_counter()
    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(counts) / (time.perf_counter() - start)


def run(seconds: float) -> dict[str, Any]:
    softhsm_dir = throwaway_softhsm()
    # SOFTHSM2_CONF is read when the module is loaded: import hsm (and what uses it) only now.
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import DocumentSecurityStore, validate_pdf_signature
    from pyhanko.sign.validation.errors import NoDSSFoundError
    from pyhanko_certvalidator import ValidationContext

    from audit.events import Actor
    from hsm import BlockingSessionPool, HsmConfig, PinSource
    from kyso import db
    from pki.authority import Authority, AuthorityConfig
    from pki.store import CredentialKind
    from signer.service import SigningService
    from signer.timestamps import TsaTimestamper, timestamp_reserve
    from verifier.isolation import VerifierPool
    from verifier.limits import Limits
    from verifier.policy import default_policy
    from verifier.worker import TASK, policy_options

    label, pin_file = new_token(softhsm_dir)
    config = HsmConfig(token_label=label, pin=PinSource(file=pin_file), pool_size=4)
    engine = db.make_engine(f"sqlite:///{softhsm_dir / 'kyso.db'}")
    db.upgrade(engine)
    pool = BlockingSessionPool(config)
    pool.open()
    started = time.perf_counter()
    try:
        authority = Authority(
            engine=engine, pool=pool, config=AuthorityConfig(public_url="http://127.0.0.1:8000")
        )
        officer = enroll_officer(authority, Actor(id="bench", role="system-admin"))
        timestamper = TsaTimestamper(respond=authority.timestamp_authority().respond)
        service = SigningService(
            authority=authority,
            pool=pool,
            timestamper=timestamper,
            timestamp_reserve=timestamp_reserve(timestamper),
        )
        # Distinct documents (other text, other image bytes) signed one by one: nothing
        # a verifier could keep about one document helps with the next.
        sources: dict[str, Callable[[int], bytes]] = {
            "1 page": lambda i: one_page_pdf(f"Giay xac nhan thong tin ve cu tru so {i}"),
            "50 pages": lambda _: pdf_with_pages(50),
        }
        corpus = {
            f"{name}, {level}": [
                service.sign(source(i), officer.id, level=level)  # type: ignore[arg-type]
                for i in range(DOCUMENTS_PER_VARIANT)
            ]
            for name, source in sources.items()
            for level in ("B-B", "B-LT")
        }
        root = authority.ca_certificate(CredentialKind.ROOT_CA)
        crls = [
            authority.current_crl(k) for k in (CredentialKind.ROOT_CA, CredentialKind.ISSUING_CA)
        ]
        policy = default_policy([root.dump()], crls=crls)
    finally:
        pool.close()
        engine.dispose()

    from asn1crypto import crl as asn1_crl

    parsed_crls = [asn1_crl.CertificateList.load(c) for c in crls]

    def pyhanko(data: bytes) -> bool:
        reader = PdfFileReader(BytesIO(data), strict=True)
        settings = {
            "trust_roots": [root],
            "crls": parsed_crls,
            "ocsps": [],
            "allow_fetching": False,
            "revocation_mode": "require",
        }
        try:
            context = DocumentSecurityStore.read_dss(reader).as_validation_context(settings)
        except NoDSSFoundError:
            context = ValidationContext(**settings)  # type: ignore[arg-type]
        status = validate_pdf_signature(
            reader.embedded_signatures[0], signer_validation_context=context, skip_diff=False
        )
        return bool(status.bottom_line)

    options = policy_options(policy) | {"revisions": False}
    limits = Limits()

    def pooled(workers: VerifierPool) -> Callable[[bytes], bool]:
        def submit(data: bytes) -> bool:
            outcome = workers.submit(data, options)
            if not outcome.ok:
                raise AssertionError(f"the pool did not verify a document: {outcome}")
            return bool(outcome.value["indication"] == "TOTAL-PASSED")

        return submit

    results: dict[str, dict[str, float]] = {}
    with VerifierPool(task=TASK, workers=1, limits=limits) as one:
        kyso = pooled(one)
        verdicts = [(pyhanko(data), kyso(data)) for group in corpus.values() for data in group]
        for name, group in corpus.items():
            base = _rate(pyhanko, group, seconds)
            own = _rate(kyso, group, seconds)
            results[name] = {"pyhanko_per_s": base, "kyso_per_s": own, "ratio": own / base}
        everything = [data for group in zip(*corpus.values(), strict=True) for data in group]
        base_all = _rate(pyhanko, everything, seconds)
        kyso_all = _rate(kyso, everything, seconds)
        pool_one = _threads_rate(kyso, everything, 1, seconds)
    identical = all(a == b for a, b in verdicts)
    all_passed = all(a and b for a, b in verdicts)
    with VerifierPool(task=TASK, workers=2, limits=limits) as two:
        pool_two = _threads_rate(pooled(two), everything, 2, seconds)

    ratio = kyso_all / base_all
    return {
        "softhsm": softhsm_version(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "seconds_per_variant": seconds,
        "verdicts_identical": identical,
        "all_passed": all_passed,
        "per_document": results,
        "mixed": {"pyhanko_per_s": base_all, "kyso_per_s": kyso_all, "ratio": ratio},
        "pool": {
            "one_worker_per_s": pool_one,
            "two_workers_per_s": pool_two,
            "scaling": pool_two / pool_one,
        },
        "targets": {
            "ratio_one_core": {
                "ratio": ratio,
                "target": TARGET_RATIO,
                "pass": ratio >= TARGET_RATIO,
            },
            "identical_verdicts": {"pass": identical and all_passed},
            "scales_across_cores": {
                "scaling": pool_two / pool_one,
                "pass": pool_two / pool_one >= 1.5,
            },
        },
        "elapsed_s": round(time.perf_counter() - started, 1),
    }


def report(summary: dict[str, Any]) -> str:
    lines = [
        f"SoftHSM {summary['softhsm']}, {summary['cpus']} CPUs, Python {summary['python']}, "
        f"{summary['seconds_per_variant']} s per variant",
        "",
        f"{'':<24} {'pyHanko/s':>10} {'Kyso/s':>10} {'ratio':>8}",
    ]
    for name, row in summary["per_document"].items():
        lines.append(
            f"  {name:<22} {row['pyhanko_per_s']:>10.1f} {row['kyso_per_s']:>10.1f} "
            f"{row['ratio']:>7.2f}x"
        )
    mixed = summary["mixed"]
    lines.append(
        f"  {'mixed corpus':<22} {mixed['pyhanko_per_s']:>10.1f} {mixed['kyso_per_s']:>10.1f} "
        f"{mixed['ratio']:>7.2f}x"
    )
    pool = summary["pool"]
    lines += [
        "",
        f"worker pool, mixed corpus: 1 worker {pool['one_worker_per_s']:.1f}/s, "
        f"2 workers {pool['two_workers_per_s']:.1f}/s ({pool['scaling']:.2f}x)",
        "",
    ]
    targets = summary["targets"]
    one = targets["ratio_one_core"]
    lines.append(
        f"Kyso / pyHanko, one core each = {one['ratio']:.2f}x (target >= {one['target']:.0f}x) "
        f"{'PASS' if one['pass'] else 'MISS'}"
    )
    lines.append(
        "identical verdicts, every document TOTAL-PASSED: "
        f"{'PASS' if targets['identical_verdicts']['pass'] else 'MISS'}"
    )
    scale = targets["scales_across_cores"]
    lines.append(
        f"2 workers / 1 worker = {scale['scaling']:.2f}x (target >= 1.5x) "
        f"{'PASS' if scale['pass'] else 'MISS'}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per variant")
    args = parser.parse_args(argv)
    summary = run(max(0.1, args.seconds))
    print(report(summary))
    print(f"\ntotal {summary['elapsed_s']} s")
    print(json.dumps(summary, ensure_ascii=False, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
