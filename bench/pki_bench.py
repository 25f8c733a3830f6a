"""OCSP and TSA throughput against the raw HSM signature they each need.

Run from the repository root::

    .venv/bin/python -m bench.pki_bench [--seconds 1] [--rounds 7] [--clients 8] [--no-http]

Set-up, all throwaway: a SoftHSM2 token in a temporary directory, a SQLite database, the CA
hierarchy (:meth:`Authority.ensure_hierarchy`: root, issuing CA, OCSP responder and TSA keys
on the token, ECDSA P-256) and one enrolled officer whose certificate is asked about.

Variants, each run for ``--seconds`` per round:

- ``raw-sign``: the baseline, ``BlockingSessionPool.sign_digest`` with the OCSP responder's
  key, one thread: what one signed answer cannot go below.
- ``ocsp-nonce``: ``PkiServices.ocsp`` with a fresh nonce per request (a nonce makes every
  response unique: status lookup plus one signature each), one thread.
- ``ocsp-cached``: ``PkiServices.ocsp`` repeating one request without a nonce: served from
  the process's cache after one indexed read of the status generation, no signature.
- ``tsa``: ``TimeStampAuthority.respond`` (serial from the database, one signature), one
  thread.
- ``http-*``: the same three through a ``kyso serve`` process on 127.0.0.1 with ``--clients``
  kept-alive connections (a minimal HTTP/1.1 client on one asyncio loop), and
  ``GET /healthz`` as the floor of Kyso's HTTP stack itself. The client runs on the same two
  cores as the server, so these figures are a floor for what the service does for separate
  clients.

The variants are interleaved, in an order that rotates and reverses from round to round; the
report gives the median over the rounds, and each ratio to ``raw-sign`` as the median of the
per-round ratios (both sides of a ratio ran in the same round, seconds apart). One answer per
variant and round is parsed and checked (status, nonce echoed, certificate status good; token
granted): a fast wrong answer is no result.

Targets, both about the OCSP cache (what it is for: an indexed one-row read instead of a
signed answer): a cached answer is at least 10 times cheaper than a fresh one (``ocsp-cached``
≥ 10 × ``ocsp-nonce``) and cheaper than the raw signature alone (``ocsp-cached`` ≥
``raw-sign``). Both are judged on per-round pairs. The exit status is 0 whatever the figures;
targets are marked PASS or MISS. The JSON summary is the last line of stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.environment import enroll_officer, new_token, softhsm_version, throwaway_softhsm

if TYPE_CHECKING:
    from cryptography import x509

TARGETS = {"ocsp_cached_vs_ocsp_nonce": 10.0, "ocsp_cached_vs_raw_sign": 1.0}
REQUESTS_PREBUILT = 4096
"""Distinct nonce-bearing requests built before measuring, used round-robin."""

IN_PROCESS = ("raw-sign", "ocsp-nonce", "ocsp-cached", "tsa")
OVER_HTTP = ("http-healthz", "http-ocsp-nonce", "http-ocsp-cached", "http-tsa")
DIGEST = hashlib.sha256("Giấy xác nhận thông tin về cư trú".encode()).digest()


def _ocsp_request(cert: x509.Certificate, issuer: x509.Certificate, nonce: bytes | None) -> bytes:
    from cryptography import x509 as cx509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509 import ocsp

    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1())
    if nonce is not None:
        builder = builder.add_extension(cx509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def _tsa_request() -> bytes:
    from asn1crypto import tsp

    der: bytes = tsp.TimeStampReq(
        {
            "version": "v1",
            "message_imprint": {
                "hash_algorithm": {"algorithm": "sha256"},
                "hashed_message": hashlib.sha256(secrets.token_bytes(32)).digest(),
            },
            "nonce": int.from_bytes(secrets.token_bytes(8), "big"),
            "cert_req": True,
        }
    ).dump()
    return der


def _check_ocsp(der: bytes, request: bytes) -> None:
    """Successful, signed, ``good``, and the nonce (if any) echoed."""
    from asn1crypto import ocsp

    response = ocsp.OCSPResponse.load(der)
    assert response["response_status"].native == "successful", response["response_status"]
    basic = response["response_bytes"]["response"].parsed
    data = basic["tbs_response_data"]
    assert data["responses"][0]["cert_status"].name == "good"
    asked = ocsp.OCSPRequest.load(request)["tbs_request"]
    nonce = {e["extn_id"].native: e["extn_value"].native for e in asked["request_extensions"]}
    echoed = {e["extn_id"].native: e["extn_value"].native for e in data["response_extensions"]}
    assert nonce.get("nonce") == echoed.get("nonce")


def _check_tsa(der: bytes) -> None:
    """Granted, with a token whose TSTInfo is for a SHA-256 imprint."""
    from asn1crypto import tsp

    reply = tsp.TimeStampResp.load(der)
    assert reply["status"]["status"].native == "granted", reply["status"].native
    signed_data = reply["time_stamp_token"]["content"]
    tst_info = signed_data["encap_content_info"]["content"].parsed
    assert isinstance(tst_info, tsp.TSTInfo)
    assert tst_info["message_imprint"]["hash_algorithm"]["algorithm"].native == "sha256"


def _rate(call: Callable[[], object], duration: float) -> float:
    start = time.perf_counter()
    deadline = start + duration
    count = 0
    while time.perf_counter() < deadline:
        call()
        count += 1
    return count / (time.perf_counter() - start)


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes]:
    """One HTTP/1.1 request on a kept-alive connection: (status, body)."""
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *fields = head.decode("latin-1").split("\r\n")
    length = 0
    for line in fields:
        name, _, value = line.partition(":")
        if name.lower() == "content-length":
            length = int(value)
    return int(status_line.split(" ", 2)[1]), await reader.readexactly(length)


async def _http_rate(
    port: int, path: str, bodies: list[bytes], media_type: str, clients: int, duration: float
) -> tuple[float, bytes, bytes]:
    """Responses/s with ``clients`` kept-alive connections each with one request in flight
    (POSTs of ``bodies`` in turn, or GETs when there are none); the last (request, response).

    A minimal HTTP/1.1 client over asyncio streams: httpx on the same two cores tops out near
    700 requests/s against a bare FastAPI app, and would measure itself rather than Kyso.
    """
    host = f"127.0.0.1:{port}"
    cycle = itertools.cycle(bodies)
    counts = [0] * clients
    last: list[tuple[bytes, bytes]] = []

    async def loop(index: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            deadline = time.perf_counter() + duration
            while time.perf_counter() < deadline:
                body = next(cycle, b"")
                if body:
                    head = (
                        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {media_type}"
                        f"\r\nContent-Length: {len(body)}\r\n\r\n"
                    )
                else:
                    head = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n"
                async with asyncio.timeout(30):
                    status, content = await _exchange(reader, writer, head.encode() + body)
                if status != 200:
                    raise RuntimeError(f"{path}: HTTP {status}")
                counts[index] += 1
                if index == 0:
                    last[:] = [(body, content)]
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(loop(i) for i in range(clients)))
    elapsed = time.perf_counter() - start
    return sum(counts) / elapsed, *last[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _start_server(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    import httpx2 as httpx

    kyso = shutil.which("kyso", path=str(Path(sys.executable).parent)) or shutil.which("kyso")
    if kyso is None:
        raise RuntimeError("the kyso console script is not installed next to the interpreter")
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [kyso, "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"kyso serve exited with {process.returncode}: {log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    _stop_server(process)
    raise RuntimeError(f"kyso serve not ready within 30 s: {log.read_text()}")


def _stop_server(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run(seconds: float, rounds: int, clients: int, http: bool) -> dict[str, Any]:
    root = throwaway_softhsm()
    # SOFTHSM2_CONF is read when the module is loaded: import hsm (and what uses it) only now.
    from cryptography import x509 as cx509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    from audit.events import Actor
    from hsm import BlockingSessionPool, HashAlg, SignScheme
    from kyso import db
    from kyso.pki_service import PkiServices, make_authority
    from kyso.settings import load_settings

    label, pin_file = new_token(root)
    data_dir = root / "data"
    data_dir.mkdir()
    port = _free_port()
    settings = load_settings(
        data_dir=data_dir,
        hsm_token_label=label,
        hsm_pin_file=pin_file,
        database_url=f"sqlite:///{data_dir / 'kyso.db'}",
        public_url=f"http://127.0.0.1:{port}",
    )
    engine = db.make_engine(settings.sqlalchemy_url)
    db.upgrade(engine)
    pool = BlockingSessionPool(settings.hsm_config())
    pool.open()
    process: subprocess.Popen[bytes] | None = None
    loop = asyncio.new_event_loop()
    started = time.perf_counter()
    try:
        actor = Actor(id="bench", role="system-admin")
        authority = make_authority(settings, engine, pool)
        officer = enroll_officer(authority, actor)
        assert officer.certificate is not None

        services = PkiServices(authority, settings)
        tsa = services.tsa()
        ocsp_signer = authority.ocsp_responder().signer
        ocsp_key = ocsp_signer.key_id
        ocsp_public = load_der_public_key(ocsp_signer.public_key.dump())
        assert isinstance(ocsp_public, ec.EllipticCurvePublicKey)
        officer_cert = cx509.load_der_x509_certificate(officer.certificate.dump())
        issuer_cert = cx509.load_der_x509_certificate(authority.internal_chain()[0].dump())
        with_nonce = [
            _ocsp_request(officer_cert, issuer_cert, secrets.token_bytes(16))
            for _ in range(REQUESTS_PREBUILT)
        ]
        without_nonce = _ocsp_request(officer_cert, issuer_cert, None)
        tsa_requests = [_tsa_request() for _ in range(REQUESTS_PREBUILT)]

        def raw_sign() -> bytes:
            return pool.sign_digest(
                ocsp_key, DIGEST, scheme=SignScheme.ECDSA, hash_alg=HashAlg.SHA256
            )

        def in_process(name: str, duration: float) -> float:
            if name == "raw-sign":
                rate = _rate(raw_sign, duration)
                ocsp_public.verify(raw_sign(), DIGEST, ec.ECDSA(Prehashed(hashes.SHA256())))
                return rate
            if name == "ocsp-nonce":
                nonce_cycle = itertools.cycle(with_nonce)
                rate = _rate(lambda: services.ocsp(next(nonce_cycle)), duration)
                _check_ocsp(services.ocsp(with_nonce[0]), with_nonce[0])
                return rate
            if name == "ocsp-cached":
                rate = _rate(lambda: services.ocsp(without_nonce), duration)
                _check_ocsp(services.ocsp(without_nonce), without_nonce)
                return rate
            tsa_cycle = itertools.cycle(tsa_requests)
            rate = _rate(lambda: tsa.respond(next(tsa_cycle)), duration)
            _check_tsa(tsa.respond(tsa_requests[0]).der)
            return rate

        over_http: dict[str, tuple[str, list[bytes], str]] = {
            "http-healthz": ("/healthz", [], ""),
            "http-ocsp-nonce": ("/pki/ocsp", with_nonce, "application/ocsp-request"),
            "http-ocsp-cached": ("/pki/ocsp", [without_nonce], "application/ocsp-request"),
            "http-tsa": ("/tsa", tsa_requests, "application/timestamp-query"),
        }

        def via_http(name: str, duration: float) -> float:
            path, bodies, media_type = over_http[name]
            rate, request, response = loop.run_until_complete(
                _http_rate(port, path, bodies, media_type, clients, duration)
            )
            if "ocsp" in name:
                _check_ocsp(response, request)
            elif "tsa" in name:
                _check_tsa(response)
            else:
                assert json.loads(response) == {"status": "ok"}
            return rate

        variants = list(IN_PROCESS)
        if http:
            env = {k: v for k, v in os.environ.items() if not k.startswith("KYSO_")}
            env |= {
                "SOFTHSM2_CONF": os.environ["SOFTHSM2_CONF"],
                "KYSO_DATA_DIR": str(data_dir),
                "KYSO_DATABASE_URL": settings.sqlalchemy_url,
                "KYSO_HSM_TOKEN_LABEL": label,
                "KYSO_HSM_PIN_FILE": str(pin_file),
                "KYSO_PUBLIC_URL": settings.base_url,
            }
            process = _start_server(env, port, root / "serve.log")
            variants += OVER_HTTP

        def measure(name: str, duration: float) -> float:
            return (
                via_http(name, duration) if name.startswith("http-") else in_process(name, duration)
            )

        # Warm-up: first-call costs (key lookups, caches, connections) stay out of the samples.
        for name in variants:
            measure(name, min(0.2, seconds))
        samples: dict[str, list[float]] = {name: [] for name in variants}
        for round_no in range(rounds):
            shift = round_no % len(variants)
            order = variants[shift:] + variants[:shift]
            if round_no % 2:
                order.reverse()
            for name in order:
                samples[name].append(measure(name, seconds))
            print(f"round {round_no + 1}/{rounds} done", file=sys.stderr, flush=True)
    finally:
        if process is not None:
            _stop_server(process)
        loop.close()
        pool.close()
        engine.dispose()
        shutil.rmtree(root, ignore_errors=True)

    results: dict[str, dict[str, Any]] = {}
    raw = samples["raw-sign"]
    for name, values in samples.items():
        results[name] = {
            "median_per_s": round(statistics.median(values), 1),
            "vs_raw_sign": round(
                statistics.median(v / r for v, r in zip(values, raw, strict=True)), 3
            ),
            "samples": [round(v, 1) for v in values],
        }
    fresh = samples["ocsp-nonce"]
    ratios = {
        "ocsp_cached_vs_ocsp_nonce": round(
            statistics.median(c / f for c, f in zip(samples["ocsp-cached"], fresh, strict=True)),
            3,
        ),
        "ocsp_cached_vs_raw_sign": results["ocsp-cached"]["vs_raw_sign"],
    }
    return {
        "softhsm": softhsm_version(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "key": "ec-p256",
        "database": "sqlite",
        "rounds": rounds,
        "seconds_per_variant": seconds,
        "http_clients": clients if http else None,
        "elapsed_s": round(time.perf_counter() - started, 1),
        "results": results,
        "targets": {
            name: {"ratio": ratio, "target": TARGETS[name], "pass": ratio >= TARGETS[name]}
            for name, ratio in ratios.items()
        },
    }


DESCRIPTIONS = {
    "raw-sign": "raw ECDSA P-256 sign (pool, 1 thread)",
    "ocsp-nonce": "OCSP, nonce (1 thread)",
    "ocsp-cached": "OCSP, no nonce, cached (1 thread)",
    "tsa": "TSA token (1 thread)",
    "http-healthz": "HTTP GET /healthz (the HTTP floor)",
    "http-ocsp-nonce": "HTTP OCSP, nonce",
    "http-ocsp-cached": "HTTP OCSP, no nonce, cached",
    "http-tsa": "HTTP TSA token",
}


def report(summary: dict[str, Any]) -> str:
    clients = summary["http_clients"]
    lines = [
        f"SoftHSM {summary['softhsm']}, {summary['cpus']} CPUs, Python {summary['python']}, "
        f"keys {summary['key']}, database {summary['database']}",
        f"{summary['rounds']} interleaved rounds of {summary['seconds_per_variant']} s per "
        "variant; medians over the rounds"
        + (f"; HTTP with {clients} concurrent clients" if clients else ""),
        "",
        f"{'':<40} {'per s':>9} {'vs raw sign':>12}   per-round samples",
    ]
    for name, row in summary["results"].items():
        spread = " ".join(f"{s:.0f}" for s in row["samples"])
        lines.append(
            f"  {DESCRIPTIONS[name]:<38} {row['median_per_s']:>9.0f} {row['vs_raw_sign']:>12.2f}"
            f"   {spread}"
        )
    lines.append("")
    for name, why in (
        ("ocsp_cached_vs_ocsp_nonce", "cached OCSP / fresh OCSP answer"),
        ("ocsp_cached_vs_raw_sign", "cached OCSP / raw signature"),
    ):
        target = summary["targets"][name]
        verdict = "PASS" if target["pass"] else "MISS"
        lines.append(
            f"{why} = {target['ratio']:.2f} per-round pairs "
            f"(target >= {target['target']:.2f}) {verdict}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--seconds", type=float, default=1.0, help="seconds per variant and round (default 1)"
    )
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    parser.add_argument(
        "--clients", type=int, default=8, help="concurrent HTTP requests (default 8)"
    )
    parser.add_argument("--no-http", action="store_true", help="skip the kyso serve variants")
    args = parser.parse_args(argv)
    summary = run(
        max(0.05, args.seconds), max(1, args.rounds), max(1, args.clients), not args.no_http
    )
    print(report(summary))
    print(f"\ntotal {summary['elapsed_s']} s")
    print(json.dumps(summary, ensure_ascii=False, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
