"""PAdES signing throughput at each level: Kyso's pipeline against pyHanko's own ``sign_pdf``.

Run from the repository root::

    .venv/bin/python -m bench.signer_bench [--seconds 1] [--rounds 5]

One throwaway SoftHSM2 token, one officer credential (ECDSA P-256) of a Kyso CA, one
1-page PDF, SQLite. Variants:

- ``pyhanko-1``: B-B with pyHanko's ``signers.sign_pdf`` and its ``PKCS11Signer`` on the
  same key (``use_raw_mechanism=True``: SoftHSM has no CKM_ECDSA_SHA256), 1 thread. As a
  user of pyHanko would call it: no ``bytes_reserved``.
- ``kyso-1``: B-B with :func:`signer.pades.sign_pdf` and a prepared credential, 1 thread;
  ``kyso-1-service`` goes through :class:`signer.service.SigningService` as the service
  does: the credential's status checked against the PKI status generation per document.
- ``kyso-2-threads``: 2 threads of one process sharing the session pool.
- ``kyso-2-processes``: 2 spawned processes, each with its own PKCS#11 module and pool
  (pyHanko's PDF work is pure Python and holds the GIL, so threads do not use both cores).
- ``kyso-bt-1``: B-T, a signature timestamp from Kyso's own TSA called in process.
- ``pyhanko-blt-1``: B-LT with pyHanko: ``sign_pdf`` with the same in-process TSA (through
  :class:`signer.ltv.InProcessTimeStamper`) and ``embed_validation_info`` with a validation
  context holding the same OCSP answers and CRL Kyso embeds (no fetching).
- ``kyso-blt-1``, ``kyso-blta-1``: B-LT and B-LTA through the signing service;
  ``kyso-blt-2-processes``: B-LT in 2 processes, each with its own service and TSA.

Variants are interleaved: every round runs each one for a fixed time, in an order that
rotates and reverses from round to round, and the report gives medians over the rounds;
ratios are medians of per-round pairs against pyHanko at the same level (B-LTA against
pyHanko's B-LT). One document of each pipeline is fully validated by pyHanko before the
rounds (B-LT offline: revocation required and answered from the DSS alone). The exit
status is 0 whatever the figures; targets are marked PASS or MISS. The JSON summary is the
last line.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import platform
import shutil
import statistics
import sys
import threading
import time
from collections.abc import Callable
from io import BytesIO
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from bench.environment import enroll_officer, new_token, softhsm_version, throwaway_softhsm

if TYPE_CHECKING:
    from hsm import HsmConfig
    from signer.pades import Level


def one_page_pdf(text: str = "Giấy xác nhận thông tin về cư trú") -> bytes:
    """A small valid one-page A4 PDF (Helvetica, one line of text), built by hand."""
    line = text.encode("ascii", "replace").replace(b"\\", b"\\\\")
    line = line.replace(b"(", b"\\(").replace(b")", b"\\)")
    stream = b"BT /F1 14 Tf 72 770 Td (" + line + b") Tj ET"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        b"/Resources << /Font << /F1 4 0 R >> >> /Contents 5 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
    ]
    return assemble_pdf(objects)


def assemble_pdf(objects: list[bytes]) -> bytes:
    """A PDF file of ``objects`` (numbered from 1, the catalog first) with its xref table."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def _rate(sign: Callable[[], bytes], duration: float) -> float:
    start = time.perf_counter()
    deadline = start + duration
    count = 0
    last = b""
    while time.perf_counter() < deadline:
        last = sign()
        count += 1
    rate = count / (time.perf_counter() - start)
    _check(last)
    return rate


def _check(signed: bytes) -> None:
    # a cheap sanity check every round; the full validation runs once, before the rounds
    if b"/ETSI.CAdES.detached" not in signed or not signed.startswith(b"%PDF"):
        raise AssertionError("a variant produced something that is not a signed PDF")


def _threads_rate(sign: Callable[[], bytes], threads: int, duration: float) -> float:
    barrier = threading.Barrier(threads)
    rates = [0.0] * threads

    def loop(index: int) -> None:
        barrier.wait()
        rates[index] = _rate(sign, duration)

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return sum(rates)


