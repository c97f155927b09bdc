"""The law book: one module per law, each an :class:`Experiment`, registered by name.

``lmech.experiments.get("deep-linear")`` returns an experiment; ``run(name, **overrides)`` is the
three-line path from a notebook.
"""

from __future__ import annotations

from lmech.experiments.base import Counterexample, Criterion, Experiment, Result, RunConfig, Verdict
from lmech.experiments.registry import get, names, register
from lmech.experiments.runner import RunOutcome, execute

# Registration order is law-book order.
from lmech.experiments import deep_linear  # noqa: E402,F401  isort: skip
from lmech.experiments import edge_of_stability  # noqa: E402,F401  isort: skip
from lmech.experiments import edge_of_stability_adam  # noqa: E402,F401  isort: skip
from lmech.experiments import edge_of_stochastic_stability  # noqa: E402,F401  isort: skip
from lmech.experiments import ntk_convergence  # noqa: E402,F401  isort: skip
from lmech.experiments import linearized_training  # noqa: E402,F401  isort: skip
from lmech.experiments import eigenlearning  # noqa: E402,F401  isort: skip
from lmech.experiments import eigenlearning_universality  # noqa: E402,F401  isort: skip
from lmech.experiments import lazy_rich  # noqa: E402,F401  isort: skip
from lmech.experiments import scaling_exponents  # noqa: E402,F401  isort: skip
from lmech.experiments import scaling_frontier  # noqa: E402,F401  isort: skip
from lmech.experiments import scaling_digits  # noqa: E402,F401  isort: skip
from lmech.experiments import coord_check  # noqa: E402,F401  isort: skip
from lmech.experiments import mu_transfer  # noqa: E402,F401  isort: skip
from lmech.experiments import depth_transfer  # noqa: E402,F401  isort: skip
from lmech.experiments import central_flow  # noqa: E402,F401  isort: skip
from lmech.experiments import representation_convergence  # noqa: E402,F401  isort: skip
from lmech.experiments import representation_alignment  # noqa: E402,F401  isort: skip
from lmech.experiments import scaling_law  # noqa: E402,F401  isort: skip
from lmech.experiments import catapult  # noqa: E402,F401  isort: skip
from lmech.experiments import critical_batch  # noqa: E402,F401  isort: skip


def run(name: str, *, store=None, quick: bool = False, force: bool = False, entry: str | None = None,
        progress=True, **overrides) -> RunOutcome:
    """Run law ``name`` with config fields overridden by keyword, e.g. ``run("deep-linear", depth=3)``.

    ``store`` is a :class:`lmech.store.RunStore` (or a path) to record the run in; None keeps it in memory.
    ``entry`` starts from a law-book entry (``lmech list NAME`` lists them; the quick law book's with
    ``quick=True``). ``progress=True`` draws a progress bar (in a Jupyter cell, or on a terminal's stderr;
    :func:`lmech.progress.auto_progress`); False draws none; or pass any object with ``start(total,
    description)`` and ``advance(n)``.
    """
    from lmech.config import apply_overrides
    from lmech.progress import auto_progress
    from lmech.store import RunStore

    exp = get(name)
    config = apply_overrides(entry_config(exp, entry, quick), overrides)
    if store is not None and not isinstance(store, RunStore):
        store = RunStore(store)
    shown = auto_progress(name) if progress is True else (progress or None)
    try:
        return execute(exp, config, store=store, force=force, progress=shown)
    finally:
        if shown is not None and shown is not progress and hasattr(shown, "close"):
            shown.close()


def entry_config(exp: Experiment, entry: str | None = None, quick: bool = False) -> RunConfig:
    """The config of law-book entry ``entry`` (the quick law book's if ``quick``), or with ``entry=None`` the
    default (or quick) config: what ``lmech run NAME [--quick] [--entry LABEL]`` runs."""
    from lmech.errors import BadInput

    if entry is None:
        return exp.quick_config() if quick else exp.default_config()
    entries = dict(exp.lawbook(quick=quick))
    if entry not in entries:
        shown = ", ".join(repr(label) for label in entries)
        raise BadInput("entry", entry, f"a law-book entry of {exp.name}{' (quick)' if quick else ''}: {shown}")
    return entries[entry]


__all__ = ["Counterexample", "Criterion", "Experiment", "Result", "RunConfig", "RunOutcome", "Verdict", "entry_config",
           "execute", "get", "names", "register", "run"]
