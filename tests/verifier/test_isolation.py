"""The worker pool survives every way a task can misbehave and keeps serving."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from verifier.isolation import IsolationError, Outcome, VerifierPool
from verifier.limits import MIB, InvalidLimitsError, Limits

TASK = "tests.verifier.worker_tasks:dispatch"
LIMITS = Limits(
    max_bytes=1 * MIB,
    max_decompressed_bytes=8 * MIB,
    max_objects=1234,
    cpu_seconds=1,
    wall_seconds=20.0,
    memory_bytes=256 * MIB,
)


@pytest.fixture(scope="module")
def pool() -> Iterator[VerifierPool]:
    with VerifierPool(task=TASK, workers=2, limits=LIMITS) as running:
        yield running


def run(pool: VerifierPool, do: str, **options: Any) -> Outcome:
    return pool.submit(b"%PDF-1.7 test", {"do": do, **options})


def assert_still_serving(pool: VerifierPool) -> None:
    # Twice, so both workers answer even if the failed one was replaced.
    for _ in range(2):
        outcome = run(pool, "echo")
        assert outcome.ok, outcome
        assert outcome.value["length"] == len(b"%PDF-1.7 test")
    assert len(pool.worker_pids()) == 2


def is_our_child(pid: int) -> bool:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return True


def test_a_task_returns_its_value(pool: VerifierPool) -> None:
    outcome = run(pool, "echo", extra=[1, "hai"])
    assert outcome == Outcome(ok=True, value=outcome.value, seconds=outcome.seconds)
    assert outcome.value["options"] == {"do": "echo", "extra": [1, "hai"]}
    assert outcome.value["pid"] in pool.worker_pids()
    assert outcome.value["pid"] != os.getpid()


def test_a_worker_never_holds_the_pkcs11_module(pool: VerifierPool) -> None:
    import pkcs11  # noqa: F401 - the service process holds it; the worker must not

    assert "pkcs11" in sys.modules
    outcome = run(pool, "report_environment")
    assert outcome.ok, outcome
    modules = outcome.value["modules"]
    assert "verifier.isolation" in modules
    leaked = [m for m in modules if m.split(".")[0] in {"pkcs11", "hsm", "signer", "kyso"}]
    assert leaked == []
    assert outcome.value["niceness"] >= 10
    assert outcome.value["max_objects"] == 1234


def test_a_worker_inherits_no_secret_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KYSO_OFFICER_PIN", "123456")
    monkeypatch.setenv("LANG", "C.UTF-8")
    with VerifierPool(task=TASK, workers=1, limits=LIMITS) as pool:
        outcome = run(pool, "report_environment")
    assert outcome.ok, outcome
    assert "KYSO_OFFICER_PIN" not in outcome.value["environment"]
    assert "SOFTHSM2_CONF" not in outcome.value["environment"]
    assert "LANG" in outcome.value["environment"]


@pytest.mark.parametrize(
    ("do", "options", "reason"),
    [
        ("allocate", {"bytes": 512 * MIB}, "verifier.memory_limit"),
        ("spin", {}, "verifier.cpu_limit"),
        ("exit_abruptly", {}, "verifier.worker_crashed"),
        ("segfault", {}, "verifier.worker_crashed"),
        ("fail", {}, "verifier.task_failed"),
        ("too_many_objects", {}, "verifier.too_many_objects"),
    ],
)
def test_a_misbehaving_task_gives_its_reason_and_the_pool_keeps_serving(
    pool: VerifierPool, do: str, options: dict[str, Any], reason: str
) -> None:
    outcome = run(pool, do, **options)
    assert not outcome.ok
    assert outcome.reason == reason, outcome
    assert outcome.value is None
    assert outcome.message
    assert_still_serving(pool)


def test_a_result_that_is_not_json_is_a_task_failure(pool: VerifierPool) -> None:
    outcome = run(pool, "not_json")
    assert outcome.reason == "verifier.task_failed"
    assert outcome.message == "result is not JSON"


def test_a_taken_over_worker_cannot_run_code_in_the_service(
    pool: VerifierPool, tmp_path: Path
) -> None:
    marker = tmp_path / "unpickled"
    outcome = run(pool, "send_pickle", marker=str(marker))
    assert outcome.reason == "verifier.worker_crashed"
    assert not marker.exists()
    assert_still_serving(pool)


def test_a_reply_nested_past_the_stack_is_a_crash_not_an_exception(pool: VerifierPool) -> None:
    outcome = run(pool, "send_deep_json")
    assert outcome.reason == "verifier.worker_crashed"
    assert_still_serving(pool)


def test_memory_within_the_limit_is_fine(pool: VerifierPool) -> None:
    outcome = run(pool, "allocate", bytes=32 * MIB)
    assert outcome.ok, outcome


def test_a_crash_names_the_signal(pool: VerifierPool) -> None:
    outcome = run(pool, "segfault")
    assert outcome.reason == "verifier.worker_crashed"
    assert "SIGSEGV" in outcome.message


def test_the_cpu_budget_is_per_task_not_per_worker() -> None:
    # Three tasks of 0.6 s CPU each on one worker exceed its 1 s in total but none alone.
    with VerifierPool(task=TASK, workers=1, limits=LIMITS) as pool:
        pids = pool.worker_pids()
        for _ in range(3):
            outcome = run(pool, "burn", seconds=0.6)
            assert outcome.ok, outcome
        assert pool.worker_pids() == pids


def test_a_task_past_its_wall_time_is_killed() -> None:
    limits = Limits(wall_seconds=0.5, memory_bytes=256 * MIB, max_decompressed_bytes=MIB)
    with VerifierPool(task=TASK, workers=1, limits=limits) as pool:
        before = pool.worker_pids()
        started = time.monotonic()
        outcome = run(pool, "sleep", seconds=30)
        assert time.monotonic() - started < 5
        assert outcome.reason == "verifier.time_limit", outcome
        assert not is_our_child(before[0])
        assert run(pool, "echo").ok
        assert pool.worker_pids() != before


def test_a_too_large_input_never_reaches_a_worker(pool: VerifierPool) -> None:
    outcome = pool.submit(b"%" * (MIB + 1), {"do": "echo"})
    assert outcome.reason == "verifier.input_too_large"
    assert outcome.seconds == 0.0
    assert pool.submit(b"", {"do": "echo"}).reason == "verifier.empty_input"


def test_two_workers_run_in_parallel(pool: VerifierPool) -> None:
    outcomes: list[Outcome] = []

    def one() -> None:
        outcomes.append(run(pool, "sleep", seconds=0.5))

    threads = [threading.Thread(target=one) for _ in range(2)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    assert [o.ok for o in outcomes] == [True, True]
    assert elapsed < 0.9


async def test_submit_async_does_not_block_the_loop(pool: VerifierPool) -> None:
    outcome = await pool.submit_async(b"%PDF-", {"do": "echo"})
    assert outcome.ok
    assert outcome.value["length"] == 5


def test_submissions_beyond_the_queue_are_refused_at_once() -> None:
    limits = Limits(memory_bytes=256 * MIB, max_decompressed_bytes=MIB)
    with VerifierPool(task=TASK, workers=1, limits=limits, max_waiting=0) as pool:
        slow = threading.Thread(target=run, args=(pool, "sleep"), kwargs={"seconds": 0.5})
        slow.start()
        time.sleep(0.1)
        outcome = run(pool, "echo")
        slow.join()
        assert outcome.reason == "verifier.busy"
        assert run(pool, "echo").ok


def test_close_leaves_no_process_behind() -> None:
    limits = Limits(memory_bytes=256 * MIB, max_decompressed_bytes=MIB)
    pool = VerifierPool(task=TASK, workers=2, limits=limits)
    pids = set(pool.worker_pids())
    assert run(pool, "exit_abruptly").reason == "verifier.worker_crashed"
    pids |= set(pool.worker_pids())
    assert len(pids) == 3
    assert all(is_our_child(pid) for pid in pool.worker_pids())
    pool.close()
    assert pool.worker_pids() == []
    assert not any(is_our_child(pid) for pid in pids)
    assert run(pool, "echo").reason == "verifier.closed"


def test_a_task_that_reaches_for_keys_is_refused() -> None:
    with pytest.raises(IsolationError, match="hsm") as raised:
        VerifierPool(task="tests.verifier.key_reaching_task:run", workers=1)
    assert raised.value.code == "verifier.worker_refused"


@pytest.mark.parametrize("task", ["no_colon", "module:", ":func", "mod:not-an-identifier"])
def test_a_malformed_task_path_is_refused(task: str) -> None:
    with pytest.raises(IsolationError) as raised:
        VerifierPool(task=task)
    assert raised.value.code == "verifier.bad_task"


def test_a_missing_task_is_refused() -> None:
    with pytest.raises(IsolationError, match="cannot load task") as raised:
        VerifierPool(task="tests.verifier.worker_tasks:nowhere", workers=1)
    assert raised.value.code == "verifier.worker_refused"


@pytest.mark.parametrize(
    "values",
    [
        {"max_bytes": 0},
        {"cpu_seconds": 0},
        {"wall_seconds": 0.0},
        {"memory_bytes": MIB},
        {"max_decompressed_bytes": 2048 * MIB},
    ],
)
def test_limits_that_cannot_be_enforced_are_refused(values: dict[str, Any]) -> None:
    with pytest.raises(InvalidLimitsError):
        Limits(**values)