def _process_worker(
    connection: Connection,
    config: HsmConfig,
    credential: Any,
    pdf: bytes,
    database_url: str | None,
    level: str,
) -> None:
    """A worker process: its own PKCS#11 module and session pool, Kyso's pipeline in a loop.
    B-B signs with the prepared ``credential``; the other levels go through a
    :class:`signer.service.SigningService` of the worker's own, with its own TSA, on the
    shared database at ``database_url`` (``credential`` is then the credential id)."""
    from hsm import BlockingSessionPool
    from kyso.db import make_engine
    from pki.authority import Authority, AuthorityConfig
    from signer.pades import sign_pdf
    from signer.service import SigningService
    from signer.timestamps import TsaTimestamper, timestamp_reserve

    with BlockingSessionPool(config) as pool:
        if database_url is None:

            def sign() -> bytes:
                return sign_pdf(pdf, credential, pool, usable=None)

        else:
            authority = Authority(
                engine=make_engine(database_url),
                pool=pool,
                config=AuthorityConfig(public_url="http://127.0.0.1:8000"),
            )
            timestamper = TsaTimestamper(respond=authority.timestamp_authority().respond)
            service = SigningService(
                authority=authority,
                pool=pool,
                timestamper=timestamper,
                timestamp_reserve=timestamp_reserve(timestamper),
            )

            def sign() -> bytes:
                return service.sign(pdf, credential, level=level)  # type: ignore[arg-type]

        sign()  # warm up
        connection.send("ready")
        while (duration := connection.recv()) is not None:
            connection.send(_rate(sign, duration))


