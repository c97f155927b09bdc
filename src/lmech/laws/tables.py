"""Runs from a user's table (a pandas DataFrame, e.g. read from a CSV): columns named, every row checked.

Bad input is reported before any fitting, naming the column (with the closest existing names) or the
row (1-based, with its line in the file when the table came from one), in the scikit-learn style of
:class:`lmech.errors.BadInput`.
"""

from __future__ import annotations

import difflib

import numpy as np

from lmech.errors import BadInput


def column(frame, flag: str, name: str, source: str) -> str:
    """``name`` if ``frame`` has that column, else BadInput naming the flag, the closest names and all."""
    if name in frame.columns:
        return name
    names = [str(c) for c in frame.columns]
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    lowered = [c for c in names if c.lower() == name.lower()]
    hint = f"did you mean {' or '.join(repr(c) for c in (lowered or close))}? " if (lowered or close) else ""
    raise BadInput(flag, name, f"a column of {source}: {hint}(columns: {', '.join(names)})")


def numeric_column(frame, col: str, what: str, source: str, first_line: int | None = 2) -> np.ndarray:
    """Column ``col`` as floats; BadInput naming the first row that is not a finite positive number.
    ``what`` says what the column holds (for the message); ``first_line``: the file line of row 1."""
    import pandas as pd

    raw = frame[col]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(~(np.isfinite(values) & (values > 0)))
    if len(bad):
        i = int(bad[0])
        where = f"row {i + 1}" + (f" (line {i + first_line} of {source})" if first_line is not None else "")
        shown = raw.iloc[i]
        shown = shown if isinstance(shown, str) else float(values[i])
        more = f"; {len(bad)} rows are bad" if len(bad) > 1 else ""
        raise BadInput(f"{col!s}, {where}", shown, f"a finite positive number ({what}){more}")
    return values


def runs_from_table(frame, *, n: str, loss: str, d: str | None = None, flop: str | None = None,
                    drop_highest_loss: int = 0, source: str = "the table", first_line: int | None = 2,
                    min_runs: int = 5) -> dict:
    """The runs (N, D, L) of a table for :func:`lmech.laws.scaling.fit_scaling`.

    ``n``, ``loss`` and one of ``d`` (tokens) or ``flop`` (training compute C; D = C / (6N), as
    Besiroglu et al. derive it) are column names. ``drop_highest_loss``: drop that many runs with the
    highest loss (Besiroglu et al. drop 5 of Hoffmann et al.'s 245). Returns ``N``, ``D``, ``L``, the
    1-based ``rows`` kept and ``dropped``.
    """
    if (d is None) == (flop is None):
        raise BadInput("--d/--flop", (d, flop), "exactly one of a tokens column (--d) or a compute column (--flop)")
    if len(frame) == 0:
        raise BadInput(source, "no rows", "a table with one row per training run")
    cols = {"--n": column(frame, "--n", n, source), "--loss": column(frame, "--loss", loss, source)}
    if d is not None:
        cols["--d"] = column(frame, "--d", d, source)
    else:
        cols["--flop"] = column(frame, "--flop", flop, source)
    N = numeric_column(frame, cols["--n"], "a number of parameters", source, first_line)
    L = numeric_column(frame, cols["--loss"], "a loss; the fit takes its logarithm", source, first_line)
    if d is not None:
        D = numeric_column(frame, cols["--d"], "a number of training tokens", source, first_line)
    else:
        D = numeric_column(frame, cols["--flop"], "training FLOP", source, first_line) / (6.0 * N)
    if not 0 <= drop_highest_loss < len(L):
        raise BadInput("--drop-highest-loss", drop_highest_loss, f"a count in [0, {len(L) - 1}] ({len(L)} runs)")
    rows = np.arange(1, len(L) + 1)
    order = np.argsort(-L, kind="stable")
    dropped = np.sort(rows[order[:drop_highest_loss]])
    keep = np.ones(len(L), dtype=bool)
    keep[order[:drop_highest_loss]] = False
    if keep.sum() < min_runs:
        after = f" after dropping {drop_highest_loss}" if drop_highest_loss else ""
        raise BadInput("runs", int(keep.sum()), f"at least {min_runs} runs{after} (the law has {min_runs} parameters)")
    return {"N": N[keep], "D": D[keep], "L": L[keep], "rows": rows[keep], "dropped": dropped}
