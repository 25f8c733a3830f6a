"""A pool of worker processes that run one task on untrusted bytes under hard limits.

Why not `multiprocessing` or `ProcessPoolExecutor`: the executor cannot kill one running
task, and a `spawn` child re-imports the parent's `__main__` (for the service, the `kyso`
entry point, which loads the PKCS#11 module). So each worker is a fresh interpreter started
with `subprocess` that imports only this module and the task, and talks to the pool over
its own socket pair with `multiprocessing.connection` framing. One worker runs one task at
a time; a task that overruns its wall time is ended by killing its worker, which is then
replaced, so a hostile PDF costs one process, never the service.

Requests go to a worker pickled (the service is trusted), but replies come back as JSON:
a worker that a crafted PDF took over must not be able to run code in the service by
sending it a pickle. A task therefore returns JSON-compatible data (dict, list, str, int,
float, bool, None).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import math
import os
import pickle
import queue
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from verifier.errors import VerifierError
from verifier.limits import LimitExceededError, Limits, activate_limits, check_input_size

# Modules a worker must never hold: with them a parser bug could reach a signing key.
FORBIDDEN_MODULES = ("pkcs11", "hsm", "signer", "kyso")

# The service's environment may hold token PINs (KYSO_*, PinSource.env_var): a worker gets
# only what a parser needs.
_INHERITED_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR")
_EXIT_OUT_OF_MEMORY = 86
_EXIT_FORBIDDEN_MODULE = 87
_WORKER_NICENESS = 10
_STARTUP_SECONDS = 60.0
_STOP_SECONDS = 2.0
_MESSAGE_CHARS = 500
_MAX_REPLY_BYTES = 64 * 1024 * 1024
_SOCKET_BUFFER_BYTES = 4 * 1024 * 1024


class IsolationError(VerifierError):
    """The pool itself cannot work (bad task path, worker that cannot start)."""

    code = "verifier.isolation"


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What became of one task: its value, or why there is none."""

    ok: bool
    """True when the task returned; `value` then holds what it returned."""

    value: Any = None
    """The task's return value (JSON-compatible); None when `ok` is False."""

    reason: str | None = None
    """Stable code when `ok` is False, e.g. "verifier.memory_limit", "verifier.time_limit",
    "verifier.cpu_limit", "verifier.worker_crashed", "verifier.input_too_large",
    "verifier.task_failed", "verifier.busy", "verifier.closed", "verifier.bad_options",
    "verifier.worker_unavailable", or the code of a `LimitExceededError` the task raised."""

    message: str = ""
    """Plain explanation for a person; never contains the input."""

    seconds: float = 0.0
    """Wall time the task took in its worker, as the pool measured it."""


def _split_task_path(task: str) -> tuple[str, str]:
    module, sep, attribute = task.partition(":")
    if not sep or not module or not attribute.isidentifier():
        raise IsolationError(
            f"task must be 'package.module:function', not {task!r}", code="verifier.bad_task"
        )
    return module, attribute


