"""Progress of a long run, wherever it runs: a notebook, a terminal, or a worker process.

Experiments report through the two-method protocol of :class:`lmech.experiments.base.Progress`
(``start(total, description)``, ``advance(n)``). This module implements it for each place a run can be
watched from:

* :class:`NotebookProgress`: an HTML bar in a Jupyter output cell, redrawn in place through
  ``IPython.display`` (no ipywidgets needed; a static notebook shows the last state);
* :class:`TerminalProgress`: a rich bar on stderr;
* :class:`FileProgress`: the state written to a small JSON file (atomically, at most a few times a
  second), which a driver process reads to draw its workers' progress (``lmech check --workers N``).
  A worker writes one when ``$LMECH_PROGRESS_DIR`` is set (:func:`progress_from_env`).

:func:`auto_progress` picks the one that fits: a notebook bar inside a Jupyter kernel, a terminal bar
when stderr is a terminal, nothing otherwise.
"""

from __future__ import annotations

import html
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

PROGRESS_DIR_ENV = "LMECH_PROGRESS_DIR"


class NotebookProgress:
    """A progress bar in a Jupyter cell: one line per stage (description, bar, count, elapsed time)."""

    def __init__(self, title: str = "", min_interval: float = 0.2):
        from IPython.display import HTML, display

        self._html, self.title, self.min_interval = HTML, title, min_interval
        self.total, self.done, self.description = 0, 0, ""
        self.t0 = self._last = time.monotonic()
        self.handle = display(self._html(self._render()), display_id=True)

    def _render(self) -> str:
        total = max(self.total, 1)
        frac = min(self.done / total, 1.0)
        elapsed = time.monotonic() - self.t0
        title = f"<b>{html.escape(self.title)}</b> " if self.title else ""
        return (f'<div class="lmech-progress" style="font-family: monospace">{title}{html.escape(self.description)} '
                f'<progress value="{frac:.4f}" max="1" style="width: 40%; vertical-align: middle"></progress> '
                f"{min(self.done, self.total)}/{self.total} &middot; {elapsed:.1f} s</div>")

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= self.min_interval:
            self._last = now
            self.handle.update(self._html(self._render()))

    def start(self, total: int, description: str) -> None:
        self.total, self.done, self.description = int(total), 0, description
        self._draw(force=True)

    def advance(self, n: int = 1) -> None:
        self.done += n
        self._draw(force=self.done >= self.total)

    def close(self) -> None:
        self._draw(force=True)


class TerminalProgress:
    """A rich progress bar on stderr, one task per stage; :meth:`close` removes it."""

    def __init__(self, title: str = ""):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.title = title
        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=Console(stderr=True), transient=True)
        self.bar.start()
        self.task = None

    def start(self, total: int, description: str) -> None:
        if self.task is not None:
            self.bar.remove_task(self.task)
        self.task = self.bar.add_task(f"{self.title} {description}".strip(), total=total)

    def advance(self, n: int = 1) -> None:
        if self.task is not None:
            self.bar.advance(self.task, n)

    def close(self) -> None:
        self.bar.stop()


class FileProgress:
    """Progress written to ``path`` as ``{"description", "total", "done", "time"}`` (atomic replace,
    at most every ``min_interval`` seconds, always at the start and the end of a stage)."""

    def __init__(self, path: str | Path, min_interval: float = 0.25):
        self.path, self.min_interval = Path(path), min_interval
        self.total, self.done, self.description, self._last = 0, 0, "", 0.0

    def _write(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.min_interval:
            return
        self._last = now
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"description": self.description, "total": self.total, "done": self.done,
                                       "time": time.time()}))
            os.replace(tmp, self.path)
        except OSError:  # progress is a courtesy: never fail a run over it
            pass

    def start(self, total: int, description: str) -> None:
        self.total, self.done, self.description = int(total), 0, description
        self._write(force=True)

    def advance(self, n: int = 1) -> None:
        self.done += n
        self._write(force=self.done >= self.total)


def read_progress(path: str | Path) -> dict[str, Any] | None:
    """What a :class:`FileProgress` last wrote (None if nothing readable yet)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def progress_from_env(run_id: str) -> FileProgress | None:
    """A :class:`FileProgress` at ``$LMECH_PROGRESS_DIR/<run_id>.json`` when that variable is set."""
    folder = os.environ.get(PROGRESS_DIR_ENV)
    return FileProgress(Path(folder) / f"{run_id}.json") if folder else None


def in_notebook() -> bool:
    """True inside a Jupyter (IPython kernel) session."""
    if "IPython" not in sys.modules:
        return False
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:  # pragma: no cover
        return False
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def auto_progress(title: str = ""):
    """A notebook bar in Jupyter, a terminal bar when stderr is a terminal, else None (nothing shown)."""
    if in_notebook():
        return NotebookProgress(title)
    if sys.stderr.isatty():
        return TerminalProgress(title)
    return None


__all__ = ["FileProgress", "NotebookProgress", "PROGRESS_DIR_ENV", "TerminalProgress", "auto_progress",
           "in_notebook", "progress_from_env", "read_progress"]
