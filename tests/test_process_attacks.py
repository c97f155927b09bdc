"""Processes under attack (issue 12, items 7 and 9): a killed driver leaves no orphan and no open pipe;
Ctrl-C during start-up exits 130 quietly; Ray without loopback networking fails fast with a message."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lmech.errors import BadInput

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table in /proc")


def _parents() -> dict[int, int]:
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            out[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return out


def _descendants(pid: int) -> set[int]:
    parents, found, frontier = _parents(), set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")  # a zombie holds no memory and no file


def _threads(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except OSError:
        return 0


def _workers_watching(driver: int) -> set[int]:
    """The pool's workers (the fork server's children) once every one of them watches the driver: each runs
    its ``lmech-driver-watch`` thread, started first thing by ``worker_init``, so that it has taken work or is
    about to. Empty until then (a forked worker starts with the one thread that forked it)."""
    parents = _parents()
    servers = {child for child, parent in parents.items() if parent == driver}
    workers = {child for child, parent in parents.items() if parent in servers}
    return workers if len(workers) >= 2 and all(_threads(w) >= 2 for w in workers) else set()


def _drain(stream, done: threading.Event) -> None:
    while stream.read(4096):
        pass
    done.set()


@pytest.mark.parametrize("command,sig", [
    (["sweep", "toy-quadratic", "--grid", "lr=0.1,0.2,0.3,0.4", "--set", "sleep=120", "--workers", "2"], signal.SIGKILL),
    (["sweep", "toy-quadratic", "--grid", "lr=0.1,0.2,0.3,0.4", "--set", "sleep=120", "--workers", "2"], signal.SIGTERM),
    (["check", "deep-linear", "--workers", "2"], signal.SIGKILL),
], ids=["sweep-SIGKILL", "sweep-SIGTERM", "check-SIGKILL"])
def test_killing_the_driver_leaves_no_orphan_and_closes_its_pipe(tmp_path, lmech_cmd, toy_env, command, sig):
    proc = subprocess.Popen(lmech_cmd + command + ["--store", str(tmp_path / "lab")], env=toy_env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # `lmech ... | tee`
    closed = threading.Event()
    threading.Thread(target=_drain, args=(proc.stdout, closed), daemon=True).start()
    deadline, family = time.time() + 180, set()
    while time.time() < deadline:  # the fork server, its two workers (watching the driver) and the resource tracker
        family = _descendants(proc.pid) if _workers_watching(proc.pid) else set()
        if len(family) >= 4:
            break
        time.sleep(0.05)
    assert len(family) >= 4, "the workers never started"
    os.kill(proc.pid, sig)  # the driver only, not its process group
    proc.wait(timeout=30)
    end = time.time() + 30
    while time.time() < end and (any(_running(p) for p in family) or not closed.is_set()):
        time.sleep(0.2)
    left = sorted(p for p in family if _running(p))
    for pid in left:  # do not leave them to the next test
        os.kill(pid, signal.SIGKILL)
    assert left == [], "processes outlived their driver"
    assert closed.is_set(), "the driver's stdout stayed open"


@pytest.mark.parametrize("delay", [0.4, 0.8, 1.5, 3.0])
def test_ctrl_c_during_start_up_exits_130_without_a_traceback(tmp_path, lmech_cmd, subprocess_env, delay):
    proc = subprocess.Popen(lmech_cmd + ["run", "deep-linear", "--quick", "--store", str(tmp_path / "lab")],
                            env=subprocess_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode in (130, 0), err  # 0: it had already finished (not on a 2-core CI machine)
    assert "Traceback" not in err


def test_ray_without_loopback_networking_fails_at_once_with_a_message(monkeypatch):
    pytest.importorskip("ray")
    import socket

    from lmech.sweeps.executors import RayExecutor

    def unreachable(*args, **kwargs):
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", unreachable)
    start = time.perf_counter()
    with pytest.raises(BadInput, match="loopback"):
        RayExecutor(workers=1).start()
    assert time.perf_counter() - start < 10


def test_a_start_up_that_hangs_is_cut_by_its_deadline():
    from lmech.sweeps.executors import deadline

    start = time.perf_counter()
    with pytest.raises(BadInput, match="starts within"), deadline(0.3, "--executor", "ray", "a Ray that starts within 0.3 s"):
        time.sleep(10)
    assert time.perf_counter() - start < 5


def test_workers_watch_their_driver():
    """A process started with watch_driver(pid) ends when pid ends (the mechanism behind the test above).
    The watching process is forked from this one (lmech already imported: no second torch import)."""
    import warnings

    from lmech.sweeps.executors import watch_driver

    driver = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    read, write = os.pipe()
    with warnings.catch_warnings():  # Python >= 3.12 warns on fork() in a threaded process; the child only waits
        warnings.simplefilter("ignore", DeprecationWarning)
        worker = os.fork()
    if worker == 0:
        try:
            os.close(read)
            watch_driver(driver.pid)
            os.write(write, b"watching")
            time.sleep(120)
        finally:
            os._exit(0)  # never back into pytest; a watcher that works ends this process with SIGKILL first
    os.close(write)
    status = None
    try:
        assert os.read(read, 64) == b"watching"
        time.sleep(0.5)
        assert os.waitpid(worker, os.WNOHANG) == (0, 0)  # alive while its driver is
        driver.kill()
        driver.wait()
        end = time.time() + 20
        while status is None and time.time() < end:
            pid, code = os.waitpid(worker, os.WNOHANG)
            status = code if pid else None
            time.sleep(0.02)
        assert status is not None and os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status
    finally:
        os.close(read)
        if status is None:
            os.kill(worker, signal.SIGKILL)
            os.waitpid(worker, 0)
        if driver.poll() is None:
            driver.kill()
            driver.wait()