class _Worker:
    """One worker process and the parent's end of its connection."""

    def __init__(self, *, task: str, limits: Limits) -> None:
        parent_end, child_end = socket.socketpair()
        for end in (parent_end, child_end):
            # A document crosses in a few large writes, not hundreds of 200 KiB ones.
            end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _SOCKET_BUFFER_BYTES)
            end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _SOCKET_BUFFER_BYTES)
        with child_end:
            # The child gets the parent's sys.path (so test and source trees resolve the
            # same way) but imports nothing of the parent beyond this module and the task.
            bootstrap = (
                f"import sys; sys.path[:] = {sys.path!r}; "
                "from verifier.isolation import _serve; "
                f"_serve({child_end.fileno()})"
            )
            self.process = subprocess.Popen(  # noqa: S603 - argv built here, not from input
                [sys.executable, "-I", "-c", bootstrap],
                env={k: v for k, v in os.environ.items() if k in _INHERITED_ENVIRONMENT},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                pass_fds=(child_end.fileno(),),
                close_fds=True,
            )
        self.connection = Connection(parent_end.detach())
        self.connection.send((task, limits))
        self.ready = False

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self) -> None:
        if self.ready:
            return
        if not self.connection.poll(_STARTUP_SECONDS):
            self.stop(kill=True)
            raise IsolationError("a verifier worker did not start in time")
        reply = self.read_reply()
        if reply is None:
            code = self.stop(kill=True)
            raise IsolationError(f"a verifier worker died while starting (status {code})")
        if reply.get("status") != "ready":
            self.stop(kill=True)
            raise IsolationError(str(reply.get("message")), code="verifier.worker_refused")
        self.ready = True

    def read_reply(self) -> dict[str, Any] | None:
        """The worker's next JSON message; None if it died or sent something malformed."""
        try:
            reply = json.loads(self.connection.recv_bytes(_MAX_REPLY_BYTES))
        except (EOFError, OSError, ValueError, RecursionError):
            # RecursionError: a worker taken over could send JSON nested past the stack.
            return None
        return reply if isinstance(reply, dict) else None

    def stop(self, *, kill: bool) -> int | None:
        """End the process and reap it, so it never lingers as a zombie."""
        if not kill and self.process.poll() is None:
            with contextlib.suppress(OSError):
                self.connection.send(None)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(_STOP_SECONDS)
        if self.process.poll() is None:
            self.process.kill()
        self.connection.close()
        return self.process.wait()


