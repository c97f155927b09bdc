"""The run store: a folder per run, atomic writes, content-addressed run ids, tables and SQL.

``RunStore(path).table()`` gives a pandas DataFrame of every run; ``RunStore(path).query(sql)`` runs
DuckDB SQL over it as a table named ``runs``.
"""

from lmech.store.runstore import (
    DAMAGED,
    FINISHED,
    STATUSES,
    RunHandle,
    RunRecord,
    RunStore,
    StoreError,
    default_root,
    load_run,
    run_id,
)

__all__ = ["DAMAGED", "FINISHED", "STATUSES", "RunHandle", "RunRecord", "RunStore", "StoreError", "default_root", "load_run",
           "run_id"]
