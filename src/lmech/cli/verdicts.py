"""Verdicts in the terminal: a compact summary (one entry per line) and the per-criterion details.

Laid out in plain text at the terminal's width (80 in a pipe, ``$COLUMNS`` where set), wrapping at
spaces only: a law name, a criterion or a number is never cut. The verdict word is coloured where
the output is a terminal.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.text import Text

from lmech.cli.tables import table_lines, terminal_width, wrap
from lmech.report.format import number, tolerance
from lmech.verdicts import verdict_status, worst

STATE_COLOR = {"holds": "green", "violated": "red", "inconclusive": "yellow", "failed": "red",
               "no verdict": "yellow"}
INDENT = "    "


def _colored(line: str, word: str) -> Text:
    text = Text(line)
    start = line.find(word)
    if start >= 0 and word in STATE_COLOR:
        text.stylize(STATE_COLOR[word], start, start + len(word))
    return text


def _word(o: Any) -> str:
    return o.verdict + (" (diverged)" if getattr(o, "status", "") == "diverged" else "")


def _notes(o: Any, width: int, indent: str = INDENT) -> list[str]:
    """Why an entry did not hold: the inconclusive reasons, or a crash's error, wrapped."""
    lines = []
    if o.verdict == "failed" and o.error:
        lines += wrap(f"failed: {o.error}", width, indent)
    for v in o.verdicts:
        if verdict_status(v) == "inconclusive" and v.get("inconclusive"):
            lines += wrap(f"{v['key']} inconclusive: {v['inconclusive']}", width, indent)
    return lines


def summary_lines(outcomes: Sequence[Any], width: int | None = None) -> list[Text]:
    """One line per law-book entry: verdict, law, entry, criteria held/total, and the worst criterion
    (the one that decides the verdict: see :func:`lmech.verdicts.worst`) with its agreement against its
    tolerance. Entries too wide for ``width`` take a second, indented line for the criterion."""
    width = width or terminal_width()
    rows = []
    for o in outcomes:
        held = sum(verdict_status(v) == "holds" for v in o.verdicts)
        w = worst(o.verdicts)
        crit = ["", "", ""] if w is None else [w["key"], number(w["agreement"]), tolerance(w["tolerance"])]
        rows.append([_word(o), o.experiment, o.label or "-", f"{held}/{len(o.verdicts)}", *crit])
    headers = ["verdict", "law", "entry", "held", "worst criterion", "agreement", "tolerance"]
    right = [False, False, False, True, False, True, False]
    one = table_lines(headers, rows, right)
    if max(len(line) for line in one) <= width:
        lines = [Text(one[0], style="bold"), Text(one[1])]
        for line, o in zip(one[2:], outcomes):
            lines.append(_colored(line, o.verdict))
            lines += [Text(n, style="dim") for n in _notes(o, width)]
        return lines
    # Two lines per entry: who and how many held; then the deciding criterion, indented.
    first = table_lines(headers[:4], [r[:4] for r in rows], right[:4])
    second = table_lines(["", "", ""], [r[4:] for r in rows], [False, True, False])[2:]
    lines = [Text(first[0], style="bold"), Text(first[1])]
    for line, crit, o in zip(first[2:], second, outcomes):
        lines += [_colored(part, o.verdict) for part in (wrap(line, width) if len(line) > width else [line])]
        if crit.strip():
            lines += [Text(part) for part in wrap("worst: " + crit.strip(), width, INDENT)]
        lines += [Text(n, style="dim") for n in _notes(o, width)]
    return lines


def details_lines(outcomes: Sequence[Any], width: int | None = None) -> list[Text]:
    """Every criterion of every run: a heading per run (law, entry, verdict, run id), then one line per
    criterion (key, agreement, tolerance, verdict) with what it measures and why the tolerance is what
    it is, wrapped below it."""
    width = width or terminal_width()
    rows, owners = [], []
    for i, o in enumerate(outcomes):
        for v in o.verdicts:
            state = verdict_status(v)
            rows.append([v["key"], number(v["agreement"]), tolerance(v["tolerance"]), state])
            owners.append((i, v))
    aligned = table_lines(["criterion", "agreement", "tolerance", "verdict"], rows, [False, True, False, False])
    header = Text("  " + aligned[0], style="bold") if rows else None
    lines: list[Text] = []
    by_run: dict[int, list[tuple[str, dict]]] = {}
    for line, (i, v) in zip(aligned[2:], owners):
        by_run.setdefault(i, []).append((line, v))
    for i, o in enumerate(outcomes):
        head = f"{o.experiment} {o.label}".strip() + f" — {_word(o)}  (run {o.run_id[:10]}"
        head += ", cached)" if o.cached else f", {o.duration_s:.1f} s)"
        lines += [_colored(part, o.verdict) for part in wrap(head, width)]
        if not o.verdicts:
            lines += [Text(n, style="dim") for n in _notes(o, width)]
        elif header is not None:  # the column names under each run's heading, where its rows start
            lines.append(header.copy())
        for line, v in by_run.get(i, []):
            line = "  " + line
            state = verdict_status(v)
            lines += [_colored(part, state) for part in (wrap(line, width, "  ") if len(line) > width else [line])]
            lines += [Text(part, style="dim") for part in wrap(v.get("quantity", ""), width, INDENT + "  ")]
            if state == "inconclusive" and v.get("inconclusive"):
                lines += [Text(part, style="yellow") for part in wrap(f"inconclusive: {v['inconclusive']}", width,
                                                                       INDENT + "  ")]
            if v.get("why"):
                lines += [Text(part, style="dim") for part in wrap(f"tolerance: {v['why']}", width, INDENT + "  ")]
        lines.append(Text(""))
    return lines[:-1]


__all__ = ["STATE_COLOR", "details_lines", "summary_lines"]
