"""``lmech check [NAMES]``: run the law book, print the verdicts, write the HTML report."""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

from rich.progress import Progress

from lmech.cli.common import (
    EXIT_VIOLATED,
    RichProgress,
    bars,
    exit_code,
    out,
    outcome_json,
    print_json,
    store_of,
)
from lmech.cli.tables import terminal_width, wrap
from lmech.cli.verdicts import STATE_COLOR, details_lines, summary_lines
from lmech.errors import BadInput


class WorkerBars:
    """One bar per law-book entry being computed by a worker process, read from the progress files the
    workers write (``$LMECH_PROGRESS_DIR``, see :mod:`lmech.progress`), refreshed a few times a second."""

    def __init__(self, shown: Progress, folder: Path, names: dict[str, str], interval: float = 0.3):
        self.shown, self.folder, self.names, self.interval = shown, folder, names, interval
        self.tasks: dict[str, Any] = {}
        self.finished: set[str] = set()
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> WorkerBars:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()

    def _loop(self) -> None:
        from lmech.progress import read_progress

        while not self.stop.wait(self.interval):
            with self.lock:
                for rid, name in self.names.items():
                    if rid in self.finished:
                        continue
                    state = read_progress(self.folder / f"{rid}.json")
                    if state is None:
                        continue
                    desc = f"  {name}: {state.get('description', '')}".rstrip(": ")
                    if rid not in self.tasks:
                        self.tasks[rid] = self.shown.add_task(desc, total=state.get("total") or None)
                    self.shown.update(self.tasks[rid], description=desc, total=state.get("total") or None,
                                      completed=min(state.get("done", 0), state.get("total") or 0))

    def done(self, rid: str) -> None:
        with self.lock:
            self.finished.add(rid)
            task = self.tasks.pop(rid, None)
            if task is not None:
                self.shown.remove_task(task)


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"


def progress_folder() -> Path:
    """This process's folder for its workers' progress files, exported as ``$LMECH_PROGRESS_DIR``.

    One folder per driver process, set once: worker processes forked from a server started earlier keep
    the environment they were started with, so the path must not change afterwards.
    """
    from lmech.progress import PROGRESS_DIR_ENV

    folder = os.environ.get(PROGRESS_DIR_ENV)
    if not folder:
        folder = os.path.join(tempfile.gettempdir(), f"lmech-progress-{os.getpid()}")
        os.environ[PROGRESS_DIR_ENV] = folder
    Path(folder).mkdir(parents=True, exist_ok=True)
    return Path(folder)


