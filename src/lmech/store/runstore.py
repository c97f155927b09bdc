"""The run store: a folder per run that loses nothing.

Layout under the store root (``lab/`` by default, ``--store PATH`` or ``LMECH_STORE`` to move it)::

    <experiment>/<run_id>/config.json     full config, seed, versions, device, label
                          status.json     done | failed | diverged, timings, traceback, diverged step
                          summary.json    scalar metrics (columns of the runs table)
                          verdict.json    the verdicts of the run
                          series/*.parquet         measured series (one table each)
                          prediction/*.parquet     the theory's series
                          figures/*.png
    .partial/<experiment>/<run_id>/      a run in progress (status "running")
    lawbook.json                          the run ids of the last ``lmech check``

A run is built in ``.partial/`` and moved to its final place by one ``rename`` when it finishes, so a
run that dies (SIGKILL, power loss, Ctrl-C) never lists as finished and never leaves a half-written
folder among the results; the next attempt at the same run id discards the leftover and starts over.
Run ids are content hashes of the experiment name and the normalized config (seed and device
included), so a rerun of the same config finds its finished run.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import socket
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
DEFAULT_ROOT = "lab"


def default_root() -> Path:
    """The store root: ``$LMECH_STORE`` if set, else ``./lab``."""
    return Path(os.environ.get("LMECH_STORE") or DEFAULT_ROOT)


def run_id(experiment: str, config: dict[str, Any]) -> str:
    """Content address of a run: SHA-256 of the experiment name and the normalized config.

    The config dict (seed and device among its fields) is serialized as canonical JSON (sorted keys,
    no whitespace, floats in their shortest round-trip form), so equal configs give equal ids.
    """
    canonical = json.dumps({"experiment": experiment, "config": config}, sort_keys=True,
                           separators=(",", ":"), allow_nan=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def environment() -> dict[str, str]:
    """Versions and host recorded with every run."""
    import numpy
    import torch

    import lmech

    return {"lmech": lmech.__version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "python": platform.python_version(), "platform": platform.platform(),
            "host": socket.gethostname()}


class RunHandle:
    """A run being written: the sink that experiments and the Monitor write into.

    ``append(series, row)`` buffers rows of a metric series (the Monitor's sink protocol);
    ``write_series`` stores a whole table; ``finish`` writes the status last and moves the folder to
    its final place atomically.
    """

    def __init__(self, store: RunStore, experiment: str, rid: str, path: Path):
        self.store, self.experiment, self.run_id, self.path = store, experiment, rid, path
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
        """Record the final status and move the run from ``.partial/`` to its final place."""
        if status not in STATUSES[1:]:
            raise ValueError(f"final status must be one of {STATUSES[1:]}, got {status!r}")
        self.flush()
        record = {"status": status, "started": self.started, "finished": time.time(),
                  "duration_s": time.time() - self.started, **info}
        files.write_json(self.path / "status.json", record)
        return self.store._promote(self)

    def fail(self, exc: BaseException) -> Path:
        """Finish as ``failed``, keeping the traceback."""
        tb = "".join(_traceback.format_exception(type(exc), exc, exc.__traceback__))
        return self.finish("failed", error=f"{type(exc).__name__}: {exc}", traceback=tb)


@dataclass
class RunRecord:
    """A finished run as read back from the store."""

    path: Path
    run_id: str
    experiment: str
    status: str
    config: dict[str, Any]
    meta: dict[str, Any]
    status_info: dict[str, Any]
    summary: dict[str, Any] = field(default_factory=dict)
    verdicts: list[dict[str, Any]] = field(default_factory=list)

    def series(self, name: str, kind: str = "series") -> pd.DataFrame:
        """One stored table (measured ``series`` or theory ``prediction``)."""
        return pd.read_parquet(self.path / kind / f"{name}.parquet")

    def series_names(self, kind: str = "series") -> list[str]:
        return sorted(p.stem for p in (self.path / kind).glob("*.parquet"))

    def figures(self) -> list[Path]:
        return sorted((self.path / "figures").glob("*.png"))

    @property
    def holds(self) -> bool | None:
        if not self.verdicts:
            return None
        return all(v.get("holds") for v in self.verdicts)

    @property
    def verdict(self) -> str | None:
        """``holds``, ``violated`` or ``inconclusive`` from the stored verdicts (None without any)."""
        return overall_status(self.verdicts)


class RunStore:
    """The folder of runs; see the module docstring for its layout and guarantees."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_root()

    def __repr__(self) -> str:
        return f"RunStore({str(self.root)!r})"

    # -- writing ---------------------------------------------------------------------------------
    def begin(self, experiment: str, config: dict[str, Any], meta: dict[str, Any]) -> RunHandle:
        """Start a run: a fresh ``.partial`` folder holding ``config.json`` and a running status."""
        rid = run_id(experiment, config)
        path = self.root / ".partial" / experiment / rid
        if path.exists():  # leftover of an attempt that died: it is discarded, never resumed half-way
            shutil.rmtree(path)
        path.mkdir(parents=True)
        record = {"experiment": experiment, "run_id": rid, "config": config,
                  "seed": config.get("seed"), **environment(), **meta}
        files.write_json(path / "config.json", record)
        files.write_json(path / "status.json", {"status": "running", "pid": os.getpid(),
                                                "started": time.time()})
        return RunHandle(self, experiment, rid, path)

    def _promote(self, handle: RunHandle) -> Path:
        final = self.root / handle.experiment / handle.run_id
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():  # a rerun replaces an older result (failed, or forced): swap it out first
            trash = self.root / ".partial" / ".trash" / f"{handle.run_id}-{os.getpid()}-{time.time_ns()}"
            trash.parent.mkdir(parents=True, exist_ok=True)
            os.replace(final, trash)
            os.replace(handle.path, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(handle.path, final)
        return final

    def write_lawbook(self, run_ids: list[str]) -> None:
        """Remember the runs of the last law-book check (what ``lmech report`` shows by default)."""
        files.write_json(self.root / "lawbook.json", {"runs": run_ids, "time": time.time()})

    def lawbook(self) -> list[str] | None:
        path = self.root / "lawbook.json"
        return files.read_json(path)["runs"] if path.exists() else None

    # -- reading ---------------------------------------------------------------------------------
    def _run_dirs(self) -> Iterator[Path]:
        if not self.root.exists():
            return
        for exp_dir in sorted(self.root.iterdir()):
            if not exp_dir.is_dir() or exp_dir.name.startswith("."):
                continue
            for run_dir in sorted(exp_dir.iterdir()):
                if (run_dir / "status.json").exists() and not run_dir.name.startswith("."):
                    yield run_dir

    def _load(self, path: Path) -> RunRecord:
        meta = files.read_json(path / "config.json")
        status = files.read_json(path / "status.json")
        summary = files.read_json(path / "summary.json") if (path / "summary.json").exists() else {}
        verdicts = files.read_json(path / "verdict.json") if (path / "verdict.json").exists() else []
        return RunRecord(path=path, run_id=meta["run_id"], experiment=meta["experiment"],
                         status=status["status"], config=meta["config"], meta=meta, status_info=status,
                         summary=summary, verdicts=verdicts)

    def runs(self, experiment: str | None = None) -> list[RunRecord]:
        """Every finished run (done, failed or diverged), optionally of one experiment."""
        out = [self._load(p) for p in self._run_dirs()]
        return [r for r in out if experiment is None or r.experiment == experiment]

    def running(self) -> list[dict[str, Any]]:
        """Runs in progress, or left behind by a process that died (their pid is given)."""
        base = self.root / ".partial"
        out = []
        if base.exists():
            for status in base.glob("*/*/status.json"):
                try:
                    info = files.read_json(status)
                except (OSError, ValueError):
                    continue
                out.append({"experiment": status.parent.parent.name, "run_id": status.parent.name, **info})
        return out

    def get(self, rid: str) -> RunRecord | None:
        """The finished run with this id (a unique prefix is enough), or None."""
        matches = [p for p in self._run_dirs() if p.name.startswith(rid)]
        if len(matches) > 1:
            from lmech.errors import BadInput

            raise BadInput("run id", rid, f"a unique prefix (matches {', '.join(p.name for p in matches)})")
        return self._load(matches[0]) if matches else None

    def is_finished(self, experiment: str, rid: str) -> bool:
        """True if the run exists with status done or diverged (a result: a rerun skips it)."""
        status = self.root / experiment / rid / "status.json"
        return status.exists() and files.read_json(status)["status"] in FINISHED

    def table(self, experiment: str | None = None) -> pd.DataFrame:
        """One row per finished run: ids, status, config fields and summary metrics as columns.

        Config fields keep their names; a summary metric whose name collides with a config field is
        prefixed ``m_``. Tuples in configs are shown as strings.
        """
        rows = []
        for rec in self.runs(experiment):
            row: dict[str, Any] = {"run_id": rec.run_id, "experiment": rec.experiment, "status": rec.status,
                                   "label": rec.meta.get("label", ""),
                                   "holds": rec.holds, "duration_s": rec.status_info.get("duration_s"),
                                   "finished": rec.status_info.get("finished")}
            for key, value in rec.config.items():
                row[key] = ",".join(map(str, value)) if isinstance(value, list) else value
            for key, value in rec.summary.items():
                row[f"m_{key}" if key in row else key] = value
            rows.append(row)
        columns = ["run_id", "experiment", "status", "label", "holds", "duration_s", "finished"]
        frame = pd.DataFrame(rows) if rows else pd.DataFrame({c: pd.Series(dtype="object") for c in columns})
        if not frame.empty:
            frame["finished"] = pd.to_datetime(frame["finished"], unit="s").dt.strftime("%Y-%m-%d %H:%M:%S")
        return frame

    def query(self, sql: str) -> pd.DataFrame:
        """Run SQL (DuckDB) over :meth:`table`, exposed as a table named ``runs``."""
        import duckdb

        runs = self.table()  # noqa: F841  (DuckDB finds the local DataFrame by name)
        con = duckdb.connect()
        try:
            con.register("runs", runs)
            return con.execute(sql).df()
        finally:
            con.close()