class _Processes:
    """Worker processes started once (spawned: PKCS#11 state must not be forked)."""

    def __init__(
        self,
        count: int,
        config: HsmConfig,
        credential: Any,
        pdf: bytes,
        database_url: str | None = None,
        level: str = "B-B",
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self._connections: list[Connection] = []
        self._processes = []
        for _ in range(count):
            ours, theirs = context.Pipe()
            process = context.Process(
                target=_process_worker,
                args=(theirs, config, credential, pdf, database_url, level),
                daemon=True,
            )
            process.start()
            self._connections.append(ours)
            self._processes.append(process)
        for connection in self._connections:
            if connection.recv() != "ready":
                raise RuntimeError("a worker process failed to start")

    def rate(self, duration: float) -> float:
        for connection in self._connections:
            connection.send(duration)
        return sum(float(connection.recv()) for connection in self._connections)

    def close(self) -> None:
        for connection in self._connections:
            connection.send(None)
        for process in self._processes:
            process.join(timeout=10)


VARIANTS = (
    "pyhanko-1",
    "kyso-1",
    "kyso-1-service",
    "kyso-2-threads",
    "kyso-2-processes",
    "kyso-bt-1",
    "pyhanko-blt-1",
    "kyso-blt-1",
    "kyso-blt-2-processes",
    "kyso-blta-1",
)
DESCRIPTIONS = {
    "pyhanko-1": "B-B pyHanko sign_pdf + PKCS11Signer, 1 thread",
    "kyso-1": "B-B Kyso sign_pdf, 1 thread",
    "kyso-1-service": "B-B Kyso SigningService (status checked), 1 thread",
    "kyso-2-threads": "B-B Kyso sign_pdf, 2 threads (one process)",
    "kyso-2-processes": "B-B Kyso sign_pdf, 2 processes",
    "kyso-bt-1": "B-T Kyso SigningService (own TSA), 1 thread",
    "pyhanko-blt-1": "B-LT pyHanko sign_pdf (same TSA and revocation data), 1 thread",
    "kyso-blt-1": "B-LT Kyso SigningService (own TSA and OCSP), 1 thread",
    "kyso-blt-2-processes": "B-LT Kyso SigningService, 2 processes",
    "kyso-blta-1": "B-LTA Kyso SigningService, 1 thread",
}
BASELINES = {name: "pyhanko-blt-1" if "-bl" in name else "pyhanko-1" for name in VARIANTS}
"""The pyHanko variant each is compared with: the same level (B-LTA against B-LT)."""
RATIO_TARGET = 30.0
RATE_TARGET = 400.0
LT_RATE_TARGET = 150.0


def _validate(
    signed: bytes, root: Any, issuing: Any, officer: bytes, *, level: str = "B-B"
) -> None:
    """Full pyHanko validation of one document of each pipeline, before any timing; B-LT
    offline, with revocation checking required and answered from the DSS alone."""
    from pyhanko.pdf_utils.reader import PdfFileReader
    from pyhanko.sign.validation import DocumentSecurityStore, validate_pdf_signature
    from pyhanko.sign.validation.status import SignatureCoverageLevel
    from pyhanko_certvalidator import ValidationContext

    reader = PdfFileReader(BytesIO(signed))
    if level == "B-LT":
        context = DocumentSecurityStore.read_dss(reader).as_validation_context(
            {"trust_roots": [root], "allow_fetching": False, "revocation_mode": "hard-fail"}
        )
    else:
        context = ValidationContext(
            trust_roots=[root], other_certs=[issuing], allow_fetching=False,
            revocation_mode="soft-fail",
        )  # fmt: skip
    signature = reader.embedded_regular_signatures[0]
    status = validate_pdf_signature(signature, context)
    timestamped = level != "B-B"
    if not (
        status.bottom_line
        and (level == "B-LT" or status.coverage is SignatureCoverageLevel.ENTIRE_FILE)
        and status.signing_cert.dump() == officer
        and (
            not timestamped
            or (
                (stamp := status.timestamp_validity) is not None
                and stamp.intact
                and stamp.valid
                and stamp.trusted
            )
        )
    ):
        raise AssertionError(f"a benchmarked signature does not validate: {status.summary()}")


def run(seconds: float, rounds: int) -> dict[str, Any]:
    softhsm_dir = throwaway_softhsm()
    # SOFTHSM2_CONF is read when the module is loaded: import hsm (and what uses it) only now.
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import signers
    from pyhanko.sign.fields import SigSeedSubFilter
    from pyhanko.sign.pkcs11 import PKCS11Signer
    from pyhanko_certvalidator import ValidationContext

    from audit.events import Actor
    from hsm import BlockingSessionPool, HsmConfig, PinSource
    from hsm.config import find_pkcs11_module
    from hsm.module import load_module
    from kyso import db
    from pki.authority import Authority, AuthorityConfig
    from pki.store import CredentialKind
    from signer.cms import SigningCredential
    from signer.ltv import InProcessTimeStamper, collect_validation_data
    from signer.pades import sign_pdf
    from signer.service import SigningService
    from signer.timestamps import TsaTimestamper, timestamp_reserve

    label, pin_file = new_token(softhsm_dir)
    config = HsmConfig(token_label=label, pin=PinSource(file=pin_file), pool_size=4)
    database_url = f"sqlite:///{softhsm_dir / 'kyso.db'}"
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    pool = BlockingSessionPool(config)
    pool.open()
    processes: _Processes | None = None
    blt_processes: _Processes | None = None
    started = time.perf_counter()
    try:
        actor = Actor(id="bench", role="system-admin")
        authority = Authority(
            engine=engine,
            pool=pool,
            config=AuthorityConfig(public_url="http://127.0.0.1:8000"),
        )
        officer = enroll_officer(authority, actor)
        assert officer.certificate is not None
        chain = authority.internal_chain()
        credential = SigningCredential.prepare(officer, chain)
        pdf = one_page_pdf()
        timestamper = TsaTimestamper(respond=authority.timestamp_authority().respond)
        service = SigningService(
            authority=authority,
            pool=pool,
            timestamper=timestamper,
            timestamp_reserve=timestamp_reserve(timestamper),
        )

        # pyHanko's own pipeline on the same key: a session of its own through the module
        # object the pool loaded (login state is per application, so it sees the key).
        module = load_module(find_pkcs11_module())
        session = module.lib.get_token(token_label=label).open(rw=True)
        pkcs11_signer = PKCS11Signer(
            session,
            key_id=bytes.fromhex(officer.key_id),
            signing_cert=officer.certificate,
            ca_chain=list(chain),
            use_raw_mechanism=True,
        )
        metadata = signers.PdfSignatureMetadata(
            field_name="Signature1", md_algorithm="sha256", subfilter=SigSeedSubFilter.PADES
        )

        # pyHanko's own B-LT: the same in-process TSA, and the same revocation data handed
        # over in its validation context (no fetching), which it checks and puts in the DSS.
        validation_data = collect_validation_data(authority, officer)
        root = authority.ca_certificate(CredentialKind.ROOT_CA)
        pyhanko_lt_metadata = signers.PdfSignatureMetadata(
            field_name="Signature1",
            md_algorithm="sha256",
            subfilter=SigSeedSubFilter.PADES,
            embed_validation_info=True,
            validation_context=ValidationContext(
                trust_roots=[root],
                other_certs=list(validation_data.certificates),
                ocsps=list(validation_data.ocsp_responses),
                crls=list(validation_data.crls),
                allow_fetching=False,
            ),
        )
        pyhanko_timestamper = InProcessTimeStamper(timestamper)
        # pyHanko warns on every signature that it embeds revocation data without fetching
        logging.getLogger("pyhanko.sign.signers.pdf_signer").setLevel(logging.ERROR)

        def pyhanko_sign() -> bytes:
            writer = IncrementalPdfFileWriter(BytesIO(pdf))
            out = signers.sign_pdf(writer, metadata, signer=pkcs11_signer)
            return out.getvalue()  # type: ignore[no-any-return]

        def pyhanko_sign_lt() -> bytes:
            writer = IncrementalPdfFileWriter(BytesIO(pdf))
            out = signers.sign_pdf(
                writer, pyhanko_lt_metadata, signer=pkcs11_signer, timestamper=pyhanko_timestamper
            )
            return out.getvalue()  # type: ignore[no-any-return]

        def kyso_sign() -> bytes:
            return sign_pdf(pdf, credential, pool, usable=None)

        def kyso_service(level: Level) -> Callable[[], bytes]:
            return lambda: service.sign(pdf, officer.id, level=level)

        officer_der = officer.certificate.dump()
        for sign in (pyhanko_sign, kyso_sign, kyso_service("B-B")):
            _validate(sign(), root, chain[0], officer_der)
        _validate(kyso_service("B-T")(), root, chain[0], officer_der, level="B-T")
        for sign in (pyhanko_sign_lt, kyso_service("B-LT"), kyso_service("B-LTA")):
            _validate(sign(), root, chain[0], officer_der, level="B-LT")
        processes = _Processes(2, config, credential, pdf)
        blt_processes = _Processes(2, config, officer.id, pdf, database_url, "B-LT")

        def measure(name: str) -> float:
            if name == "pyhanko-1":
                # ≈ 10 documents/s: a longer slice keeps its count from being a handful
                return _rate(pyhanko_sign, seconds * 2)
            if name == "kyso-1":
                return _rate(kyso_sign, seconds)
            if name == "kyso-1-service":
                return _rate(kyso_service("B-B"), seconds)
            if name == "kyso-2-threads":
                return _threads_rate(kyso_sign, 2, seconds)
            if name == "kyso-bt-1":
                return _rate(kyso_service("B-T"), seconds)
            if name == "pyhanko-blt-1":
                return _rate(pyhanko_sign_lt, seconds * 2)
            if name == "kyso-blt-1":
                return _rate(kyso_service("B-LT"), seconds)
            if name == "kyso-blta-1":
                return _rate(kyso_service("B-LTA"), seconds)
            if name == "kyso-blt-2-processes":
                assert blt_processes is not None
                return blt_processes.rate(seconds)
            assert processes is not None
            return processes.rate(seconds)

        samples: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for index in range(rounds):
            order = VARIANTS[index % len(VARIANTS) :] + VARIANTS[: index % len(VARIANTS)]
            if index % 2:
                order = order[::-1]
            for name in order:
                samples[name].append(measure(name))
    finally:
        if processes is not None:
            processes.close()
        if blt_processes is not None:
            blt_processes.close()
        pool.close()
        engine.dispose()
        shutil.rmtree(softhsm_dir, ignore_errors=True)

    def median(name: str) -> float:
        return statistics.median(samples[name])

    def paired(name: str) -> float:
        baseline = samples[BASELINES[name]]
        return statistics.median(k / p for k, p in zip(samples[name], baseline, strict=True))

    best_two = max(("kyso-2-threads", "kyso-2-processes"), key=median)
    results = {
        name: {
            "median_per_s": round(median(name), 1),
            "baseline": BASELINES[name],
            "vs_pyhanko": round(paired(name), 2),
            "samples": [round(s, 1) for s in samples[name]],
        }
        for name in VARIANTS
    }
    return {
        "softhsm": softhsm_version(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "key": "ECDSA P-256",
        "document": f"1 page, {len(pdf)} bytes",
        "rounds": rounds,
        "seconds_per_variant": seconds,
        "results": results,
        "targets": {
            "ratio_1_thread": {
                "ratio": round(paired("kyso-1"), 2),
                "target": RATIO_TARGET,
                "pass": paired("kyso-1") >= RATIO_TARGET,
            },
            "ratio_both_cores": {
                "variant": best_two,
                "ratio": round(paired(best_two), 2),
                "target": RATIO_TARGET,
                "pass": paired(best_two) >= RATIO_TARGET,
            },
            "rate_both_cores": {
                "variant": best_two,
                "per_s": round(median(best_two), 1),
                "target": RATE_TARGET,
                "pass": median(best_two) >= RATE_TARGET,
            },
            "lt_rate_both_cores": {
                "variant": "kyso-blt-2-processes",
                "per_s": round(median("kyso-blt-2-processes"), 1),
                "target": LT_RATE_TARGET,
                "pass": median("kyso-blt-2-processes") >= LT_RATE_TARGET,
            },
        },
        "elapsed_s": round(time.perf_counter() - started, 1),
    }


def report(summary: dict[str, Any]) -> str:
    lines = [
        f"SoftHSM {summary['softhsm']}, {summary['cpus']} CPUs, Python {summary['python']}, "
        f"key {summary['key']}, document {summary['document']}",
        f"{summary['rounds']} interleaved rounds of {summary['seconds_per_variant']} s per "
        "variant (pyHanko: twice that); medians over the rounds",
        "",
        f"{'':<64} {'docs/s':>8} {'vs pyHanko':>11}   per-round samples",
        "  (vs pyHanko: per-round pairs against pyHanko at the same level; B-LTA against B-LT)",
    ]
    for name, row in summary["results"].items():
        spread = " ".join(f"{s:.0f}" for s in row["samples"])
        lines.append(
            f"  {DESCRIPTIONS[name]:<62} {row['median_per_s']:>8.1f} {row['vs_pyhanko']:>10.1f}x"
            f"   {spread}"
        )
    targets = summary["targets"]
    lines.append("")
    one = targets["ratio_1_thread"]
    lines.append(
        f"Kyso / pyHanko, 1 thread each = {one['ratio']:.1f}x per-round pairs "
        f"(target >= {one['target']:.0f}x) {'PASS' if one['pass'] else 'MISS'}"
    )
    both = targets["ratio_both_cores"]
    lines.append(
        f"Kyso both cores ({both['variant']}) / pyHanko 1 thread = {both['ratio']:.1f}x "
        f"(target >= {both['target']:.0f}x) {'PASS' if both['pass'] else 'MISS'}"
    )
    rate = targets["rate_both_cores"]
    lines.append(
        f"Kyso both cores ({rate['variant']}) = {rate['per_s']:.0f} documents/s "
        f"(target >= {rate['target']:.0f}/s) {'PASS' if rate['pass'] else 'MISS'}"
    )
    lt = targets["lt_rate_both_cores"]
    lines.append(
        f"Kyso B-LT both cores ({lt['variant']}) = {lt['per_s']:.0f} documents/s "
        f"(target >= {lt['target']:.0f}/s) {'PASS' if lt['pass'] else 'MISS'}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--seconds", type=float, default=1.0, help="seconds per variant and round (default 1)"
    )
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    args = parser.parse_args(argv)
    summary = run(max(0.05, args.seconds), max(1, args.rounds))
    print(report(summary))
    print(f"\ntotal {summary['elapsed_s']} s")
    print(json.dumps(summary, ensure_ascii=False, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
