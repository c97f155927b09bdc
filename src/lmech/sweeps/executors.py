"""Executors: where the runs of a sweep are computed. Workers compute and return; only the driver stores.

* :class:`LocalExecutor`: a pool of worker processes on this machine (default: one per core), started
  by a ``forkserver`` that has imported lmech (``spawn`` where there is none),
  each pinned to one torch thread so the cores are not oversubscribed. At most ``workers`` runs are in
  flight, so a worker crash (the pool breaks) touches only those; they are retried one at a time in a
  fresh pool, which names the run that kills its worker (recorded as ``failed``) and lets the
  innocent ones finish.
* :class:`RayExecutor`: Ray tasks (``num_cpus=1`` each) on a running cluster (``address``) or a local
  instance started here with ``num_cpus=workers``. Ray retries a task whose worker or node died; a task
  that still fails is recorded as ``failed``. Ray is imported only here, only when used.

Both run :func:`run_task` on the worker side and yield :class:`~lmech.experiments.runner.ComputedRun`
objects, in completion order, to the driver (:func:`lmech.sweeps.sweep.run_sweep`), which writes the
store: a cluster needs no shared file system.

Extra experiments (e.g. a lab's own laws) are made known to workers by listing their modules in the
environment variable ``LMECH_PLUGINS`` (comma-separated module names, imported by the driver and by
every worker before any run).

No orphans: a local worker watches its driver (a ``pidfd`` on Linux, else polling its pid) and kills
itself when the driver is gone, and on Linux asks the kernel for SIGKILL when its parent (the fork
server) dies (``prctl(PR_SET_PDEATHSIG)``); the fork server exits when the driver's end of its pipe
closes, and the resource tracker when its last writer is gone. So a SIGKILLed ``lmech sweep`` or
``check --workers N`` leaves no process holding memory or the driver's stdout (``lmech sweep | tee``
ends).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import threading
import time
import traceback as _traceback
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from typing import Any

from lmech.errors import BadInput
from lmech.experiments.runner import ComputedRun
from lmech.plugins import PLUGINS_ENV, load_plugins  # noqa: F401  (load_plugins re-exported)

#: Worker processes one executor may start: 4 per core, at least 64.
MAX_WORKERS = max(64, 4 * (os.cpu_count() or 1))


@dataclass(frozen=True)
class Task:
    """One run to compute: experiment name, config (as :func:`lmech.config.to_dict`), label, figures on/off."""

    experiment: str
    config: dict[str, Any]
    label: str
    figures: bool = True
    threads: int = 1

    @property
    def run_id(self) -> str:
        from lmech.store import run_id

        return run_id(self.experiment, self.config)


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _wait_for_exit(pid: int) -> None:
    """Block until process ``pid`` has ended (a pidfd where the OS has one, else polling), then kill this one."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        _die()
    except (AttributeError, OSError):  # no pidfd (not Linux >= 5.3): poll the pid
        while True:
            time.sleep(0.5)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            except PermissionError:
                pass
    else:
        select.select([fd], [], [])  # readable once the process has exited
    _die()


def watch_driver(pid: int | None) -> None:
    """End this worker process as soon as its driver ``pid`` ends: a killed driver leaves no orphan.

    A daemon thread waits for the driver's exit; on Linux the kernel also sends SIGKILL when this
    process's parent dies (``prctl(PR_SET_PDEATHSIG)``: the fork server, or the driver under spawn).
    """
    if not pid or pid == os.getpid():
        return
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        except (OSError, AttributeError):
            pass
    threading.Thread(target=_wait_for_exit, args=(pid,), name="lmech-driver-watch", daemon=True).start()


def worker_init(plugins: str = "", threads: int = 1, ignore_sigint: bool = False, driver: int | None = None) -> None:
    """Prepare a worker process: one torch thread (intra- and inter-op) and one BLAS thread (threadpoolctl,
    where installed), lmech and plugins imported; with ``driver`` (its pid) it ends when the driver does.

    Local workers ignore Ctrl-C (``ignore_sigint``): the driver receives it and stops them itself.
    """
    watch_driver(driver)
    if ignore_sigint:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # already set, or parallel work already started in this process
        pass
    try:  # numpy/scipy's BLAS (OpenBLAS, MKL) keeps one thread per core unless told otherwise
        from threadpoolctl import threadpool_limits
    except ImportError:
        pass
    else:
        threadpool_limits(limits=threads)
    import lmech.experiments  # noqa: F401  (registers the law book)

    load_plugins(plugins)


