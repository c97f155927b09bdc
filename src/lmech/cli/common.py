"""What every ``lmech`` command shares: exit codes, consoles, progress bars, the store and config options.

Commands (one module each in this package) depend on this module and on the library; nothing in the
library depends on the CLI.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

#: Exit codes of every command. ``lmech run`` exits 4 when a criterion could not be tested (inconclusive);
#: ``lmech check`` counts an inconclusive law-book entry as a failure to test the law (exit 1).
EXIT_OK, EXIT_VIOLATED, EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INCONCLUSIVE, EXIT_STORAGE = 0, 1, 2, 3, 4, 5
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = ("Exit codes: 0 laws hold, 1 a law is violated, 2 bad input (nothing ran), 3 a run crashed, "
                   "4 inconclusive (a criterion's precondition was not met), 5 the store could not be "
                   "written or read, 130 interrupted.")

out = Console(highlight=False, soft_wrap=True, emoji=False)
err = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


class RichProgress:
    """Adapter from lmech's Progress protocol to a rich progress bar (drawn on stderr)."""

    def __init__(self, progress: Progress | None, prefix: str = ""):
        self.progress, self.task, self.prefix = progress, None, prefix

    def start(self, total: int, description: str) -> None:
        if self.progress is None:
            return
        if self.task is not None:
            self.progress.remove_task(self.task)
        text = f"{self.prefix}: {description}" if self.prefix else description
        self.task = self.progress.add_task(text, total=total)

    def advance(self, n: int = 1) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.advance(self.task, n)

    def close(self) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None


class NoBars:
    """Stands in for a rich ``Progress`` when bars are off (``with bars(False) as b`` gives None)."""

    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def bars(enabled: bool) -> Progress | NoBars:
    """A rich progress display on stderr, or a stand-in when ``enabled`` is false."""
    if not enabled:
        return NoBars()
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=err, transient=True)


def store_of(args: argparse.Namespace, *, existing: bool = False):
    """The run store named by ``--store`` (default ``$LMECH_STORE`` or ``./lab``).

    ``existing``: the command only reads the store, so a folder that does not exist is bad input (a
    typo in ``--store`` must not create a folder and an empty report).
    """
    from lmech.errors import BadInput
    from lmech.store import RunStore

    store = RunStore(args.store) if getattr(args, "store", None) else RunStore()
    store.check_root()  # a path that is a file is a storage error (exit 5), not a typo
    if existing and not store.root.is_dir():
        raise BadInput("--store", str(store.root), "an existing run store folder (`lmech run` or `lmech check` "
                       "creates one; $LMECH_STORE or ./lab by default)")
    return store


def config_of(exp, args: argparse.Namespace):
    """The config of ``lmech run``/``sweep``: default or quick (or a law-book entry with ``--entry``), then
    --seed/--device, then --set."""
    from lmech.config import apply_overrides
    from lmech.experiments import entry_config

    base = entry_config(exp, getattr(args, "entry", None), getattr(args, "quick", False))
    overrides: dict[str, Any] = {}
    if getattr(args, "seed", None) is not None:
        overrides["seed"] = args.seed
    if getattr(args, "device", None) is not None:
        overrides["device"] = args.device
    config = apply_overrides(base, overrides)
    return apply_overrides(config, args.set or [])


def fmt(value: Any) -> str:
    """Text for a number or a list: integers as integers, lists in full (:mod:`lmech.report.format`)."""
    from lmech.report.format import value as _value

    return _value(value)


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str, allow_nan=True))


def outcome_json(o) -> dict[str, Any]:
    """A run outcome as JSON: ``verdict`` is holds, violated, inconclusive, failed or no verdict."""
    return {"experiment": o.experiment, "run_id": o.run_id, "label": o.label, "status": o.status,
            "verdict": o.verdict, "holds": o.holds, "cached": o.cached, "path": str(o.path) if o.path else None,
            "error": o.error, "duration_s": o.duration_s, "summary": o.summary}


def exit_code(outcomes: Sequence[Any], *, inconclusive: int = EXIT_INCONCLUSIVE) -> int:
    """0 all hold; 3 a run crashed; 1 a law is violated; ``inconclusive`` (4, or 1 for the law book) when
    a criterion could not be tested."""
    verdicts = [o.verdict for o in outcomes]
    if "failed" in verdicts:
        return EXIT_FAILED
    if "violated" in verdicts or "no verdict" in verdicts:
        return EXIT_VIOLATED
    if "inconclusive" in verdicts:
        return inconclusive
    return EXIT_OK


def common_parser() -> argparse.ArgumentParser:
    """Options every command takes (``--store``)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--store", metavar="PATH", default=None,
                        help="run store folder (default: $LMECH_STORE or ./lab)")
    return common


def run_options(s: argparse.ArgumentParser) -> None:
    """The options that build a config (``run`` and ``sweep``)."""
    s.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config field (repeatable); `lmech list NAME` shows the fields")
    s.add_argument("--quick", action="store_true", help="start from the quick config (the law book's)")
    s.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (checked before any work)")
    s.add_argument("--seed", type=int, default=None, help="the run's seed")
