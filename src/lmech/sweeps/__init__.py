"""Sweeps: a law over a grid or random search of configs, on local processes or a Ray cluster.

From a notebook::

    from lmech.store import RunStore
    from lmech.sweeps import LocalExecutor, SweepSpec, plan, run_sweep

    sweep = plan(SweepSpec("deep-linear", quick=True, grid=("depth=2,3", "init_scale=log:1e-4:1e-2:3"), seeds=2))
    report = run_sweep(sweep, RunStore("lab"), LocalExecutor(workers=2))
    RunStore("lab").query("select depth, init_scale, avg(t_half_err) from runs group by all")

Every config is validated by :func:`plan` before any work; :func:`run_sweep` skips runs already
finished in the store (resume), computes the rest on the executor's workers and writes each result
from the driver alone (workers never touch the store).
"""

from lmech.sweeps.executors import LocalExecutor, RayExecutor, Task, load_plugins, make_executor, run_task
from lmech.sweeps.grid import Axis, Range, parse_axis, parse_range, sample
from lmech.sweeps.sweep import Sweep, SweepPoint, SweepReport, SweepSpec, pending, plan, run_sweep

__all__ = ["Axis", "LocalExecutor", "Range", "RayExecutor", "Sweep", "SweepPoint", "SweepReport", "SweepSpec", "Task",
           "load_plugins", "make_executor", "parse_axis", "parse_range", "pending", "plan", "run_sweep", "run_task",
           "sample"]
