"""Audit log throughput and proof cost, on SQLite and PostgreSQL.

Run from the repository root::

    .venv/bin/python -m bench.audit_bench [--seconds 5] [--writers 8] [--tree 1000000]

1. Appends: ``--writers`` threads each append events for ``--seconds``, every one durably
   committed before the writer goes on (SQLite in WAL mode with ``synchronous=FULL``;
   PostgreSQL's default ``fsync``), while the sequencer runs in its own thread as in the
   service. Two ways: ``record`` (:meth:`AuditLog.record`, group commit of events that stand
   alone) and ``transaction`` (one transaction per event, :meth:`AuditLog.append` — the cost an
   event adds to a business transaction that commits anyway). Reports committed events per
   second and the largest backlog the sequencer let build up. The baseline, measured in the
   same run, is ``driver``: the database driver alone (sqlite3 / psycopg), one INSERT and
   one commit per event by each writer, with no Kyso code.
2. Proofs at ``--tree`` entries (SQLite): the tree is filled in large transactions, then
   inclusion and consistency proofs are timed (median of 200) with their node reads.
3. ``kyso audit verify`` work at that size: export to files and verify offline.

Targets (issue): ≥ 2,000 events/s on SQLite and ≥ 5,000/s on PostgreSQL with 8 writers,
proofs in O(log n) reads, offline verification of 10^6 entries in under a minute.
The exit status is 0 whatever the figures; targets are marked PASS or MISS.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from audit.events import Action, Actor, AuditEvent, Outcome, Subject
from audit.log import DEFAULT_BATCH, AuditLog
from audit.merkle import leaf_hash, verify_consistency, verify_inclusion
from audit.note import NoteVerifier
from audit.verify import export, verify_export
from kyso import db

TARGETS = {"sqlite": 2000.0, "postgresql": 5000.0}
SEQUENCE_INTERVAL = 0.2


def _event(n: int) -> AuditEvent:
    return AuditEvent(
        time=datetime.now(UTC),
        action=Action.DOCUMENT_SIGNED,
        actor=Actor(id=f"officer-{n % 97}", role="officer", unit="Công an phường Bến Thành"),
        outcome=Outcome(success=True),
        subject=Subject(document_sha256=secrets.token_hex(32), request_id=f"req-{n}"),
        details={"type": "CT07", "pages": 1},
    )


def _postgres_url() -> tuple[str, str]:
    admin = os.environ.get(
        "KYSO_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    )
    name = f"kyso_bench_{secrets.token_hex(4)}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return admin, admin.rsplit("/", 1)[0] + "/" + name


def _drop_postgres(admin: str, url: str) -> None:
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    engine.dispose()


def appends(url: str, writers: int, seconds: float, mode: str) -> dict[str, Any]:
    engine = db.make_engine(url)
    db.upgrade(engine)
    log = AuditLog(engine=engine, origin="bench.kyso/audit")
    stop = threading.Event()
    counts = [0] * writers
    backlog_max = 0

    def writer(slot: int) -> None:
        n = 0
        raw = engine.raw_connection() if mode == "driver" else None
        mark = "?" if engine.dialect.name == "sqlite" else "%s"
        sql = (
            "INSERT INTO audit_entries (created_at, leaf, leaf_hash) "
            f"VALUES ({mark}, {mark}, {mark})"
        )
        while not stop.is_set():
            event = _event(n)
            if mode == "record":
                log.record(event)
            elif mode == "transaction":
                with engine.begin() as connection:
                    AuditLog.append(connection, event)
            else:  # the driver alone: what one commit per event costs without Kyso
                assert raw is not None
                leaf = event.leaf()
                cursor = raw.cursor()
                cursor.execute(sql, (datetime.now(UTC).isoformat(), leaf, leaf_hash(leaf)))
                cursor.close()
                raw.commit()
            n += 1
        counts[slot] = n
        if raw is not None:
            raw.close()

    def sequencer() -> None:
        # As in the service: a pass every KYSO_AUDIT_SEQUENCE_INTERVAL (0.2 s by default),
        # back to back while a pass fills a whole batch.
        nonlocal backlog_max
        while not stop.is_set():
            backlog_max = max(backlog_max, log.backlog())
            if log.sequence() < DEFAULT_BATCH:
                stop.wait(SEQUENCE_INTERVAL)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
    threads.append(threading.Thread(target=sequencer))
    started = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    drain = time.perf_counter()
    while log.sequence():
        pass
    drained_in = time.perf_counter() - drain
    total = sum(counts)
    assert log.size() == total, (log.size(), total)
    engine.dispose()
    return {
        "events": total,
        "events_per_s": round(total / elapsed),
        "backlog_max": backlog_max,
        "drain_after_stop_s": round(drained_in, 3),
    }


def big_tree(url: str, size: int, workdir: Path) -> dict[str, Any]:
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from audit.note import SignatureType, compute_key_id

    private = ed25519.Ed25519PrivateKey.generate()
    raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    origin = "bench.kyso/audit"

    class Signer:
        name = origin
        signature_type = int(SignatureType.ED25519)
        key_id = compute_key_id(origin, SignatureType.ED25519, raw)

        def sign(self, message: bytes) -> bytes:
            return private.sign(message)

    engine = db.make_engine(url)
    db.upgrade(engine)
    log = AuditLog(engine=engine, origin=origin, signer=Signer())
    started = time.perf_counter()
    batch = 20_000
    for start in range(0, size, batch):
        with engine.begin() as connection:
            for n in range(start, min(size, start + batch)):
                AuditLog.append(connection, _event(n))
        while log.sequence(max_batch=50_000):
            pass
        if start == 0 or (start + batch) % 200_000 == 0:
            log.publish_checkpoint()
            print(f"  {min(size, start + batch)} entries", file=sys.stderr, flush=True)
    log.publish_checkpoint()
    filled = time.perf_counter() - started

    root = log.root(size)
    inclusion, consistency = [], []
    rng = secrets.SystemRandom()
    for _ in range(200):
        index = rng.randrange(size)
        t = time.perf_counter()
        proof = log.inclusion_proof(index, size)
        inclusion.append(time.perf_counter() - t)
        leaf = log.entries(index, index + 1)[0].leaf
        verify_inclusion(leaf_hash(leaf), index, size, proof, root)
        first = rng.randrange(1, size)
        t = time.perf_counter()
        cproof = log.consistency_proof(first, size)
        consistency.append(time.perf_counter() - t)
        verify_consistency(first, size, log.root(first), root, cproof)

    vkey = NoteVerifier(
        name=origin, signature_type=SignatureType.ED25519, public_key=raw, key_id=Signer.key_id
    ).to_vkey()
    t = time.perf_counter()
    export(log, workdir / "export", vkey=vkey)
    exported = time.perf_counter() - t
    t = time.perf_counter()
    report = verify_export(workdir / "export", vkey)
    verified = time.perf_counter() - t
    # What `kyso audit verify` does without --export: the same checks, read from the tables.
    t = time.perf_counter()
    in_db = log.verify_database([NoteVerifier.from_vkey(vkey)])
    verified_db = time.perf_counter() - t
    engine.dispose()
    return {
        "size": size,
        "fill_s": round(filled, 1),
        "inclusion_proof_ms_median": round(statistics.median(inclusion) * 1000, 3),
        "inclusion_proof_hashes": len(proof),
        "consistency_proof_ms_median": round(statistics.median(consistency) * 1000, 3),
        "export_s": round(exported, 1),
        "verify_export_s": round(verified, 1),
        "verify_ok": report.ok,
        "verify_database_s": round(verified_db, 1),
        "verify_database_ok": in_db.ok,
        "checkpoints_verified": report.checkpoints_checked,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--tree", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    summary: dict[str, Any] = {"writers": args.writers, "seconds": args.seconds}
    with tempfile.TemporaryDirectory(prefix="kyso-audit-bench-") as tmp:
        work = Path(tmp)
        for mode in ("driver", "record", "transaction"):
            runs = summary[mode] = {}
            runs["sqlite"] = appends(
                f"sqlite:///{work / f'{mode}.db'}", args.writers, args.seconds, mode
            )
            admin, url = _postgres_url()
            try:
                runs["postgresql"] = appends(url, args.writers, args.seconds, mode)
            finally:
                _drop_postgres(admin, url)
            for engine_name, run in runs.items():
                rate = run["events_per_s"]
                verdict = "PASS" if rate >= TARGETS[engine_name] else "MISS"
                if mode == "driver":
                    verdict = "(baseline)"
                floor = summary["driver"][engine_name]["events_per_s"]
                print(
                    f"appends ({mode:<11}) {engine_name:<10} {rate:>7} events/s with "
                    f"{args.writers} writers (target >= {TARGETS[engine_name]:.0f}) {verdict}; "
                    f"x{rate / floor:.2f} the driver's one-commit-per-event rate; "
                    f"max backlog {run['backlog_max']}, "
                    f"drained {run['drain_after_stop_s']} s after stop"
                )
        if args.tree:
            tree = summary["tree"] = big_tree(f"sqlite:///{work / 'tree.db'}", args.tree, work)
            print(
                f"tree of {tree['size']} entries filled in {tree['fill_s']} s; inclusion proof "
                f"{tree['inclusion_proof_ms_median']} ms ({tree['inclusion_proof_hashes']} "
                f"hashes), consistency proof {tree['consistency_proof_ms_median']} ms (medians)"
            )
            for label, seconds, ok in (
                ("offline verify of the export", tree["verify_export_s"], tree["verify_ok"]),
                ("verify in the database", tree["verify_database_s"], tree["verify_database_ok"]),
            ):
                verdict = "PASS" if ok and seconds < 60 else "MISS"
                print(
                    f"{label} ({tree['size']} entries): {seconds} s, ok={ok} "
                    f"(target < 60 s) {verdict}"
                )
    print(json.dumps(summary, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
