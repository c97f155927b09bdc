"""Wide results for a terminal, a pipe or another program: nothing is ever cut.

The runs table has a column per config field and per metric of every law (over a hundred), so a
box per cell cannot be read at any width. :func:`tidy` drops what carries nothing (all-null columns,
internal duplicates such as ``m_holds``); :func:`render` then writes

* ``table``: aligned columns when they fit the width, else a **record view** (one block per row,
  ``column  value`` per line), values wrapped at spaces only: a number or a name is never cut;
* ``csv``, ``json`` (a list of records) or ``markdown`` (a pipe table) for other programs.

Widths come from the terminal (``COLUMNS`` where set, 80 in a pipe).
"""

from __future__ import annotations

import json
import math
import shutil
import textwrap
from collections.abc import Sequence
from typing import Any

import pandas as pd

from lmech.errors import BadInput
from lmech.report.format import value as value_text

FORMATS = ("table", "csv", "json", "markdown")

#: Columns of the runs table that only repeat another one (a summary metric named like a column of
#: the table is stored as ``m_<name>``; ``m_holds`` is the run's own ``holds``).
INTERNAL_COLUMNS = ("m_holds",)


def terminal_width() -> int:
    """The width to lay text out in: the terminal's, ``$COLUMNS`` where set, else 80 (a pipe)."""
    return shutil.get_terminal_size((80, 24)).columns


def is_missing(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float) and math.isnan(v):
        return True
    return v is pd.NA or v is pd.NaT


def cell(v: Any) -> str:
    """A cell's text: blank for a missing value, numbers as :func:`lmech.report.format.value`."""
    if is_missing(v):
        return ""
    if hasattr(v, "item") and not isinstance(v, (list, tuple, str)):
        try:
            v = v.item()
        except (ValueError, AttributeError):
            pass
    return v if isinstance(v, str) else value_text(v)


def tidy(frame: pd.DataFrame, keep: Sequence[str] = ()) -> pd.DataFrame:
    """Drop all-null columns and internal duplicates (``m_holds``; ``m_X`` equal to ``X`` in every row).

    Columns named in ``keep`` stay whatever they hold.
    """
    if frame.empty:
        return frame
    drop = []
    for col in frame.columns:
        if col in keep:
            continue
        if frame[col].map(is_missing).all():
            drop.append(col)
        elif col in INTERNAL_COLUMNS:
            drop.append(col)
        elif col.startswith("m_") and col[2:] in frame and frame[col].astype(str).equals(frame[col[2:]].astype(str)):
            drop.append(col)
    return frame.drop(columns=drop)


def _plain(v: Any) -> Any:
    """A JSON/CSV value: numpy scalars as Python, missing as None."""
    if is_missing(v):
        return None
    if hasattr(v, "item") and not isinstance(v, (list, tuple, str)):
        try:
            return v.item()
        except (ValueError, AttributeError):
            return str(v)
    return v


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): _plain(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def wrap(text: str, width: int, indent: str = "") -> list[str]:
    """Lines of at most ``width`` characters, broken at spaces only (a longer word stays whole)."""
    if not text:
        return [indent.rstrip()]
    return textwrap.wrap(text, width=max(width, len(indent) + 8), initial_indent=indent, subsequent_indent=indent,
                         break_long_words=False, break_on_hyphens=False) or [indent]


def table_lines(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool] | None = None,
                gap: int = 2) -> list[str]:
    """Aligned columns (header, a rule, then rows); ``right`` marks right-aligned (numeric) columns."""
    right = list(right) if right is not None else [False] * len(headers)
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        parts = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)]
        return (" " * gap).join(parts).rstrip()

    return [line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def record_lines(headers: Sequence[str], rows: Sequence[Sequence[str]], width: int, title_column: int = 0) -> list[str]:
    """One block per row: a title line, then ``column  value`` lines (values wrapped at spaces)."""
    key_w = min(max(len(h) for h in headers), max(12, width // 3))
    out: list[str] = []
    for i, row in enumerate(rows):
        out.append(f"[{i + 1}] {row[title_column]}" if headers else f"[{i + 1}]")
        for h, v in zip(headers, row):
            if v == "":
                continue
            head = f"  {h.ljust(key_w)}  "
            if len(head) + len(v) <= width:
                out.append(head + v)
            else:  # a long key, or a long value: the value on its own wrapped lines
                out.append(f"  {h}")
                out.extend(wrap(v, width, " " * 6))
        out.append("")
    return out[:-1] if out else out


def render(frame: pd.DataFrame, fmt: str = "table", width: int | None = None) -> str:
    """``frame`` as text in ``fmt`` (see the module docstring); never cuts a value."""
    if fmt not in FORMATS:
        raise BadInput("--format", fmt, f"one of {', '.join(FORMATS)}")
    if fmt == "json":
        return json.dumps(records(frame), indent=2, default=str, allow_nan=True)
    if fmt == "csv":
        return frame.to_csv(index=False).rstrip("\n")
    headers = [str(c) for c in frame.columns]
    rows = [[cell(v) for v in row] for row in frame.itertuples(index=False)]
    if fmt == "markdown":
        esc = [[c.replace("|", "\\|") for c in r] for r in rows]
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in esc])
    width = width or terminal_width()
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
               for c in frame.columns]
    lines = table_lines(headers, rows, numeric)
    if max(len(line) for line in lines) <= width:
        return "\n".join(lines)
    return "\n".join(record_lines(headers, rows, width))


__all__ = ["FORMATS", "INTERNAL_COLUMNS", "cell", "records", "render", "table_lines", "terminal_width", "tidy", "wrap"]