def cmd_check(args: argparse.Namespace) -> int:
    from lmech import experiments
    from lmech.config import apply_overrides, to_dict
    from lmech.report.html import write_report
    from lmech.store import run_id

    names = args.names or experiments.names()
    exps = [experiments.get(n) for n in names]  # unknown names exit 2 before work
    entries = []
    for exp in exps:
        for label, config in exp.lawbook(quick=not args.full):
            overrides = {k: v for k, v in (("device", args.device), ("seed", args.seed)) if v is not None}
            entries.append((exp, label, apply_overrides(config, overrides)))
    store = store_of(args)
    workers = args.workers if args.workers is not None else (os.cpu_count() or 1)
    if workers < 1:
        raise BadInput("--workers", workers, "a number of worker processes >= 1")
    outcomes: dict[int, Any] = {}
    kind = "full" if args.full else "quick"
    if not args.json:
        head = (f"The law book ({kind} configs): {plural(len(entries), 'entry', 'entries')} of "
                f"{plural(len(exps), 'law')}, {min(workers, len(entries))} at a time")
        for part in wrap(head, terminal_width()):
            out.print(part, highlight=False, markup=False)
    with bars(not args.json) as shown:
        book = shown.add_task("law book", total=len(entries)) if isinstance(shown, Progress) else None

        def finished(i: int, outcome) -> None:
            outcomes[i] = outcome
            if book is not None:
                shown.advance(book)
                word = outcome.verdict
                cached = ", cached" if outcome.cached else ""
                shown.console.print(f"{outcome.experiment} {outcome.label}: [{STATE_COLOR.get(word, 'red')}]{word}[/] "
                                    f"({outcome.duration_s:.1f} s{cached})", highlight=False)

        pending = []
        for i, (exp, label, config) in enumerate(entries):
            rid = run_id(exp.name, to_dict(config))
            if not args.force and store.is_finished(exp.name, rid):
                finished(i, experiments.execute(exp, config, store=store, label=label))  # read back
            else:
                pending.append(i)
        if workers > 1 and len(pending) > 1:
            # Independent runs: a process pool (one torch thread each), the driver alone writes the store.
            from lmech.experiments.runner import store_run
            from lmech.sweeps.executors import LocalExecutor, Task

            tasks = {run_id(entries[i][0].name, to_dict(entries[i][2])): i for i in pending}
            folder = progress_folder()
            for rid in tasks:
                (folder / f"{rid}.json").unlink(missing_ok=True)
            names_of = {rid: f"{entries[i][0].name} {entries[i][1]}".strip() for rid, i in tasks.items()}
            executor = LocalExecutor(min(workers, len(pending)))
            watcher = WorkerBars(shown, folder, names_of) if isinstance(shown, Progress) else None
            try:
                if watcher is not None:
                    watcher.__enter__()
                for run in executor.run(Task(entries[i][0].name, to_dict(entries[i][2]), entries[i][1])
                                        for i in pending):
                    if watcher is not None:
                        watcher.done(run.run_id)
                    finished(tasks[run.run_id], run.outcome(store_run(store, run, force=args.force)))
            finally:
                if watcher is not None:
                    watcher.__exit__()
                for rid in tasks:
                    (folder / f"{rid}.json").unlink(missing_ok=True)
                with contextlib.suppress(OSError):
                    folder.rmdir()  # when empty; the next check makes it again
        else:
            for i in pending:
                exp, label, config = entries[i]
                progress = RichProgress(shown if isinstance(shown, Progress) else None,
                                        prefix=f"{exp.name} {label}".strip())
                finished(i, experiments.execute(exp, config, store=store, progress=progress, label=label,
                                                force=args.force))
                progress.close()
    outcomes = [outcomes[i] for i in range(len(entries))]
    store.write_lawbook([o.run_id for o in outcomes])
    report = write_report(store, Path(args.out) if args.out else None, [o.run_id for o in outcomes])
    if args.json:
        print_json({"verdicts": [v for o in outcomes for v in o.verdicts], "runs": [outcome_json(o) for o in outcomes],
                    "holds": all(o.holds for o in outcomes), "configs": kind, "report": str(report)})
    else:
        for line in details_lines(outcomes) if args.details else summary_lines(outcomes):
            out.print(line)
        counts = {w: sum(o.verdict == w for o in outcomes) for w in ("holds", "violated", "inconclusive", "failed")}
        said = ", ".join(f"{n} {w if w != 'holds' or n == 1 else 'hold'}" for w, n in counts.items() if n)
        extra = " (inconclusive: a precondition was not met, so the law was not tested)" if counts["inconclusive"] else ""
        footer = [f"{plural(len(outcomes), 'entry', 'entries')}: {said}{extra}."]
        if not args.details:
            footer.append("Every criterion, its tolerance and why: `lmech check --details`.")
        for line in footer:
            for part in wrap(line, terminal_width()):
                out.print(part, highlight=False, markup=False)
        out.print(f"Report: {report}", highlight=False, markup=False, soft_wrap=True)  # a path: never broken
    # A law book must test its laws: an inconclusive entry fails the check.
    return exit_code(outcomes, inconclusive=EXIT_VIOLATED)


def add(sub, common: argparse.ArgumentParser) -> None:
    s = sub.add_parser("check", parents=[common], help="run the law book, print the verdicts, write the report",
                       description="Run the law book (all laws, or NAMES), print one line per entry (law, entry, "
                       "criteria held, the worst criterion against its tolerance, verdict) and write the HTML report.",
                       epilog="Exit codes: 0 every entry holds, 1 an entry is violated or inconclusive (the law "
                       "book must test its laws), 2 bad input, 3 a run crashed.")
    s.add_argument("names", nargs="*", help="laws to check (default: all)")
    g = s.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", default=True, help="quick configs (default)")
    g.add_argument("--full", action="store_true", help="the default (published-setting) configs")
    s.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps")
    s.add_argument("--seed", type=int, default=None, help="seed for every run")
    s.add_argument("--force", action="store_true", help="recompute runs already stored")
    s.add_argument("--workers", type=int, default=None,
                   help="run the law book's entries in N worker processes (default: one per core; 1 = in "
                   "this process)")
    s.add_argument("--details", action="store_true",
                   help="print every criterion (agreement, tolerance, what it measures, why the tolerance)")
    s.add_argument("--out", metavar="PATH", default=None, help="report path (default: <store>/report.html)")
    s.add_argument("--json", action="store_true", help="print one JSON object with the verdicts")
    s.set_defaults(func=cmd_check)
