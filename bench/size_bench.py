"""Signing large PDFs: time against page count (linear?) and peak memory against file size.

Run from the repository root::

    .venv/bin/python -m bench.size_bench [--pages 50,125,250,500] [--repeat 3]

Documents of N pages, each page a line of text and an incompressible 24 KB image stream
(so a 500-page file is ≈ 12 MB), signed with one officer credential (ECDSA P-256) of a
throwaway Kyso CA on a throwaway SoftHSM2 token. Every measurement runs in a fresh spawned
process, so its peak resident memory (``ru_maxrss``) is its own:

- ``kyso B-B`` and ``kyso B-LT``: :class:`signer.service.SigningService` (own TSA, OCSP);
- ``pyhanko B-B``: pyHanko's ``sign_pdf`` with its ``PKCS11Signer`` on the same key, the
  baseline, measured in the same run on the same files.

Reported per size: median seconds per document, Kyso's speed-up over pyHanko, and peak
memory — the whole process (interpreter, libraries and the HSM module included) and what
signing added to it after a warm-up on a 1-page document. Targets: time grows linearly with
size (seconds per page at the largest size within 1.5× of that at the middle size), and
the peak stays ≤ 2 × the file size + 150 MB. The exit status is 0 whatever the figures;
the JSON summary is the last line.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import shutil
import statistics
import sys
import time
import zlib
from io import BytesIO
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.environment import enroll_officer, new_token, softhsm_version, throwaway_softhsm
from bench.signer_bench import assemble_pdf, one_page_pdf

if TYPE_CHECKING:
    from hsm import HsmConfig

IMAGE_BYTES = 24 * 1024
MEMORY_SLACK = 150 * 1024 * 1024
LINEARITY_TOLERANCE = 1.5


def pdf_with_pages(pages: int) -> bytes:
    """A valid PDF of ``pages`` pages, each with a line of text and an incompressible image
    (random bytes, Flate-wrapped so it stays valid), with a correct xref table."""
    objects: list[bytes] = [b"<< /Type /Catalog /Pages 2 0 R >>", b""]
    font = 3
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    kids = []
    side = 96
    for page in range(pages):
        raw = os.urandom(IMAGE_BYTES)
        pixels = zlib.compress(raw[: side * side * 3], 0)
        image = len(objects) + 1
        objects.append(
            b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceRGB "
            b"/BitsPerComponent 8 /Filter /FlateDecode /Length %d >>\nstream\n%s\nendstream"
            % (side, side, len(pixels), pixels)
        )
        content = b"BT /F1 12 Tf 72 770 Td (Trang %d) Tj ET q 96 0 0 96 72 600 cm /Im Do Q" % (
            page + 1
        )
        stream = len(objects) + 1
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(content), content))
        kids.append(len(objects) + 1)
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents %d 0 R "
            b"/Resources << /Font << /F1 %d 0 R >> /XObject << /Im %d 0 R >> >> >>"
            % (stream, font, image)
        )
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (
        b" ".join(b"%d 0 R" % kid for kid in kids),
        pages,
    )
    return assemble_pdf(objects)


def _worker(
    connection: Connection,
    config: HsmConfig,
    database_url: str,
    officer_id: int,
    variant: str,
    path: str,
    repeat: int,
) -> None:
    """One measurement in a process of its own: warm up on 1 page, then sign ``path``
    ``repeat`` times; reports seconds per document and peak RSS before and after."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import signers
    from pyhanko.sign.fields import SigSeedSubFilter
    from pyhanko.sign.pkcs11 import PKCS11Signer

    from hsm import BlockingSessionPool
    from hsm.config import find_pkcs11_module
    from hsm.module import load_module
    from kyso.db import make_engine
    from pki.authority import Authority, AuthorityConfig
    from signer.service import SigningService
    from signer.timestamps import TsaTimestamper

    with BlockingSessionPool(config) as pool:
        authority = Authority(
            engine=make_engine(database_url),
            pool=pool,
            config=AuthorityConfig(public_url="http://127.0.0.1:8000"),
        )
        if variant.startswith("kyso"):
            level = variant.split()[1]
            service = SigningService(
                authority=authority,
                pool=pool,
                timestamper=TsaTimestamper(respond=authority.timestamp_authority().respond),
                max_size=1024 * 1024 * 1024,
            )

            def sign(data: bytes) -> bytes:
                return service.sign(data, officer_id, level=level)  # type: ignore[arg-type]

        else:
            officer = authority.credential(officer_id)
            module = load_module(find_pkcs11_module())
            assert config.token_label is not None
            session = module.lib.get_token(token_label=config.token_label).open(rw=True)
            pkcs11_signer = PKCS11Signer(
                session,
                key_id=bytes.fromhex(officer.key_id),
                signing_cert=officer.certificate,
                ca_chain=list(authority.internal_chain()),
                use_raw_mechanism=True,
            )
            metadata = signers.PdfSignatureMetadata(
                field_name="Signature1", md_algorithm="sha256", subfilter=SigSeedSubFilter.PADES
            )

            def sign(data: bytes) -> bytes:
                writer = IncrementalPdfFileWriter(BytesIO(data))
                return signers.sign_pdf(writer, metadata, signer=pkcs11_signer).getvalue()  # type: ignore[no-any-return]

        sign(one_page_pdf())
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        times = []
        for _ in range(repeat):
            data = Path(path).read_bytes()
            start = time.perf_counter()
            signed = sign(data)
            times.append(time.perf_counter() - start)
            if not signed.startswith(data):
                raise AssertionError("the signature is not an incremental update")
            del data, signed
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    connection.send((statistics.median(times), before, peak))


