"""Timestamp tokens: Kyso's hand-encoded TSA against the asn1crypto construction it replaced.

Run from the repository root::

    .venv/bin/python -m bench.tsa_bench [--seconds 1] [--rounds 7]

Set-up, all throwaway: a SoftHSM2 token in a temporary directory, a SQLite database and the
CA hierarchy (:meth:`Authority.ensure_hierarchy`: the TSA key on the token, ECDSA P-256);
the TSA is :meth:`Authority.timestamp_authority`, serials from the database.

The old code is gone, so "before" is measured against :class:`Asn1cryptoTokens`: the
token construction Kyso used until the tokens were hand-encoded, kept here verbatim (the
tests use it as the reference the hand-encoded tokens must equal byte for byte). Variants,
each run for ``--seconds`` per round, one thread, on the same prebuilt requests:

- ``hsm-sign``: the TSA key's signature alone (``X509Signer.sign`` of a signed-attributes
  sized input): what a token cannot go below.
- ``request-parse``: the strict request parsing both constructions share (load, decode
  every field, re-encode as DER).
- ``respond-no-hsm``: ``TimeStampAuthority.respond`` with a signer that returns a fixed
  signature: parsing, checking and encoding, without the HSM.
- ``respond``: ``TimeStampAuthority.respond``, hand-encoded tokens.
- ``respond-asn1crypto``: the same parsing and the asn1crypto construction.
- ``timestamper``: ``TsaTimestamper.__call__`` (request, ``respond``, answer checked, token
  sliced out): what a B-T signature pays for its timestamp.
- ``timestamper-asn1crypto``: the timestamper as it was (asn1crypto request, the answer read
  with asn1crypto, the token re-dumped) over ``respond-asn1crypto``.

Rounds are interleaved (the order rotates and reverses from round to round) and the report
gives medians over the rounds and the ratios as medians of per-round pairs: the machine
has 2 cores and other work runs on it. The exit status is 0; the JSON summary is the last
line of stdout.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import platform
import secrets
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar

from asn1crypto import algos, cms, core, keys, tsp
from asn1crypto import x509 as asn1_x509

from bench.environment import new_token, softhsm_version, throwaway_softhsm

if TYPE_CHECKING:
    from pki.keysource import X509Signer
    from pki.tsa import TimeStampAuthority

REQUESTS_PREBUILT = 1024
"""Distinct requests (random imprint and nonce, certReq) used round-robin."""


# -- the reference: how tokens were built with asn1crypto ----------------------------------


class _TimeStampResp(core.Sequence):  # type: ignore[misc]
    # asn1crypto's own makes timeStampToken mandatory; this is RFC 3161's
    _fields: ClassVar[list[tuple[Any, ...]]] = [
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


def parsed_request(request_der: bytes) -> tsp.TimeStampReq:
    """A request as the TSA's check leaves it: strictly loaded, every field decoded, and
    re-encoded as DER."""
    request = tsp.TimeStampReq.load(request_der, strict=True)
    request.native  # noqa: B018
    return tsp.TimeStampReq.load(request.dump(force=True))


@dataclass(frozen=True)
class Asn1cryptoTokens:
    """The TimeStampResp of a granted request, built from asn1crypto values as Kyso's TSA
    did before its tokens were hand-encoded (the same code, from the TSA's public fields).
    """

    tsa: TimeStampAuthority
    _certificate: asn1_x509.Certificate = field(init=False, repr=False)
    _certificates: list[asn1_x509.Certificate] = field(init=False, repr=False)
    _accuracy: tsp.Accuracy = field(init=False, repr=False)
    _ess_cert_id: tsp.ESSCertIDv2 = field(init=False, repr=False)

    def __post_init__(self) -> None:
        from pki.certificates import from_cryptography

        certificate = from_cryptography(self.tsa.certificate)
        accuracy = {
            "seconds": int(self.tsa.accuracy.total_seconds()),
            "millis": self.tsa.accuracy.microseconds // 1000,
            "micros": self.tsa.accuracy.microseconds % 1000,
        }
        ess_cert_id = tsp.ESSCertIDv2(
            {
                "cert_hash": hashlib.sha256(certificate.dump()).digest(),
                "issuer_serial": {
                    "issuer": [
                        asn1_x509.GeneralName(name="directory_name", value=certificate.issuer)
                    ],
                    "serial_number": certificate.serial_number,
                },
            }
        )
        values = {
            "_certificate": certificate,
            "_certificates": [certificate, *map(from_cryptography, self.tsa.chain)],
            "_accuracy": tsp.Accuracy({name: n for name, n in accuracy.items() if n}),
            "_ess_cert_id": tsp.ESSCertIDv2.load(ess_cert_id.dump()),
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def grant(self, request: tsp.TimeStampReq, *, serial: int, gen_time: datetime) -> bytes:
        """The DER TimeStampResp for ``request`` (as :func:`parsed_request` returns it);
        ``gen_time`` in UTC, whole milliseconds."""
        certificate = self._certificate
        signer = self.tsa.signer
        tst_info = tsp.TSTInfo(
            {
                "version": "v1",
                "policy": request["req_policy"].native or self.tsa.policy,
                "message_imprint": request["message_imprint"],
                "serial_number": serial,
                "gen_time": gen_time,
                "accuracy": self._accuracy,
                "nonce": request["nonce"].native,
                "tsa": asn1_x509.GeneralName(
                    name="directory_name",
                    value=asn1_x509.Name.load(certificate.subject.dump()),
                ),
            }
        )
        tst_der = tst_info.dump()
        digest_algorithm = signer.algorithm.hash_algo
        signed_attrs = cms.CMSAttributes(
            [
                {"type": "content_type", "values": ["tst_info"]},
                {
                    "type": "message_digest",
                    "values": [hashlib.new(digest_algorithm, tst_der).digest()],
                },
                {"type": "signing_certificate_v2", "values": [{"certs": [self._ess_cert_id]}]},
            ]
        )
        signer_info = {
            "version": "v1",
            "sid": cms.SignerIdentifier(
                name="issuer_and_serial_number",
                value={
                    "issuer": asn1_x509.Name.load(certificate.issuer.dump()),
                    "serial_number": certificate.serial_number,
                },
            ),
            "digest_algorithm": {"algorithm": digest_algorithm},
            "signed_attrs": signed_attrs,
            "signature_algorithm": signer.algorithm,
            "signature": signer.sign(signed_attrs.dump()),
        }
        signed_data: dict[str, object] = {
            "version": "v3",
            "digest_algorithms": [{"algorithm": digest_algorithm}],
            "encap_content_info": {
                "content_type": "tst_info",
                "content": core.ParsableOctetString(tst_der),
            },
            "signer_infos": [signer_info],
        }
        if request["cert_req"].native:
            signed_data["certificates"] = [
                asn1_x509.Certificate.load(c.dump()) for c in self._certificates
            ]
        der: bytes = _TimeStampResp(
            {
                "status": {"status": "granted"},
                "time_stamp_token": {"content_type": "signed_data", "content": signed_data},
            }
        ).dump()
        return der

    def respond(self, request_der: bytes) -> bytes:
        """Parse and grant as the TSA did (serial and clock from the TSA)."""
        request = parsed_request(request_der)
        now = self.tsa.clock().astimezone(UTC)
        gen_time = now.replace(microsecond=now.microsecond // 1000 * 1000)
        return self.grant(request, serial=self.tsa.serials(), gen_time=gen_time)


def asn1crypto_timestamp(respond: Callable[[bytes], bytes], digest: bytes) -> bytes:
    """``TsaTimestamper.__call__`` as it was: asn1crypto request, answer read with
    asn1crypto, token re-dumped."""
    nonce = secrets.randbits(62) | (1 << 62)
    request = tsp.TimeStampReq(
        {
            "version": "v1",
            "message_imprint": {
                "hash_algorithm": {"algorithm": "sha256"},
                "hashed_message": digest,
            },
            "nonce": nonce,
            "cert_req": True,
        }
    ).dump()
    response = tsp.TimeStampResp.load(respond(request))
    token: cms.ContentInfo = response["time_stamp_token"]
    tst_info = token["content"]["encap_content_info"]["content"].parsed
    imprint = tst_info["message_imprint"]
    if not (
        response["status"]["status"].native == "granted"
        and imprint["hash_algorithm"]["algorithm"].native == "sha256"
        and imprint["hashed_message"].native == digest
        and tst_info["nonce"].native == nonce
    ):
        raise AssertionError("the reference token does not answer its request")
    der: bytes = token.dump()
    return der


@dataclass(frozen=True)
class FixedSignatureSigner:
    """An X509Signer whose signature is a constant of a real signature's size: the TSA's
    work without the HSM."""

    signer: X509Signer
    signature: bytes

    @property
    def algorithm(self) -> algos.SignedDigestAlgorithm:
        return self.signer.algorithm

    @property
    def public_key(self) -> keys.PublicKeyInfo:
        return self.signer.public_key

    @property
    def key_id(self) -> bytes:
        return self.signer.key_id

    def sign(self, data: bytes) -> bytes:
        return self.signature


# -- the benchmark -------------------------------------------------------------------------


def _request(rng: secrets.SystemRandom) -> bytes:
    der: bytes = tsp.TimeStampReq(
        {
            "version": "v1",
            "message_imprint": {
                "hash_algorithm": {"algorithm": "sha256"},
                "hashed_message": rng.randbytes(32),
            },
            "nonce": rng.getrandbits(63),
            "cert_req": True,
        }
    ).dump()
    return der


def _rate(call: Callable[[], object], duration: float) -> float:
    start = time.perf_counter()
    deadline = start + duration
    count = 0
    while time.perf_counter() < deadline:
        call()
        count += 1
    return count / (time.perf_counter() - start)


VARIANTS = (
    "hsm-sign",
    "request-parse",
    "respond-no-hsm",
    "respond",
    "respond-asn1crypto",
    "timestamper",
    "timestamper-asn1crypto",
)
DESCRIPTIONS = {
    "hsm-sign": "HSM signature alone (TSA key)",
    "request-parse": "request parsing (both constructions)",
    "respond-no-hsm": "respond(), fixed signature (no HSM)",
    "respond": "respond(), hand-encoded",
    "respond-asn1crypto": "respond(), asn1crypto construction",
    "timestamper": "TsaTimestamper call, hand-encoded",
    "timestamper-asn1crypto": "TsaTimestamper call, asn1crypto",
}
PAIRS = {"respond": "respond-asn1crypto", "timestamper": "timestamper-asn1crypto"}


def run(seconds: float, rounds: int) -> dict[str, Any]:
    root = throwaway_softhsm()
    # SOFTHSM2_CONF is read when the module is loaded: import hsm (and what uses it) only now.
    from audit.events import Actor
    from hsm import BlockingSessionPool, HsmConfig, PinSource
    from kyso import db
    from pki.authority import Authority, AuthorityConfig
    from signer.timestamps import TsaTimestamper

    label, pin_file = new_token(root)
    config = HsmConfig(token_label=label, pin=PinSource(file=pin_file), pool_size=2)
    engine = db.make_engine(f"sqlite:///{root / 'kyso.db'}")
    db.upgrade(engine)
    pool = BlockingSessionPool(config)
    pool.open()
    started = time.perf_counter()
    try:
        authority = Authority(
            engine=engine, pool=pool, config=AuthorityConfig(public_url="http://127.0.0.1:8000")
        )
        authority.ensure_hierarchy(Actor(id="bench", role="system-admin"))
        tsa = authority.timestamp_authority()
        reference = Asn1cryptoTokens(tsa)
        rng = secrets.SystemRandom()
        requests = [_request(rng) for _ in range(REQUESTS_PREBUILT)]
        to_sign = rng.randbytes(200)  # about the size of the signed attributes
        no_hsm = replace(tsa, signer=FixedSignatureSigner(tsa.signer, tsa.signer.sign(to_sign)))
        timestamper = TsaTimestamper(respond=tsa.respond)
        digests = [rng.randbytes(32) for _ in range(REQUESTS_PREBUILT)]

        def cycling(call: Callable[[Any], object], inputs: Sequence[Any]) -> Callable[[], object]:
            items = itertools.cycle(inputs)
            return lambda: call(next(items))

        calls: dict[str, Callable[[], object]] = {
            "hsm-sign": lambda: tsa.signer.sign(to_sign),
            "request-parse": cycling(parsed_request, requests),
            "respond-no-hsm": cycling(no_hsm.respond, requests),
            "respond": cycling(tsa.respond, requests),
            "respond-asn1crypto": cycling(reference.respond, requests),
            "timestamper": cycling(timestamper, digests),
            "timestamper-asn1crypto": cycling(
                lambda digest: asn1crypto_timestamp(reference.respond, digest), digests
            ),
        }
        # Both constructions answer alike before anything is timed.
        assert tsa.respond(requests[0]).granted
        _check(tsa.respond(requests[0]).der, requests[0])
        _check(reference.respond(requests[0]), requests[0])
        timestamper(digests[0])
        for name in VARIANTS:  # warm-up
            _rate(calls[name], min(0.2, seconds))
        samples: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for round_no in range(rounds):
            shift = round_no % len(VARIANTS)
            order = list(VARIANTS[shift:] + VARIANTS[:shift])
            if round_no % 2:
                order.reverse()
            for name in order:
                samples[name].append(_rate(calls[name], seconds))
            print(f"round {round_no + 1}/{rounds} done", file=sys.stderr, flush=True)
    finally:
        pool.close()
        engine.dispose()
        shutil.rmtree(root, ignore_errors=True)

    medians = {name: statistics.median(values) for name, values in samples.items()}
    ratios = {
        name: round(
            statistics.median(
                new / old for new, old in zip(samples[name], samples[old_name], strict=True)
            ),
            2,
        )
        for name, old_name in PAIRS.items()
    }
    per_token_ms = {name: round(1000 / rate, 3) for name, rate in medians.items()}
    return {
        "softhsm": softhsm_version(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "key": "ecdsa-p256",
        "rounds": rounds,
        "seconds_per_variant": seconds,
        "elapsed_s": round(time.perf_counter() - started, 1),
        "results": {
            name: {
                "median_per_s": round(medians[name], 1),
                "ms_per_call": per_token_ms[name],
                "samples": [round(v, 1) for v in samples[name]],
            }
            for name in VARIANTS
        },
        "speed_up": ratios,
        "breakdown_ms": {
            "hsm_signature": per_token_ms["hsm-sign"],
            "request_parsing": per_token_ms["request-parse"],
            "token_encoding": round(
                per_token_ms["respond-no-hsm"] - per_token_ms["request-parse"], 3
            ),
            "timestamper_overhead": round(per_token_ms["timestamper"] - per_token_ms["respond"], 3),
        },
    }


def _check(der: bytes, request: bytes) -> None:
    """Granted, and the token's TSTInfo echoes the request's imprint and nonce."""
    response = tsp.TimeStampResp.load(der)
    assert response["status"]["status"].native == "granted"
    tst_info = response["time_stamp_token"]["content"]["encap_content_info"]["content"].parsed
    asked = tsp.TimeStampReq.load(request)
    assert tst_info["message_imprint"].native == asked["message_imprint"].native
    assert tst_info["nonce"].native == asked["nonce"].native


def report(summary: dict[str, Any]) -> str:
    lines = [
        f"SoftHSM {summary['softhsm']}, {summary['cpus']} CPUs, Python {summary['python']}, "
        f"TSA key {summary['key']}, database sqlite",
        f"{summary['rounds']} interleaved rounds of {summary['seconds_per_variant']} s per "
        "variant, 1 thread; medians over the rounds",
        "",
        f"{'':<42} {'per s':>9} {'ms each':>9}   per-round samples",
    ]
    for name, row in summary["results"].items():
        spread = " ".join(f"{s:.0f}" for s in row["samples"])
        lines.append(
            f"  {DESCRIPTIONS[name]:<40} {row['median_per_s']:>9.1f} {row['ms_per_call']:>9.3f}"
            f"   {spread}"
        )
    lines.append("")
    for name, old_name in PAIRS.items():
        lines.append(
            f"{DESCRIPTIONS[name]} / {DESCRIPTIONS[old_name]} = "
            f"{summary['speed_up'][name]:.1f}x (median of per-round pairs)"
        )
    breakdown = summary["breakdown_ms"]
    lines.append(
        "per token, ms: HSM signature {hsm_signature:.3f}, request parsing "
        "{request_parsing:.3f}, token encoding {token_encoding:.3f}; the timestamper adds "
        "{timestamper_overhead:.3f}".format(**breakdown)
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--seconds", type=float, default=1.0, help="seconds per variant and round (default 1)"
    )
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    args = parser.parse_args(argv)
    summary = run(max(0.05, args.seconds), max(1, args.rounds))
    print(report(summary))
    print(f"\ntotal {summary['elapsed_s']} s")
    print(json.dumps(summary, ensure_ascii=False, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