def run_task(task: Task) -> ComputedRun:
    """Compute one run on a worker (no store): the worker-side half of every executor."""
    from lmech import experiments
    from lmech.config import from_dict
    from lmech.experiments.runner import compute_run

    load_plugins()
    exp = experiments.get(task.experiment)
    exp.threads = task.threads  # the worker's thread budget, whatever the experiment would take alone
    try:
        config = from_dict(exp.Config, task.config)
    except Exception as exc:  # e.g. the worker's device is missing: a failed run, not a dead sweep
        return failed_run(task, exc)
    return compute_run(exp, config, label=task.label, figures=task.figures).portable()


def failed_run(task: Task, error: BaseException | str, tb: str | None = None) -> ComputedRun:
    """A ``failed`` ComputedRun for ``task`` that the driver records (e.g. its worker process died)."""
    if isinstance(error, BaseException):
        message = f"{type(error).__name__}: {error}"
        tb = tb or "".join(_traceback.format_exception(type(error), error, error.__traceback__))
    else:
        message = error
    now = time.time()
    return ComputedRun(task.experiment, task.run_id, task.label, task.config, "failed",
                       meta={"label": task.label}, error=message, traceback=tb or message, started=now)


def default_workers() -> int:
    """One worker per core available to this process."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _context() -> Any:
    """``forkserver`` (workers forked from a clean server that has imported lmech and matplotlib (Agg) once:
    a new worker starts in milliseconds, and never inherits the driver's threads), else ``spawn``."""
    import multiprocessing

    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["lmech.sweeps._quiet", "lmech.experiments", "lmech.report.plotting",
                                    "lmech.sweeps.executors"])
        return ctx
    return multiprocessing.get_context("spawn")


class LocalExecutor:
    """A pool of worker processes on this machine (forkserver or spawn, never a bare fork), one torch thread each."""

    name = "local"

    def __init__(self, workers: int | None = None, max_tasks_per_child: int | None = None, threads: int = 1):
        workers = default_workers() if workers is None else workers
        if not isinstance(workers, int) or workers < 1:
            raise BadInput("--workers", workers, "a number of worker processes >= 1")
        if workers > MAX_WORKERS:
            raise BadInput("--workers", workers, f"at most {MAX_WORKERS} worker processes (4 per core, at least 64)")
        self.workers, self.max_tasks_per_child, self.threads = workers, max_tasks_per_child, threads
        self.restarts = 0
        self._draining = False

    def stop_submitting(self) -> None:
        """Start no new task; the runs in flight still finish and are yielded (e.g. the store became full)."""
        self._draining = True

    def _pool(self, size: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=size, mp_context=_context(),
                                   initializer=worker_init,
                                   initargs=(os.environ.get(PLUGINS_ENV, ""), self.threads, True, os.getpid()),
                                   max_tasks_per_child=self.max_tasks_per_child)

    @staticmethod
    def _kill(pool: ProcessPoolExecutor) -> None:
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in processes:
            if proc.is_alive():
                proc.kill()
        for proc in processes:
            proc.join(timeout=5)

    def run(self, tasks: Iterable[Task]) -> Iterator[ComputedRun]:
        """Compute ``tasks``; yield each ComputedRun as soon as it is done (completion order)."""
        queue: deque[Task] = deque(replace(t, threads=self.threads) for t in tasks)
        if not queue:
            return
        suspects: deque[Task] = deque()  # in flight when a worker died: rerun one at a time
        pool = self._pool(min(self.workers, len(queue)))
        inflight: dict[Future, tuple[Task, bool]] = {}
        try:
            while ((queue or suspects) and not self._draining) or inflight:
                broken = False
                try:
                    if self._draining:
                        pass
                    elif suspects:
                        if not inflight:
                            inflight[pool.submit(run_task, suspects[0])] = (suspects[0], True)
                            suspects.popleft()
                    else:
                        while queue and len(inflight) < self.workers:
                            inflight[pool.submit(run_task, queue[0])] = (queue[0], False)
                            queue.popleft()
                except BrokenProcessPool:  # a worker died since the last wait: the task stays queued
                    broken = True
                if not broken:
                    done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
                    for fut in done:
                        task, alone = inflight.pop(fut)
                        exc = fut.exception()
                        if exc is None:
                            yield fut.result()
                        elif isinstance(exc, BrokenProcessPool):
                            broken = True
                            if alone:  # it ran alone, so it is the one that killed its worker
                                yield failed_run(task, "worker process died while computing this run "
                                                 f"({type(exc).__name__}: {exc})")
                            else:
                                suspects.append(task)
                        else:  # e.g. the result could not be pickled
                            yield failed_run(task, exc)
                if broken:
                    for fut, (task, alone) in list(inflight.items()):
                        if fut.done() and fut.exception() is None:
                            yield fut.result()
                        elif alone:
                            yield failed_run(task, "worker process died while computing this run")
                        else:
                            suspects.append(task)
                    inflight.clear()
                    self._kill(pool)
                    self.restarts += 1
                    pool = self._pool(min(self.workers, max(len(queue) + len(suspects), 1)))
        finally:
            self._kill(pool)