VARIANTS = ("pyhanko B-B", "kyso B-B", "kyso B-LT")


def run(page_counts: list[int], repeat: int) -> dict[str, Any]:
    softhsm_dir = throwaway_softhsm()
    from audit.events import Actor
    from hsm import BlockingSessionPool, HsmConfig, PinSource
    from kyso import db
    from pki.authority import Authority, AuthorityConfig

    label, pin_file = new_token(softhsm_dir)
    config = HsmConfig(token_label=label, pin=PinSource(file=pin_file), pool_size=2)
    database_url = f"sqlite:///{softhsm_dir / 'kyso.db'}"
    engine = db.make_engine(database_url)
    db.upgrade(engine)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    try:
        with BlockingSessionPool(config) as pool:
            authority = Authority(
                engine=engine, pool=pool, config=AuthorityConfig(public_url="http://127.0.0.1:8000")
            )
            officer = enroll_officer(authority, Actor(id="bench", role="system-admin"))
        context = multiprocessing.get_context("spawn")
        for pages in page_counts:
            path = softhsm_dir / f"{pages}.pdf"
            path.write_bytes(pdf_with_pages(pages))
            size = path.stat().st_size
            for variant in VARIANTS:
                ours, theirs = context.Pipe()
                process = context.Process(
                    target=_worker,
                    args=(theirs, config, database_url, officer.id, variant, str(path), repeat),
                )
                process.start()
                per_document, before, peak = ours.recv()
                process.join(timeout=60)
                rows.append(
                    {
                        "pages": pages,
                        "bytes": size,
                        "variant": variant,
                        "seconds": round(per_document, 4),
                        "peak_bytes": peak,
                        "added_bytes": max(0, peak - before),
                        "memory_bound_bytes": 2 * size + MEMORY_SLACK,
                    }
                )
    finally:
        engine.dispose()
        shutil.rmtree(softhsm_dir, ignore_errors=True)

    def seconds(pages: int, variant: str) -> float:
        return float(
            next(r["seconds"] for r in rows if r["pages"] == pages and r["variant"] == variant)
        )

    largest, middle = max(page_counts), sorted(page_counts)[len(page_counts) // 2]
    targets: dict[str, Any] = {}
    for variant in VARIANTS[1:]:
        per_page_large = seconds(largest, variant) / largest
        per_page_middle = seconds(middle, variant) / middle
        worst = max(
            (r for r in rows if r["variant"] == variant),
            key=lambda r: r["peak_bytes"] / r["memory_bound_bytes"],
        )
        targets[variant] = {
            "linearity": round(per_page_large / per_page_middle, 2),
            "linear": per_page_large <= LINEARITY_TOLERANCE * per_page_middle,
            "vs_pyhanko_largest": round(
                seconds(largest, "pyhanko B-B") / seconds(largest, variant), 1
            ),
            "worst_peak_mb": round(worst["peak_bytes"] / 2**20, 1),
            "worst_bound_mb": round(worst["memory_bound_bytes"] / 2**20, 1),
            "memory_ok": all(
                r["peak_bytes"] <= r["memory_bound_bytes"] for r in rows if r["variant"] == variant
            ),
        }
    return {
        "softhsm": softhsm_version(),
        "cpus": os.cpu_count(),
        "repeat": repeat,
        "rows": rows,
        "targets": targets,
        "elapsed_s": round(time.perf_counter() - started, 1),
    }


def report(summary: dict[str, Any]) -> str:
    lines = [
        f"SoftHSM {summary['softhsm']}, {summary['cpus']} CPUs; median of "
        f"{summary['repeat']} documents per cell, each measurement in a fresh process",
        "",
        f"{'pages':>6} {'MB':>7}  {'variant':<12} {'s/doc':>8} {'vs pyHanko':>11} "
        f"{'peak MB':>8} {'added MB':>9} {'bound MB':>9}",
    ]
    rows = summary["rows"]
    for row in rows:
        baseline = next(
            r["seconds"]
            for r in rows
            if r["pages"] == row["pages"] and r["variant"] == "pyhanko B-B"
        )
        lines.append(
            f"{row['pages']:>6} {row['bytes'] / 2**20:>7.1f}  {row['variant']:<12} "
            f"{row['seconds']:>8.3f} {baseline / row['seconds']:>10.1f}x "
            f"{row['peak_bytes'] / 2**20:>8.1f} {row['added_bytes'] / 2**20:>9.1f} "
            f"{row['memory_bound_bytes'] / 2**20:>9.1f}"
        )
    lines.append("")
    for variant, target in summary["targets"].items():
        lines.append(
            f"{variant}: s/page at the largest size / at the middle size = "
            f"{target['linearity']:.2f} (target <= {LINEARITY_TOLERANCE}) "
            f"{'PASS' if target['linear'] else 'MISS'}; peak memory within 2 x size + 150 MB "
            f"(worst {target['worst_peak_mb']} of {target['worst_bound_mb']} MB) "
            f"{'PASS' if target['memory_ok'] else 'MISS'}; "
            f"{target['vs_pyhanko_largest']}x pyHanko B-B at the largest size"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pages", default="50,125,250,500")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    summary = run([int(p) for p in args.pages.split(",")], args.repeat)
    print(report(summary))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