class VerifierPool:
    """Runs `task(data, options)` in isolated, resource-limited worker processes.

    Thread-safe; `submit` blocks its caller, `submit_async` does not block the event loop.
    At most `workers` tasks run at once and at most `max_waiting` more wait for a worker;
    beyond that a submission is refused at once with "verifier.busy".
    """

    def __init__(
        self,
        *,
        task: str,
        workers: int = 2,
        limits: Limits | None = None,
        max_waiting: int | None = None,
    ) -> None:
        _split_task_path(task)
        if workers < 1:
            raise IsolationError("workers must be at least 1", code="verifier.bad_pool")
        self.task = task
        """Import path of the function each worker runs, "package.module:function"."""
        self.limits = limits if limits is not None else Limits()
        """Limits every task runs under."""
        self._lock = threading.Lock()
        self._closed = False
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self._all: set[_Worker] = set()
        waiting = max_waiting if max_waiting is not None else 4 * workers
        self._admission = threading.BoundedSemaphore(workers + waiting)
        started = [self._start_worker() for _ in range(workers)]
        try:
            for worker in started:
                worker.wait_ready()
        except IsolationError:
            self.close()
            raise
        for worker in started:
            self._idle.put(worker)

    def _start_worker(self) -> _Worker:
        worker = _Worker(task=self.task, limits=self.limits)
        with self._lock:
            self._all.add(worker)
        return worker

    def _retire(self, worker: _Worker, *, kill: bool) -> int | None:
        with self._lock:
            self._all.discard(worker)
        return worker.stop(kill=kill)

    def worker_pids(self) -> list[int]:
        """Process ids of the live workers (for monitoring and tests)."""
        with self._lock:
            return sorted(worker.pid for worker in self._all)

    def submit(self, data: bytes, options: Mapping[str, Any] | None = None) -> Outcome:
        """Run the task on `data` in a worker and wait for its outcome; never raises for
        anything the input or the task does."""
        try:
            check_input_size(data, self.limits)
        except LimitExceededError as ex:
            return Outcome(ok=False, reason=ex.code, message=ex.message)
        try:
            request = pickle.dumps((bytes(data), dict(options or {})))
        except Exception as ex:
            message = f"options cannot be sent to a worker: {type(ex).__name__}"
            return Outcome(ok=False, reason="verifier.bad_options", message=message)
        if not self._admission.acquire(blocking=False):
            return Outcome(
                ok=False, reason="verifier.busy", message="too many documents are being verified"
            )
        try:
            return self._run(request)
        finally:
            self._admission.release()

    async def submit_async(self, data: bytes, options: Mapping[str, Any] | None = None) -> Outcome:
        """`submit` for async callers: the wait happens in a thread, not on the loop."""
        return await asyncio.to_thread(self.submit, data, options)

    def _take_worker(self) -> _Worker | Outcome:
        while not self._closed:
            try:
                worker = self._idle.get(timeout=0.2)
            except queue.Empty:
                continue
            if self._closed:
                self._retire(worker, kill=False)
                break
            if worker.process.poll() is not None:
                # Died while idle (killed from outside, the OOM killer): not this task's doing.
                self._retire(worker, kill=True)
                self._replace()
                continue
            try:
                worker.wait_ready()
            except IsolationError as ex:
                # Not a loop of restarts: this caller gets an answer, the next one a new worker.
                self._retire(worker, kill=True)
                self._replace()
                return Outcome(ok=False, reason="verifier.worker_unavailable", message=ex.message)
            return worker
        return Outcome(ok=False, reason="verifier.closed", message="the verifier is shut down")

    def _replace(self) -> None:
        if self._closed:
            return
        worker = _Worker(task=self.task, limits=self.limits)
        with self._lock:
            # Checked again under the lock `close` takes, so no worker outlives the pool.
            closing = self._closed
            if not closing:
                self._all.add(worker)
        if closing:
            worker.stop(kill=True)
        else:
            self._idle.put(worker)

    def _run(self, request: bytes) -> Outcome:
        worker = self._take_worker()
        if isinstance(worker, Outcome):
            return worker
        started = time.monotonic()
        keep = False
        try:
            try:
                worker.connection.send_bytes(request)
                answered = worker.connection.poll(self.limits.wall_seconds)
            except OSError:
                answered = True
            reply = worker.read_reply() if answered else None
            seconds = time.monotonic() - started
            if not answered:
                self._retire(worker, kill=True)
                return Outcome(
                    ok=False,
                    reason="verifier.time_limit",
                    message=f"verification took longer than {self.limits.wall_seconds:g} s",
                    seconds=seconds,
                )
            if reply is None:
                returncode = self._retire(worker, kill=True)
                return self._death_outcome(returncode, seconds)
            keep = reply.get("retire") is False
            if reply.get("status") == "ok":
                return Outcome(ok=True, value=reply.get("value"), seconds=seconds)
            reason = str(reply.get("reason", "verifier.task_failed"))[:_MESSAGE_CHARS]
            message = str(reply.get("message", ""))[:_MESSAGE_CHARS]
            return Outcome(ok=False, reason=reason, message=message, seconds=seconds)
        finally:
            if keep and not self._closed:
                self._idle.put(worker)
            else:
                self._retire(worker, kill=True)
                self._replace()

    def _death_outcome(self, returncode: int | None, seconds: float) -> Outcome:
        if returncode == -signal.SIGXCPU:
            reason = "verifier.cpu_limit"
            message = f"verification used more than {self.limits.cpu_seconds} s of CPU time"
        elif returncode == _EXIT_OUT_OF_MEMORY:
            reason = "verifier.memory_limit"
            message = f"verification needed more than {self.limits.memory_bytes} bytes of memory"
        elif returncode is not None and returncode < 0:
            reason = "verifier.worker_crashed"
            message = f"the verifier worker was killed by signal {_signal_name(-returncode)}"
        else:
            reason = "verifier.worker_crashed"
            message = f"the verifier worker exited unexpectedly (status {returncode})"
        return Outcome(ok=False, reason=reason, message=message, seconds=seconds)

    def close(self) -> None:
        """Stop every worker and reap it; waiting and later submissions get "verifier.closed".
        A task still running is ended by killing its worker."""
        with self._lock:
            self._closed = True
        idle: set[_Worker] = set()
        with contextlib.suppress(queue.Empty):
            while True:
                idle.add(self._idle.get_nowait())
        with self._lock:
            workers = list(self._all)
        for worker in workers:
            self._retire(worker, kill=worker not in idle)

    def __enter__(self) -> VerifierPool:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