class RayExecutor:
    """Ray tasks on a cluster (``address``, e.g. ``"auto"``) or on a local Ray instance started here.

    A local instance started here is shut down at the end of :meth:`run`, unless ``keep``: then it stays up
    for the next :meth:`run` of the same executor, until :meth:`shutdown` (a law that runs several sweeps in a
    row, :func:`lmech.experiments.point_sweep.points_session`).
    """

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None, threads: int = 1,
                 max_retries: int = 3, keep: bool = False):
        try:
            import ray  # noqa: F401
        except ImportError:
            raise BadInput("--executor", "ray", "local, or install Ray first: pip install 'lmech[ray]'") from None
        if workers is not None and (not isinstance(workers, int) or workers < 1):
            raise BadInput("--workers", workers, "a number of worker processes >= 1")
        if address:
            _check_reachable(address)
        if workers is not None and workers > MAX_WORKERS:
            raise BadInput("--workers", workers, f"at most {MAX_WORKERS} worker processes (4 per core, at least 64)")
        self.address, self.workers, self.threads, self.max_retries = address, workers, threads, max_retries
        self.keep = keep
        self.start_timeout = float(os.environ.get("LMECH_RAY_START_TIMEOUT", 120))
        self._started = False
        self._draining = False

    def stop_submitting(self) -> None:
        """Cancel the tasks not yet finished where Ray can (pending ones); results already computed are still yielded."""
        self._draining = True

    def start(self) -> bool:
        """Join the cluster (or start a local instance) unless Ray is already initialized; True if it
        was started here (then :meth:`run` shuts it down at the end)."""
        import ray

        if ray.is_initialized():
            return self._started
        self._init()
        self._started = True
        return True

    def shutdown(self) -> None:
        """Shut down the Ray instance this executor started (nothing if it joined one already running)."""
        if self._started:
            import ray

            self._started = False
            ray.shutdown()

    def _init(self) -> None:
        import ray

        env = {"env_vars": {PLUGINS_ENV: os.environ.get(PLUGINS_ENV, ""), "OMP_NUM_THREADS": str(self.threads)}}
        if not self.address:
            check_loopback()
        try:
            with deadline(self.start_timeout, "--executor", "ray", "a Ray instance that starts within "
                          f"{self.start_timeout:g} s (ray.init has not returned: is networking available? "
                          "try --executor local)"):
                if self.address:
                    ray.init(address=self.address, runtime_env=env, log_to_driver=False)
                else:
                    ray.init(num_cpus=self.workers or default_workers(), include_dashboard=False, runtime_env=env,
                             log_to_driver=False)
        except ConnectionError as exc:
            raise BadInput("--ray-address", self.address, f"the address of a running Ray cluster ({exc})") from None
        except BadInput:
            with contextlib.suppress(Exception):
                ray.shutdown()
            raise
        except Exception as exc:  # e.g. "the current node timed out during startup" on an overloaded machine
            with contextlib.suppress(Exception):
                ray.shutdown()
            what = "a running Ray cluster" if self.address else "a local Ray instance"
            raise BadInput("--executor", "ray", f"{what} that starts ({type(exc).__name__}: {exc}); "
                           "try --executor local") from None

    def run(self, tasks: Iterable[Task]) -> Iterator[ComputedRun]:
        """Submit every task to Ray; yield each ComputedRun as it completes (``ray.wait``)."""
        import ray

        tasks = [replace(t, threads=self.threads) for t in tasks]
        if not tasks:
            return
        started_here = self.start()
        remote = ray.remote(num_cpus=1, max_retries=self.max_retries, retry_exceptions=False)(_ray_task)
        refs = {remote.remote(t): t for t in tasks}
        cancelled = False
        try:
            while refs:
                if self._draining and not cancelled:
                    for ref in refs:
                        ray.cancel(ref, force=False)  # pending tasks never start; running ones finish
                    cancelled = True
                ready, _ = ray.wait(list(refs), num_returns=1)
                for ref in ready:
                    task = refs.pop(ref)
                    try:
                        yield ray.get(ref)
                    except ray.exceptions.TaskCancelledError:
                        continue
                    except Exception as exc:  # the worker or its node died more often than Ray retries
                        yield failed_run(task, exc)
        finally:
            for ref in refs:
                ray.cancel(ref, force=True)
            if started_here and not self.keep:
                self.shutdown()


