"""The terminal verdict table (``lmech run`` and ``lmech check``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.table import Table

from lmech.cli.common import fmt, out

STATE_COLOR = {"holds": "green", "violated": "red", "inconclusive": "yellow", "failed": "red",
               "no verdict": "yellow"}


def verdict_table(outcomes: Sequence[Any], title: str = "Verdicts") -> Table:
    """One row per criterion of every run.

    Predicted and measured values are shown when the terminal is wide enough; the report and
    ``--json`` always carry them.
    """
    from lmech.verdicts import verdict_status

    wide = out.width >= 150
    table = Table(title=title, title_justify="left", header_style="bold")
    columns = ["law", "config", "criterion"] + (["quantity", "predicted", "measured"] if wide else []) + [
        "agreement", "tolerance", "verdict", "run"]
    for col in columns:
        table.add_column(col, justify="right" if col in ("agreement", "tolerance") else "left",
                         max_width=40 if col == "quantity" else 26 if col in ("predicted", "measured") else None)
    for o in outcomes:
        run = o.run_id[:10] + (" (cached)" if o.cached else "")
        if not o.verdicts:
            word = f"[yellow]{o.status}[/]"
            blanks = [""] * (3 if wide else 0)
            table.add_row(o.experiment, o.label, o.error or "—", *blanks, "", "", word, run)
        for v in o.verdicts:
            tol = v["tolerance"]
            tol_text = f"in [{fmt(tol[0])}, {fmt(tol[1])}]" if isinstance(tol, list) else f"≤ {fmt(tol)}"
            state = verdict_status(v)
            word = f"[{STATE_COLOR[state]}]{state}[/]"
            if state == "inconclusive" and v.get("inconclusive"):
                word += f" ({v['inconclusive']})"
            if o.status == "diverged":
                word += " [yellow](diverged)[/]"
            extra = [v["quantity"], fmt(v["predicted"]), fmt(v["measured"])] if wide else []
            table.add_row(o.experiment, o.label, v["key"], *extra, fmt(v["agreement"]), tol_text, word, run)
    return table
