"""HTTP latency of one-shot signing: p99 of ``POST /api/v1/sign`` at half the maximum rate.

Run from the repository root::

    .venv/bin/python -m bench.http_bench [--seconds 10] [--level B-LT]

A real ``kyso serve`` (one process, SQLite) on a throwaway SoftHSM2 token, set up with
``kyso init --demo``; the client signs the 1-page PDF with the demo officer's credential and
PIN (the PIN is checked on every request, as the service does). Two phases:

1. **Maximum rate**: 8 clients in a closed loop for ``--seconds``.
2. **Half that rate**, open loop, after a pause of 3 s: requests are sent on a fixed
   schedule whatever the answers, and each latency is measured from the request's
   scheduled time (no coordinated omission). The same schedule against ``GET /healthz``
   is the baseline measured in the same run: what HTTP alone costs here.

Target: p99 < 50 ms for signing. Client and server share the machine's cores. The exit
status is 0 whatever the figures; the JSON summary is the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pyotp

from bench.environment import new_token, softhsm_version, throwaway_softhsm
from bench.signer_bench import one_page_pdf

P99_TARGET_MS = 50.0
CLIENTS = 8
SETTLE_SECONDS = 3.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class _Server:
    """``kyso init --demo`` then ``kyso serve`` in a throwaway data directory."""

    def __init__(self, root: Path, label: str, pin_file: Path, level: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        kyso = Path(sys.executable).with_name("kyso")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("KYSO_")} | {
            "KYSO_DATA_DIR": str(root / "data"),
            "KYSO_HSM_TOKEN_LABEL": label,
            "KYSO_HSM_PIN_FILE": str(pin_file),
            "KYSO_PUBLIC_URL": self.url,
            "KYSO_SIGNING_LEVEL": level,
            "KYSO_LOG_LEVEL": os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
            # The bench measures signing, not the per-caller limits that protect it.
            "KYSO_RATE_SIGN_PER_MINUTE": "100000",
            "KYSO_RATE_AUTHORIZE_PER_MINUTE": "10000",
        }
        subprocess.run([str(kyso), "init", "--demo"], env=self.env, check=True, capture_output=True)
        self.demo = json.loads((root / "data" / "demo.json").read_text(encoding="utf-8"))
        self.log = (root / "serve.log").open("wb")
        self.process = subprocess.Popen(
            [str(kyso), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.close()
        raise RuntimeError("kyso serve did not become ready")

    def officer(self) -> tuple[int, str, dict[str, str]]:
        """The demo officer whose credential is activated by its PIN alone (an inline PIN
        per request, as a desk application sends it), that PIN, and the account's sign-in
        (password and TOTP code, as a person signs in)."""
        policies = self.demo["activation"]["by_credential"]
        pins = self.demo["signing_pins"]["by_credential"]
        for unit in self.demo["units"]:
            for person in unit["people"]:
                for credential_id in person["credential_ids"]:
                    if policies.get(str(credential_id)) != "pin":
                        continue
                    account = next(
                        a
                        for a in self.demo["accounts"]
                        if a["role"] == "officer" and a["unit"] == unit["code"]
                    )
                    login = {
                        "username": account["username"],
                        "password": account["password"],
                        "otp": pyotp.TOTP(account["totp_secret"]).now(),
                    }
                    return int(credential_id), str(pins[str(credential_id)]), login
        raise RuntimeError("demo.json names no officer credential activated by its PIN")

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


async def _closed_loop(send: Any, seconds: float) -> float:
    deadline = time.perf_counter() + seconds
    count = 0

    async def client() -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            await send()
            count += 1

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return count / (time.perf_counter() - start)


async def _open_loop(send: Any, rate: float, seconds: float) -> list[float]:
    """Latencies (ms) from each request's scheduled time, at ``rate`` per second."""
    interval = 1 / rate
    total = int(rate * seconds)
    start = time.perf_counter() + 0.05
    latencies: list[float] = []

    async def one(scheduled: float) -> None:
        await send()
        latencies.append((time.perf_counter() - scheduled) * 1000)

    tasks = []
    for i in range(total):
        scheduled = start + i * interval
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    return latencies


