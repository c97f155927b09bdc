"""The run store: a folder per run that loses nothing and lets nothing half-written in.

Layout under the store root (``lab/`` by default, ``--store PATH`` or ``LMECH_STORE`` to move it)::

    <experiment>/<run_id>/config.json     full config, seed, versions, device, label
                          status.json     done | failed | diverged, timings, traceback, diverged step
                          summary.json    scalar metrics (columns of the runs table)
                          verdict.json    the verdicts of the run
                          series/*.parquet         measured series (one table each)
                          prediction/*.parquet     the theory's series
                          figures/*.png
                          manifest.json   size and SHA-256 of every file above: written last
    .partial/<experiment>/<run_id>.<pid>.<token>/   one attempt at a run, in progress (status "running")
    .partial/.trash/<experiment>/<run_id>.<pid>.<token>/   an old copy moved aside while being replaced
    .damaged/<experiment>/<run_id>.<time>/          damaged runs moved aside by ``lmech runs verify --repair``
    lawbook.json                          the run ids of the last ``lmech check``

The promises (each has its test in ``tests/test_store.py`` and ``tests/test_store_attacks.py``):

* **A write is invisible until complete.** Every attempt builds its run in its own folder under
  ``.partial/`` (never shared, never deleted by another live attempt); the manifest is written last,
  then the folder is moved into place by one ``rename``. Readers list only ``<experiment>/<run_id>``.
* **Replacement is atomic.** A forced rerun, a retry of a failed run or the recomputation of a damaged
  one swaps the new folder with the old in one step (Linux ``renameat2(RENAME_EXCHANGE)``): at every
  instant a reader finds the whole old run or the whole new one. Where the OS has no atomic exchange,
  the old copy is moved to ``.partial/.trash/`` first; a kill between the two renames is repaired by
  the next start (:meth:`RunStore.recover`).
* **Concurrent writers of one run id** each compute in their own folder; the first to finish puts its
  run in place, later ones find a complete run there and discard their copy (same config, same
  numbers), or replace it atomically when forced. A failed attempt never replaces a finished run.
* **After any kill** nothing half-written lists as a run; the next start (:meth:`RunStore.recover`,
  called by every writer) removes attempts whose process is gone, puts back a complete run whose
  promotion was cut short, and restores a trashed copy whose replacement never arrived.
* **Damage is seen, never fatal.** A reader checks every file the manifest lists (present, right
  size; the JSON files it reads, and with ``full=True`` every file, by SHA-256) and the folder's name
  against the run id inside: a run that fails lists as ``damaged`` with the reason, is not a result
  (``is_finished`` is false, so ``check``, sweeps and ``run`` recompute it) and never crashes a listing.

Run ids are content hashes of the experiment name and the normalized config (seed and device
included) and, when the config names a data file (``data=FILE``), of that file's bytes: a rerun of the
same config on the same data finds its finished run, and an edited data file makes a new run.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import os
import platform
import secrets
import shutil
import socket
import sys
import time
import traceback as _traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lmech.store import files
from lmech.verdicts import overall_status

STATUSES = ("running", "done", "failed", "diverged")
FINISHED = ("done", "diverged")
DAMAGED = "damaged"
DEFAULT_ROOT = "lab"
MANIFEST = "manifest.json"
#: Folders of the store root that hold no runs.
RESERVED = ("sweeps",)
_JSON = {"config.json": dict, "status.json": dict, "summary.json": dict, "verdict.json": list}


class StoreError(OSError):
    """The store could not be read or written (read-only, full, not a folder): the CLI exits 5."""


def default_root() -> Path:
    """The store root: ``$LMECH_STORE`` if set, else ``./lab``."""
    return Path(os.environ.get("LMECH_STORE") or DEFAULT_ROOT)


def run_id(experiment: str, config: dict[str, Any]) -> str:
    """Content address of a run: SHA-256 of the experiment name and the normalized config.

    The config dict (seed and device among its fields) is serialized as canonical JSON (sorted keys,
    no whitespace, floats in their shortest round-trip form), so equal configs give equal ids.
    """
    content = {"experiment": experiment, "config": config}
    digest = data_digest(config.get("data"))
    if digest is not None:  # a user's data file: the id follows its content, not only its name
        content["data_sha256"] = digest
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


_DIGESTS: dict[tuple[str, int, int, int], str] = {}


def data_digest(source: Any) -> str | None:
    """SHA-256 of the data file a config's ``data=`` field names (``PATH`` or ``PATH#x=..,y=..``), or None
    when it names no existing file (a built-in dataset such as ``"sphere"``, or nothing).

    Part of the run id, so that a rerun after the file was edited in place is a new run, never a stale
    cache hit. Digests are cached by (path, inode, size, mtime): a file is read once per process
    unless it changes.
    """
    if not isinstance(source, str) or not source.strip():
        return None
    from lmech.data.load import FORMATS, parse_source  # the data layer's own reading of data=

    try:
        path, _ = parse_source(source)
        if path.suffix.lower() not in FORMATS:
            return None
        st = path.stat()
    except (OSError, ValueError):
        return None
    if not path.is_file():
        return None
    key = (str(path.resolve()), st.st_ino, st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        try:
            with path.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
        except OSError:
            return None
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def environment() -> dict[str, str]:
    """Versions and host recorded with every run."""
    import numpy
    import torch

    import lmech

    return {"lmech": lmech.__version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "host": socket.gethostname()}


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # glibc < 2.28
        return False
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(str(a)), at_fdcwd, os.fsencode(str(b)), ctypes.c_uint(rename_exchange)) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def _alive(pid: Any, host: Any) -> bool:
    """Whether the process that owns an attempt may still run (other hosts' processes are assumed alive)."""
    if host not in (None, socket.gethostname()) or not isinstance(pid, int) or pid <= 0:
        return host not in (None, socket.gethostname())
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _attempt_name(rid: str) -> str:
    return f"{rid}.{os.getpid()}.{secrets.token_hex(4)}"


def _owner(name: str) -> tuple[str, int | None]:
    """(run id, pid) from an attempt folder's name ``<run_id>.<pid>.<token>``."""
    parts = name.split(".")
    pid = int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None
    return parts[0], pid


class RunHandle:
    """A run being written: the sink that experiments and the Monitor write into.

    ``append(series, row)`` buffers rows of a metric series (the Monitor's sink protocol);
    ``write_series`` stores a whole table; ``finish`` writes the status, then the manifest, and moves
    the folder to its final place atomically. ``force`` lets this attempt replace a finished run.
    """

    def __init__(self, store: RunStore, experiment: str, rid: str, path: Path, force: bool = False):
        self.store, self.experiment, self.run_id, self.path, self.force = store, experiment, rid, path, force
        self._rows: dict[str, list[dict]] = {}
        self.started = time.time()

    @property
    def figures_dir(self) -> Path:
        return self.path / "figures"

    def append(self, series: str, row: dict) -> None:
        """Add one row to the named series (flushed to Parquet by ``flush`` or ``finish``)."""
        self._rows.setdefault(series, []).append(dict(row))

    def flush(self) -> None:
        """Write every buffered series to Parquet (merged with what was written before)."""
        for name, rows in self._rows.items():
            target = self.path / "series" / f"{name}.parquet"
            frame = pd.DataFrame(rows)
            if target.exists():
                frame = pd.concat([pd.read_parquet(target), frame], ignore_index=True)
            files.write_parquet(target, frame)
        self._rows.clear()

    def write_series(self, name: str, frame: pd.DataFrame, kind: str = "series") -> None:
        """Store a whole table under ``series/`` (measured) or ``prediction/`` (theory)."""
        if kind not in ("series", "prediction"):
            raise ValueError(f"kind must be 'series' or 'prediction', got {kind!r}")
        files.write_parquet(self.path / kind / f"{name}.parquet", frame)

    def write_json(self, name: str, obj: Any) -> None:
        files.write_json(self.path / name, obj)

    def finish(self, status: str, **info: Any) -> Path:
        """Record the final status and the manifest, then move the run to its final place."""
        if status not in STATUSES[1:]:
            raise ValueError(f"final status must be one of {STATUSES[1:]}, got {status!r}")
        try:
            self.flush()
            record = {"status": status, "started": self.started, "finished": time.time(),
                      "duration_s": time.time() - self.started, **info}
            files.write_json(self.path / "status.json", record)
            write_manifest(self.path)
            return self.store._promote(self, status)
        except OSError as exc:
            self.abandon()
            raise self.store._error("write", exc) from exc

    def fail(self, exc: BaseException) -> Path:
        """Finish as ``failed``, keeping the traceback."""
        tb = "".join(_traceback.format_exception(type(exc), exc, exc.__traceback__))
        return self.finish("failed", error=f"{type(exc).__name__}: {exc}", traceback=tb)

    def abandon(self) -> None:
        """Remove this attempt's folder (after a write error: nothing half-written is left behind)."""
        shutil.rmtree(self.path, ignore_errors=True)


def write_manifest(path: Path) -> None:
    """Write ``manifest.json`` in a run folder: size and SHA-256 of every other file, folders fsync'ed first."""
    entries = {}
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = file.relative_to(path).as_posix()
        if rel == MANIFEST or file.name.startswith("."):
            continue
        entries[rel] = {"size": file.stat().st_size, "sha256": files.sha256(file)}
    for folder in {path} | {(path / rel).parent for rel in entries}:
        files.fsync_dir(folder)
    files.write_json(path / MANIFEST, {"version": 1, "files": entries})


@dataclass
class RunRecord:
    """A run as read back from the store; ``damage`` is the reason it is ``damaged`` (None when intact)."""

    path: Path
    run_id: str
    experiment: str
    status: str
    config: dict[str, Any]
    meta: dict[str, Any]
    status_info: dict[str, Any]
    summary: dict[str, Any] = field(default_factory=dict)
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    damage: str | None = None

    def series(self, name: str, kind: str = "series") -> pd.DataFrame:
        """One stored table (measured ``series`` or theory ``prediction``)."""
        return pd.read_parquet(self.path / kind / f"{name}.parquet")

    def series_names(self, kind: str = "series") -> list[str]:
        return sorted(p.stem for p in (self.path / kind).glob("*.parquet"))

    def figures(self) -> list[Path]:
        return sorted((self.path / "figures").glob("*.png"))

    @property
    def finished(self) -> bool:
        """A result: done or diverged, and intact."""
        return self.damage is None and self.status in FINISHED

    @property
    def holds(self) -> bool | None:
        if not self.verdicts:
            return None
        return all(v.get("holds") for v in self.verdicts)

    @property
    def verdict(self) -> str | None:
        """``holds``, ``violated`` or ``inconclusive`` from the stored verdicts (None without any)."""
        return overall_status(self.verdicts)


class _Damaged(Exception):
    """A run folder failed a check (the message is the reason)."""


def _read(base: str, rel: str) -> bytes:
    with open(os.path.join(base, rel), "rb") as fh:
        return fh.read()


def _read_checked(base: str, rel: str, entry: dict) -> Any:
    """A JSON file of a run, checked against its manifest entry (size, SHA-256, type)."""
    try:
        data = _read(base, rel)
    except FileNotFoundError:
        raise _Damaged(f"{rel} is missing") from None
    if len(data) != entry.get("size") or hashlib.sha256(data).hexdigest() != entry.get("sha256"):
        raise _Damaged(f"{rel} does not match its checksum (altered or truncated)")
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise _Damaged(f"{rel} is not valid JSON ({exc})") from None
    if not isinstance(value, _JSON[rel]):
        raise _Damaged(f"{rel} holds {type(value).__name__}, not a JSON {_JSON[rel].__name__}")
    return value


def _inspect(path: Path, full: bool, experiment: str | None = None, rid: str | None = None) -> RunRecord:
    """Read and check one run folder (raises _Damaged with the reason); it must hold run ``rid`` of
    ``experiment`` (default: the folder's own name and its parent's)."""
    experiment = path.parent.name if experiment is None else experiment
    rid = path.name if rid is None else rid
    base = os.fspath(path)
    try:
        manifest = json.loads(_read(base, MANIFEST))
    except FileNotFoundError:
        raise _Damaged("no checksum manifest (the run was cut short, or written by an older lmech)") from None
    except ValueError as exc:
        raise _Damaged(f"{MANIFEST} is not valid JSON ({exc})") from None
    entries = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(entries, dict) or not all(isinstance(e, dict) for e in entries.values()):
        raise _Damaged(f"{MANIFEST} has no table of files")
    for rel in ("config.json", "status.json"):
        if rel not in entries:
            raise _Damaged(f"{rel} is not in the manifest")
    for rel, entry in entries.items():
        if rel.startswith("/") or ".." in rel.split("/"):
            raise _Damaged(f"{MANIFEST} names a file outside the run ({rel})")
        if rel in _JSON:
            continue
        target = os.path.join(base, rel)
        try:
            size = os.stat(target).st_size
        except FileNotFoundError:
            raise _Damaged(f"{rel} is missing") from None
        if size != entry.get("size"):
            raise _Damaged(f"{rel} has {size} bytes, the manifest says {entry.get('size')} (truncated or altered)")
        if full and files.sha256(Path(target)) != entry.get("sha256"):
            raise _Damaged(f"{rel} does not match its checksum (altered)")
    loaded = {rel: _read_checked(base, rel, entries[rel]) if rel in entries else _JSON[rel]() for rel in _JSON}
    meta, status = loaded["config.json"], loaded["status.json"]
    if meta.get("run_id") != rid:
        raise _Damaged(f"the folder is named {rid} but holds run {meta.get('run_id')} (copied or renamed)")
    if meta.get("experiment") != experiment:
        raise _Damaged(f"a run of {meta.get('experiment')!r} found under {experiment}/ (moved)")
    if not isinstance(meta.get("config"), dict):
        raise _Damaged("config.json has no config")
    if status.get("status") not in STATUSES[1:]:
        raise _Damaged(f"status.json has status {status.get('status')!r}")
    return RunRecord(path=path, run_id=rid, experiment=experiment, status=status["status"],
                     config=meta["config"], meta=meta, status_info=status, summary=loaded["summary.json"],
                     verdicts=loaded["verdict.json"])


def load_run(path: Path, full: bool = False) -> RunRecord:
    """The run in folder ``path``: intact, or ``damaged`` with the reason (never raises for a bad run).

    ``full`` checks every file's SHA-256 (else sizes, and checksums of the JSON files read). A check
    that fails while the folder is being replaced (its manifest changed during the read) is read again.
    """
    for _ in range(3):
        before = _stamp(path / MANIFEST)
        try:
            return _inspect(path, full)
        except _Damaged as exc:
            reason = str(exc)
        except OSError as exc:  # unreadable (permissions, I/O error): damaged, listed, not fatal
            reason = f"unreadable ({exc.strerror or exc})"
        if _stamp(path / MANIFEST) == before:
            break
    meta: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        value = json.loads((path / "config.json").read_bytes())
        meta = value if isinstance(value, dict) else {}
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    return RunRecord(path=path, run_id=path.name, experiment=path.parent.name, status=DAMAGED, config=config,
                     meta=meta, status_info={"status": DAMAGED, "damage": reason}, damage=reason)


def _stamp(path: Path) -> tuple[int, ...] | None:
    """What changes when a file is replaced or rewritten: inode, size, modification and change times."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


class RunStore:
    """The folder of runs; see the module docstring for its layout and guarantees."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_root()
        self._recovered = False
        self._cache: dict[Path, tuple[tuple[int, ...], RunRecord]] = {}

    def __repr__(self) -> str:
        return f"RunStore({str(self.root)!r})"

    def _error(self, verb: str, exc: OSError) -> StoreError:
        """A StoreError naming the store, what could not be done and why."""
        if isinstance(exc, StoreError):
            return exc
        what = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        return StoreError(exc.errno, f"cannot {verb} the run store at {self.root}: {exc.strerror or exc}{what}")

    def check_root(self) -> None:
        """StoreError if the store path exists and is not a folder."""
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(errno.ENOTDIR, f"the run store path {self.root} is a file, not a folder "
                             "(choose another with --store or LMECH_STORE)")

    # -- writing ---------------------------------------------------------------------------------
    def begin(self, experiment: str, config: dict[str, Any], meta: dict[str, Any], *,
              force: bool = False) -> RunHandle:
        """Start an attempt at a run: its own ``.partial`` folder holding ``config.json`` and a running status.

        ``force``: the finished run will replace one already in place (else a finished run in place is kept).
        """
        self.check_root()
        rid = run_id(experiment, config)
        path = self.root / ".partial" / experiment / _attempt_name(rid)
        try:
            self.recover()
            path.mkdir(parents=True)
            record = {"experiment": experiment, "run_id": rid, "config": config,
                      "seed": config.get("seed"), **environment(), **meta}
            files.write_json(path / "config.json", record)
            files.write_json(path / "status.json", {"status": "running", "pid": os.getpid(),
                                                    "host": socket.gethostname(), "started": time.time()})
        except OSError as exc:
            shutil.rmtree(path, ignore_errors=True)
            raise self._error("write", exc) from exc
        return RunHandle(self, experiment, rid, path, force)

    def _replaces(self, final: Path, status: str, force: bool) -> bool:
        """Whether a new run with ``status`` replaces the run now at ``final``."""
        current = load_run(final, full=True)
        if current.damage is not None or current.status == "failed":
            return True  # damaged, or a failure: a new attempt (even a failed one) replaces it
        return force and status in FINISHED  # a finished result is replaced only on request, by a result

    def _promote(self, handle: RunHandle, status: str) -> Path:
        """Move a complete attempt into place (see the module docstring for why this is always safe)."""
        final = self.root / handle.experiment / handle.run_id
        final.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(20):
            try:
                os.rename(handle.path, final)  # atomic; refuses a non-empty folder in place
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
            else:
                files.fsync_dir(final.parent)
                return final
            if not self._replaces(final, status, handle.force):
                handle.abandon()  # the same computation is already in place: keep it
                return final
            try:
                if _exchange(handle.path, final):  # final: the new run; handle.path: the old one
                    files.fsync_dir(final.parent)
                    handle.abandon()
                    return final
            except FileNotFoundError:  # the run in place vanished meanwhile: rename again
                continue
            trash = self.root / ".partial" / ".trash" / handle.experiment / _attempt_name(handle.run_id)
            trash.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(final, trash)  # no atomic exchange here: the old copy waits in the trash
            except FileNotFoundError:
                continue
            try:
                os.rename(handle.path, final)
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    with contextlib.suppress(OSError):
                        os.rename(trash, final)
                    raise
            shutil.rmtree(trash, ignore_errors=True)  # in place now: this run, or another writer's
            files.fsync_dir(final.parent)
            if not handle.path.exists():
                return final
        raise StoreError(errno.EBUSY, f"cannot put run {handle.run_id} in place: other writers keep replacing it")

    def recover(self) -> dict[str, int]:
        """Repair what killed writers left (the first call per store object does the work; cheap after).

        Attempts whose process is gone are removed, unless complete with no run in place (then promoted);
        a trashed copy whose replacement never arrived is put back. Returns counts of what was done.
        """
        done = {"removed": 0, "promoted": 0, "restored": 0}
        if self._recovered:
            return done
        self._recovered = True
        base = self.root / ".partial"
        if not base.is_dir():
            return done
        try:
            for exp_dir in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
                for entry in sorted(p for p in exp_dir.iterdir() if p.is_dir()):
                    host = None
                    with contextlib.suppress(OSError, ValueError, AttributeError):
                        host = files.read_json(entry / "status.json").get("host")
                    self._recover_one(entry, exp_dir.name, host, done, "promoted")
            trash = base / ".trash"
            for exp_dir in sorted(p for p in trash.iterdir() if p.is_dir()) if trash.is_dir() else []:
                for entry in sorted(p for p in exp_dir.iterdir() if p.is_dir()):
                    self._recover_one(entry, exp_dir.name, None, done, "restored")
        except OSError:  # best effort: a read-only store is reported by the write that needs it
            pass
        return done

    def _recover_one(self, entry: Path, experiment: str, host: Any, done: dict[str, int], verb: str) -> None:
        """Put a dead writer's complete copy in place if none is there, else remove it."""
        rid, pid = _owner(entry.name)
        if _alive(pid, host):
            return
        final = self.root / experiment / rid
        if not final.exists() and load_run_from(entry, experiment, rid).damage is None:
            try:
                final.parent.mkdir(parents=True, exist_ok=True)
                os.rename(entry, final)
            except OSError:
                pass
            else:
                done[verb] += 1
                return
        shutil.rmtree(entry, ignore_errors=True)
        done["removed"] += 1

    def write_lawbook(self, run_ids: list[str]) -> None:
        """Remember the runs of the last law-book check (what ``lmech report`` shows by default)."""
        self.check_root()
        try:
            files.write_json(self.root / "lawbook.json", {"runs": run_ids, "time": time.time()})
        except OSError as exc:
            raise self._error("write", exc) from exc

    def lawbook(self) -> list[str] | None:
        """The run ids of the last ``lmech check`` (None without one, or if its file is unreadable)."""
        try:
            runs = files.read_json(self.root / "lawbook.json")["runs"]
        except (OSError, ValueError, TypeError, KeyError):
            return None
        return [r for r in runs if isinstance(r, str)] if isinstance(runs, list) else None

    # -- reading ---------------------------------------------------------------------------------
    def _load(self, path: Path, full: bool = False) -> RunRecord:
        """:func:`load_run`, remembered while the run's manifest is the same file (a listing followed by
        lookups reads each run once). ``full`` checks always read every file again."""
        if full:
            return load_run(path, True)
        stamp = _stamp(path / MANIFEST)
        hit = self._cache.get(path)
        if hit is not None and stamp is not None and hit[0] == stamp:
            return hit[1]
        record = load_run(path)
        if record.damage is None and stamp is not None and _stamp(path / MANIFEST) == stamp:
            self._cache[path] = (stamp, record)
        return record

    def _experiment_dirs(self) -> list[Path]:
        self.check_root()
        if not self.root.exists():
            return []
        try:
            return sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")
                          and p.name not in RESERVED)
        except OSError as exc:
            raise self._error("read", exc) from exc

    def _run_dirs(self) -> Iterator[Path]:
        for exp_dir in self._experiment_dirs():
            try:
                entries = sorted(exp_dir.iterdir())
            except OSError:
                continue
            for run_dir in entries:
                if not run_dir.name.startswith(".") and run_dir.is_dir():
                    yield run_dir

    def runs(self, experiment: str | None = None, *, full: bool = False) -> list[RunRecord]:
        """Every stored run (done, failed, diverged or damaged), optionally of one experiment."""
        return [self._load(p, full) for p in self._run_dirs() if experiment is None or p.parent.name == experiment]

    def running(self) -> list[dict[str, Any]]:
        """Attempts in progress, or left behind by a process that died (their pid is given)."""
        base = self.root / ".partial"
        out = []
        if base.is_dir():
            for status in sorted(base.glob("*/*/status.json")):
                if status.parent.parent.name.startswith("."):
                    continue
                try:
                    info = files.read_json(status)
                except (OSError, ValueError):
                    continue
                if isinstance(info, dict) and info.get("status") == "running":
                    out.append({**info, "experiment": status.parent.parent.name,
                                "run_id": _owner(status.parent.name)[0]})
        return out

    def find(self, rid: str) -> list[Path]:
        """Run folders whose name is ``rid`` exactly (if any), else those it is a prefix of."""
        if not rid or "/" in rid or rid.startswith("."):
            return []
        dirs = self._experiment_dirs()
        exact = [d / rid for d in dirs if (d / rid).is_dir()]
        if exact:
            return exact
        found = []
        for d in dirs:
            with contextlib.suppress(OSError):
                found += [d / name for name in os.listdir(d) if name.startswith(rid) and (d / name).is_dir()]
        return sorted(found)

    def get(self, rid: str, *, full: bool = False) -> RunRecord | None:
        """The run with this id (an exact id, or a unique prefix), or None; damaged runs come back as such."""
        matches = self.find(rid)
        if len(matches) > 1:
            intact = [m for m in matches if self._load(m).damage is None]
            if len(intact) == 1:
                matches = intact
            else:
                from lmech.errors import BadInput

                raise BadInput("run id", rid, f"a unique prefix (matches {', '.join(p.name for p in matches)})")
        return self._load(matches[0], full) if matches else None

    def read(self, experiment: str, rid: str, *, full: bool = False) -> RunRecord | None:
        """The run ``rid`` of ``experiment``, read directly by its path (None if there is none)."""
        self.check_root()
        path = self.root / experiment / rid
        return self._load(path, full) if path.is_dir() else None

    def is_finished(self, experiment: str, rid: str) -> bool:
        """True if the run is in place, intact (every checksum) and done or diverged: a rerun skips it."""
        rec = self.read(experiment, rid, full=True)
        return rec is not None and rec.finished

    def verify(self) -> list[RunRecord]:
        """Every run, each file checked against its checksum (damaged runs carry their reason)."""
        return self.runs(full=True)

    def set_aside(self, record: RunRecord) -> Path:
        """Move a damaged run out of the listings, to ``.damaged/<experiment>/<run_id>.<time>``."""
        target = self.root / ".damaged" / record.path.parent.name / f"{record.path.name}.{time.time_ns()}"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(record.path, target)
        except OSError as exc:
            raise self._error("repair", exc) from exc
        return target

    def table(self, experiment: str | None = None) -> pd.DataFrame:
        """One row per stored run: ids, status, config fields and summary metrics as columns.

        Config fields keep their names; a summary metric whose name collides with a config field is
        prefixed ``m_``. Tuples in configs are shown as strings. A damaged run has status ``damaged``
        and its reason in the ``damage`` column.
        """
        rows = []
        for rec in self.runs(experiment):
            row: dict[str, Any] = {"run_id": rec.run_id, "experiment": rec.experiment, "status": rec.status,
                                   "label": rec.meta.get("label", ""),
                                   "holds": rec.holds, "duration_s": rec.status_info.get("duration_s"),
                                   "finished": rec.status_info.get("finished"), "damage": rec.damage}
            for key, value in rec.config.items():
                row[key] = ",".join(map(str, value)) if isinstance(value, list) else value
            for key, value in rec.summary.items():
                row[f"m_{key}" if key in row else key] = value
            rows.append(row)
        columns = ["run_id", "experiment", "status", "label", "holds", "duration_s", "finished", "damage"]
        frame = pd.DataFrame(rows) if rows else pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
        if not frame.empty:
            finished = pd.to_numeric(frame["finished"], errors="coerce")
            frame["finished"] = pd.to_datetime(finished, unit="s").dt.strftime("%Y-%m-%d %H:%M:%S")
        return frame

    def query(self, sql: str) -> pd.DataFrame:
        """Run SQL (DuckDB) over :meth:`table`, exposed as a table named ``runs``.

        The SQL may be untrusted: the connection has no file system or network access
        (``enable_external_access``), installs and loads no extension, scans no Python variable but
        ``runs``, and its configuration is locked, so ``read_csv``, ``glob``, ``COPY ... TO``,
        ``ATTACH``, ``INSTALL`` and ``SET`` are refused while queries over ``runs`` work.
        """
        import duckdb

        runs = self.table()
        con = duckdb.connect(":memory:", config={
            "enable_external_access": False, "autoinstall_known_extensions": False,
            "autoload_known_extensions": False, "allow_community_extensions": False,
            "python_enable_replacements": False, "lock_configuration": True})
        try:
            con.register("runs", runs)
            return con.execute(sql).df()
        finally:
            con.close()


def load_run_from(path: Path, experiment: str, rid: str) -> RunRecord:
    """Check a folder not (yet) in place, an attempt or a trashed copy, as run ``<experiment>/<rid>``
    (every checksum); a failed check gives a ``damaged`` record."""
    try:
        return _inspect(path, True, experiment, rid)
    except _Damaged as exc:
        reason = str(exc)
    except OSError as exc:
        reason = f"unreadable ({exc.strerror or exc})"
    return RunRecord(path, rid, experiment, DAMAGED, {}, {}, {"status": DAMAGED, "damage": reason}, damage=reason)
