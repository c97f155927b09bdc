"""Shared fixtures: a temporary store, and the CLI entry point run in-process."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config):
    """Every test process computes on one torch thread: the suite runs as 3 pytest-xdist processes on the
    2-core CI machine (`make test`), and the small models here are fastest that way (two threads per process
    oversubscribe the cores, 5-20x slower under load). Laws pin their own count while they run. NumPy's
    BLAS likewise (threadpoolctl, from scikit-learn): a multi-threaded BLAS makes the small products here up
    to 50x slower when both processes compute."""
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # subprocesses (the CLI tests) start that way too
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    config._lmech_blas_limit = threadpool_limits(limits=1, user_api="blas")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """The contract's tests of one law form one pytest-xdist group (``--dist loadgroup``, `make test`): one
    process computes that law's quick runs at seeds 0-2 and judges them, instead of one process waiting on a
    lock while the other computes the run both need (measured: the two processes were a quarter idle)."""
    for item in items:
        spec = getattr(item, "callspec", None)
        if spec is None or not item.nodeid.startswith("tests/test_contract.py"):
            continue
        law = next((spec.params[k] for k in ("name", "law", "smoke") if isinstance(spec.params.get(k), str)), None)
        if law is not None:
            item.add_marker(pytest.mark.xdist_group(law))
            if getattr(config.option, "loadgroup", False) and hasattr(item, "_id") and "@" not in item.nodeid:
                # pytest >= 9.2 reads a node's id from ``_id``; pytest-xdist 3.8 still writes the group suffix
                # to ``_nodeid``, which nothing reads any more: without this the groups are silently ignored
                from _pytest.nodeid import NodeId

                item._id = NodeId.parse(f"{item.nodeid}@{law}")


@pytest.fixture
def store_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh store folder, also exported as LMECH_STORE for the CLI."""
    path = tmp_path / "lab"
    monkeypatch.setenv("LMECH_STORE", str(path))
    return path


@pytest.fixture
def lmech_cmd() -> list[str]:
    """The command line of the installed ``lmech`` console script (next to this Python)."""
    script = Path(sys.executable).with_name("lmech")
    return [str(script)] if script.exists() else [sys.executable, "-m", "lmech.cli"]


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("LMECH_STORE", None)
    env["COLUMNS"] = "200"
    return env


@pytest.fixture
def toys(monkeypatch):
    """The test-only law ``toy-quadratic`` (tests/sweep_toys.py), known here and in every worker process."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent))
    monkeypatch.setenv("LMECH_PLUGINS", "sweep_toys")
    import sweep_toys

    return sweep_toys


@pytest.fixture
def toy_env(subprocess_env) -> dict[str, str]:
    """``subprocess_env`` for a child process that knows ``toy-quadratic`` (LMECH_PLUGINS, tests/ on the path)."""
    env = dict(subprocess_env)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parent), *filter(None, [env.get("PYTHONPATH")])])
    env["LMECH_PLUGINS"] = "sweep_toys"
    return env


_QUICK_CACHE: dict = {}


def _shared_dir(tmp_path_factory) -> Path:
    """A folder shared by every pytest-xdist worker of this session (the session's base temp)."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    path = shared / "lawbook-cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def computed(tmp_path_factory, key: str, compute_fn):
    """``compute_fn()`` once per test session, shared by every xdist worker through a pickle on disk.

    The first worker to need ``key`` computes it under an exclusive lock; the others wait for it and
    read the pickle. A result that cannot be pickled is kept in this process only.
    """
    import fcntl
    import hashlib
    import pickle

    if key in _QUICK_CACHE:
        return _QUICK_CACHE[key]
    name = hashlib.sha256(key.encode()).hexdigest()[:20]
    folder = _shared_dir(tmp_path_factory)
    data, lock = folder / f"{name}.pkl", folder / f"{name}.lock"
    with open(lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            if data.exists():
                value = pickle.loads(data.read_bytes())
            else:
                # a law that keeps work in the run store (scaling-law's trained grid) writes to the session's
                # shared folder, never to ./lab of the checkout the tests run in
                saved = os.environ.get("LMECH_STORE")
                os.environ["LMECH_STORE"] = str(folder / "lab")
                try:
                    value = compute_fn()
                finally:
                    if saved is None:
                        os.environ.pop("LMECH_STORE", None)
                    else:
                        os.environ["LMECH_STORE"] = saved
                try:
                    payload = pickle.dumps(value)
                except Exception:  # unpicklable extras: this process keeps it
                    payload = None
                if payload is not None:
                    tmp = data.with_suffix(f".tmp-{os.getpid()}")
                    tmp.write_bytes(payload)
                    os.replace(tmp, data)
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
    _QUICK_CACHE[key] = value
    return value


@pytest.fixture(scope="session")
def shared_computed(tmp_path_factory):
    """``shared_computed(key, compute_fn)``: :func:`computed` for tests (a fixture, since a test module
    cannot import this conftest by name: ``tests/laws/conftest.py`` shadows it under pytest-xdist)."""
    return lambda key, compute_fn: computed(tmp_path_factory, key, compute_fn)


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory):
    """``quick_run(name, label=None, seed=None)``: (prediction, measurement, verdicts, figures) of a law-book
    entry (the first by default) at its own seed or at ``seed``.

    Computed once per session, also across pytest-xdist workers, and shared by the contract test and
    the laws' own tests, so the suite runs each law-book entry once per seed.
    """
    import dataclasses

    from lmech.experiments import get
    from lmech.experiments.runner import compute

    def run(name: str, label: str | None = None, seed: int | None = None):
        exp = get(name)
        entries = exp.lawbook(quick=True)
        label = entries[0][0] if label is None else label
        config = dict(entries)[label]
        if seed is not None:
            config = dataclasses.replace(config, seed=seed)

        def work():
            outdir = _shared_dir(tmp_path_factory) / f"figures-{name}-{label or 'quick'}-{config.seed}"
            return compute(exp, config, figures_dir=outdir)

        return computed(tmp_path_factory, f"entry|{name}|{label}|{config.seed}", work)

    return run


@pytest.fixture
def no_recompute(monkeypatch):
    """``no_recompute()``: from now on a sweep executor that fails the test if it is given any point to compute
    (a measurement rerun against the same store must find every point there)."""

    class NoWork:
        def run(self, tasks):
            tasks = list(tasks)
            assert not tasks, f"recomputed {len(tasks)} points"
            return iter(())

    def install() -> None:
        import lmech.sweeps

        monkeypatch.setattr(lmech.sweeps, "make_executor", lambda *args, **kwargs: NoWork())

    return install