async def _measure(server: _Server, seconds: float) -> dict[str, Any]:
    credential_id, pin, login = server.officer()
    pdf = one_page_pdf()
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=server.url, timeout=30, limits=limits) as client:
        signed_in = await client.post("/api/v1/auth/login", json=login)
        if signed_in.status_code != 200:
            raise RuntimeError(f"sign-in failed: {signed_in.status_code} {signed_in.text[:300]}")
        client.headers["X-CSRF-Token"] = signed_in.json()["csrf_token"]

        async def sign() -> None:
            response = await client.post(
                "/api/v1/sign",
                files={"file": ("draft.pdf", pdf, "application/pdf")},
                data={"credential_id": str(credential_id), "pin": pin},
            )
            if response.status_code != 200 or not response.content.startswith(b"%PDF"):
                raise RuntimeError(f"sign failed: {response.status_code} {response.text[:300]}")

        async def health() -> None:
            response = await client.get("/healthz")
            if response.status_code != 200:
                raise RuntimeError(f"healthz failed: {response.status_code}")

        for _ in range(20):  # warm up: credential preparation, TSA reserve, connections
            await sign()
        maximum = await _closed_loop(sign, seconds)
        rate = maximum / 2
        # Let the saturation phase's aftermath settle (the write-ahead log it grew is
        # checkpointed, garbage collected): the target is about the steady state.
        await asyncio.sleep(SETTLE_SECONDS)
        signing = await _open_loop(sign, rate, seconds)
        baseline = await _open_loop(health, rate, seconds)

    def summary(latencies: list[float]) -> dict[str, float]:
        return {
            "p50_ms": round(statistics.median(latencies), 1),
            "p95_ms": round(_percentile(latencies, 0.95), 1),
            "p99_ms": round(_percentile(latencies, 0.99), 1),
            "max_ms": round(max(latencies), 1),
            "requests": len(latencies),
        }

    return {
        "max_rate_per_s": round(maximum, 1),
        "rate_per_s": round(rate, 1),
        "sign": summary(signing),
        "healthz": summary(baseline),
    }


def run(seconds: float, level: str) -> dict[str, Any]:
    softhsm_dir = throwaway_softhsm()
    started = time.perf_counter()
    server: _Server | None = None
    try:
        label, pin_file = new_token(softhsm_dir)
        server = _Server(softhsm_dir, label, pin_file, level)
        measured = asyncio.run(_measure(server, seconds))
    finally:
        if server is not None:
            server.close()
        if os.environ.get("BENCH_KEEP_LOG"):
            shutil.copy(softhsm_dir / "serve.log", os.environ["BENCH_KEEP_LOG"])
        shutil.rmtree(softhsm_dir, ignore_errors=True)
    p99 = measured["sign"]["p99_ms"]
    return {
        "softhsm": softhsm_version(),
        "cpus": os.cpu_count(),
        "level": level,
        "seconds_per_phase": seconds,
        **measured,
        "targets": {"p99": {"ms": p99, "target_ms": P99_TARGET_MS, "pass": p99 < P99_TARGET_MS}},
        "elapsed_s": round(time.perf_counter() - started, 1),
    }


def report(summary: dict[str, Any]) -> str:
    sign, health = summary["sign"], summary["healthz"]
    target = summary["targets"]["p99"]
    return "\n".join(
        [
            f"SoftHSM {summary['softhsm']}, {summary['cpus']} CPUs, one kyso serve process "
            f"(SQLite), PAdES {summary['level']}, signed in as the officer, the credential "
            "activated by its PIN in each request",
            f"maximum rate, {CLIENTS} clients in a closed loop: "
            f"{summary['max_rate_per_s']:.0f} signatures/s",
            f"open loop at half of it ({summary['rate_per_s']:.0f}/s) for "
            f"{summary['seconds_per_phase']} s, latency from the scheduled send time:",
            f"  POST /api/v1/sign  p50 {sign['p50_ms']} ms  p95 {sign['p95_ms']} ms  "
            f"p99 {sign['p99_ms']} ms  max {sign['max_ms']} ms  ({sign['requests']} requests)",
            f"  GET /healthz       p50 {health['p50_ms']} ms  p95 {health['p95_ms']} ms  "
            f"p99 {health['p99_ms']} ms  (baseline: HTTP alone, same schedule)",
            f"p99 of a sign request = {target['ms']} ms (target < {target['target_ms']:.0f} ms) "
            f"{'PASS' if target['pass'] else 'MISS'}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--level", default="B-LT", choices=["B-B", "B-T", "B-LT", "B-LTA"])
    args = parser.parse_args(argv)
    summary = run(args.seconds, args.level)
    print(report(summary))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