# ---- the worker side ---------------------------------------------------------------------


def _apply_limits(limits: Limits) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    _, cpu_hard = resource.getrlimit(resource.RLIMIT_CPU)
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds, cpu_hard))
    os.nice(_WORKER_NICENESS)
    activate_limits(limits)


def _arm_cpu_limit(limits: Limits) -> None:
    # RLIMIT_CPU counts the whole life of the process, so each task gets its budget on top
    # of what the worker has used so far (the hard limit stays where it was, to allow this).
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = math.ceil(usage.ru_utime + usage.ru_stime)
    _, cpu_hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = used + limits.cpu_seconds
    if cpu_hard != resource.RLIM_INFINITY:
        soft = min(soft, cpu_hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, cpu_hard))


def _loaded_forbidden_modules() -> list[str]:
    return sorted(
        name
        for name in sys.modules
        if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN_MODULES)
    )


def _serve(fd: int) -> None:
    """Main loop of a worker process: set limits, load the task, run tasks until told to
    stop. A fault inside the task ends the process; the parent reads its exit status."""
    connection = Connection(fd)
    task_path, limits = connection.recv()
    try:
        _apply_limits(limits)
        module_name, attribute = _split_task_path(task_path)
        task: Callable[[bytes, dict[str, Any]], Any] = getattr(
            importlib.import_module(module_name), attribute
        )
    except Exception as ex:  # reported to the parent, which refuses to start
        message = f"cannot load task {task_path!r}: {type(ex).__name__}: {ex}"[:_MESSAGE_CHARS]
        _reply(connection, {"status": "refused", "message": message})
        return
    forbidden = _loaded_forbidden_modules()
    if forbidden:
        message = f"worker would hold key-reaching modules: {forbidden}"
        _reply(connection, {"status": "refused", "message": message})
        os._exit(_EXIT_FORBIDDEN_MODULE)
    _reply(connection, {"status": "ready"})
    while True:
        try:
            request = connection.recv()
        except EOFError:
            return
        if request is None:
            return
        data, options = request
        _arm_cpu_limit(limits)
        reply = _run_task(task, data, options, limits)
        if _loaded_forbidden_modules():
            reply["retire"] = True
        try:
            _reply(connection, reply)
        except MemoryError:
            os._exit(_EXIT_OUT_OF_MEMORY)
        except (TypeError, ValueError):  # json.dumps: an unsupported type, NaN or a cycle
            _reply(connection, _failure("verifier.task_failed", "result is not JSON", False))
        if reply["retire"]:
            return


def _run_task(
    task: Callable[[bytes, dict[str, Any]], Any],
    data: bytes,
    options: dict[str, Any],
    limits: Limits,
) -> dict[str, Any]:
    try:
        return {"status": "ok", "value": task(data, options), "retire": False}
    except MemoryError:
        # The heap may be left fragmented and near the cap: report, then let the pool start
        # a fresh worker.
        message = f"verification needed more than {limits.memory_bytes} bytes of memory"
        return _failure("verifier.memory_limit", message, True)
    except LimitExceededError as ex:
        return _failure(ex.code, ex.message, False)
    except Exception as ex:  # any task failure becomes an outcome
        return _failure("verifier.task_failed", f"{type(ex).__name__}: {ex}", False)


def _failure(reason: str, message: str, retire: bool) -> dict[str, Any]:
    return {
        "status": "failed",
        "reason": reason,
        "message": message[:_MESSAGE_CHARS],
        "retire": retire,
    }


def _reply(connection: Connection, message: dict[str, Any]) -> None:
    connection.send_bytes(json.dumps(message, allow_nan=False).encode())
