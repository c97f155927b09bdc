"""The law book: one module per law, each an :class:`Experiment`, registered by name.

``lmech.experiments.get("deep-linear")`` returns an experiment; ``run(name, **overrides)`` is the
three-line path from a notebook.
"""

from __future__ import annotations

from lmech.experiments.base import Experiment, Result, RunConfig, Verdict
from lmech.experiments.registry import get, names, register
from lmech.experiments.runner import RunOutcome, execute

# Registration order is law-book order.
from lmech.experiments import deep_linear  # noqa: E402,F401  isort: skip
from lmech.experiments import edge_of_stability  # noqa: E402,F401  isort: skip
from lmech.experiments import ntk_convergence  # noqa: E402,F401  isort: skip
from lmech.experiments import linearized_training  # noqa: E402,F401  isort: skip
from lmech.experiments import eigenlearning  # noqa: E402,F401  isort: skip
from lmech.experiments import lazy_rich  # noqa: E402,F401  isort: skip


def run(name: str, *, store=None, quick: bool = False, force: bool = False, **overrides) -> RunOutcome:
    """Run law ``name`` with config fields overridden by keyword, e.g. ``run("deep-linear", depth=3)``.

    ``store`` is a :class:`lmech.store.RunStore` (or a path) to record the run in; None keeps it in memory.
    """
    from lmech.config import apply_overrides
    from lmech.store import RunStore

    exp = get(name)
    config = apply_overrides(exp.quick_config() if quick else exp.default_config(), overrides)
    if store is not None and not isinstance(store, RunStore):
        store = RunStore(store)
    return execute(exp, config, store=store, force=force)


__all__ = ["Experiment", "Result", "RunConfig", "RunOutcome", "Verdict", "execute", "get", "names", "register",
           "run"]