def check_loopback(timeout: float = 5.0) -> None:
    """A local Ray instance talks to itself over 127.0.0.1: check that loopback networking works, or
    BadInput at once (Ray itself would wait silently for minutes)."""
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
            server.bind(("127.0.0.1", 0))
            server.listen(1)
            socket.create_connection(server.getsockname(), timeout=timeout).close()
    except OSError as exc:
        raise BadInput("--executor", "ray", f"a machine where a local Ray instance can start: loopback networking "
                       f"(127.0.0.1) does not work here ({exc}); use --executor local") from None


@contextlib.contextmanager
def deadline(seconds: float, name: str, value: Any, expected: str) -> Iterator[None]:
    """Raise BadInput(name, value, expected) if the block runs longer than ``seconds`` (SIGALRM: main
    thread on POSIX; elsewhere the block runs unbounded)."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    class Expired(BaseException):  # not an Exception: no handler inside the block swallows it
        pass

    def expired(signum, frame):  # noqa: ARG001
        raise Expired

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except Expired:
        raise BadInput(name, value, expected) from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """For an explicit ``host:port`` (or ``ray://host:port``) address, check that something listens there:
    Ray itself would wait for minutes before giving up on a wrong address."""
    import socket

    if address == "auto" or address.startswith("local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise BadInput("--ray-address", address, "auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise BadInput("--ray-address", address, f"the address of a running Ray cluster: nothing answers at "
                       f"{host}:{port} ({exc}); start one with `ray start --head`") from None


def _ray_task(task: Task) -> ComputedRun:
    worker_init(os.environ.get(PLUGINS_ENV, ""), task.threads)
    return run_task(task)


def make_executor(kind: str, workers: int | None = None, ray_address: str | None = None) -> Any:
    """The executor named ``kind`` ("local" or "ray"), checked before any work."""
    if kind == "local":
        if ray_address:
            raise BadInput("--ray-address", ray_address, "--executor ray (the address of a Ray cluster)")
        return LocalExecutor(workers)
    if kind == "ray":
        return RayExecutor(ray_address, workers)
    raise BadInput("--executor", kind, "local or ray")


__all__ = ["MAX_WORKERS", "LocalExecutor", "RayExecutor", "Task", "check_loopback", "deadline", "default_workers",
           "failed_run", "load_plugins", "make_executor", "run_task", "watch_driver", "worker_init"]
