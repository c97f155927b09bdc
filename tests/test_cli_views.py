"""What a researcher sees in the terminal (issue 11): nothing cut, one source of truth, every entry replayable.

* the verdict summary and the per-criterion details at 80 columns: every law name, criterion and number whole;
* wide tables (the runs table): all-null and internal columns dropped, a record view past the width,
  csv/json/markdown;
* ``lmech list NAME`` shows the config ``lmech run NAME`` uses, for every law, its entries with the
  command that runs each, its criteria; no list cut with "…", integers as integers;
* ``lmech`` alone lists the commands; a mistyped ``--store`` is an error, not a new folder.
"""

from __future__ import annotations

import io
import json
import math
import shlex
from types import SimpleNamespace

import pandas as pd
import pytest
from rich.console import Console

from lmech.cli import main, parser
from lmech.cli.common import config_of
from lmech.cli.tables import render, tidy
from lmech.cli.verdicts import details_lines, summary_lines
from lmech.config import to_dict
from lmech.experiments import get, names
from lmech.report.format import number, value


def _verdict(key, agreement, tolerance, status="holds", inconclusive=None):
    return {"key": key, "agreement": agreement, "tolerance": tolerance, "status": status,
            "inconclusive": inconclusive, "holds": status == "holds", "why": "the reason for this tolerance",
            "quantity": f"what {key} measures, in a sentence long enough to need wrapping at eighty columns"}


def _outcome(experiment, label, verdict, verdicts, status="done", error=None):
    return SimpleNamespace(experiment=experiment, label=label, verdict=verdict, verdicts=verdicts, status=status,
                           error=error, cached=False, duration_s=12.3, run_id="0123456789abcdef")


OUTCOMES = [
    _outcome("eigenlearning", "", "holds", [_verdict("conservation", 5.329e-16, 1e-7), _verdict("test_mse", 0.0612, 0.1)]),
    _outcome("edge-of-stability-adam", "beta1=0.5", "violated",
             [_verdict("edge_ratio", 1.234, [0.9, 1.1], "violated"), _verdict("control_tracks_flow", 0.01, 0.02)]),
    _outcome("edge-of-stability", "chebyshev", "inconclusive",
             [_verdict("control_below_edge", math.nan, 0.05, "inconclusive", "the edge of stability was never reached "
                                                                          "within the step budget of 1000 steps")]),
    _outcome("linearized-training", "", "failed", [], status="failed", error="RuntimeError: out of memory"),
]


def _text(lines, width) -> list[str]:
    console = Console(file=io.StringIO(), width=width, soft_wrap=True, color_system=None)
    for line in lines:
        console.print(line)
    return console.file.getvalue().splitlines()


@pytest.mark.parametrize("width", [80, 60, 200])
def test_summary_and_details_never_cut_a_name_or_a_number(width):
    for render_lines in (summary_lines, details_lines):
        lines = _text(render_lines(OUTCOMES, width), width)
        text = "\n".join(lines)
        assert all(len(line) <= width for line in lines), [line for line in lines if len(line) > width]
        assert "…" not in text
        tokens = set(text.split())
        for law in ("eigenlearning", "edge-of-stability-adam", "edge-of-stability", "linearized-training"):
            assert law in tokens
        for v in ("holds", "violated", "inconclusive", "failed"):
            assert v in tokens
    summary = "\n".join(_text(summary_lines(OUTCOMES, width), width))
    # one line per entry with criteria held/total and the deciding criterion's agreement against its tolerance
    assert "1/2" in summary and "edge_ratio" in summary and number(1.234) in summary and "in [0.9, 1.1]" in summary
    assert "test_mse" in summary and "0.0612" in summary and "≤ 0.1" in summary
    assert "never reached" in summary  # the inconclusive reason
    details = "\n".join(_text(details_lines(OUTCOMES, width), width))
    assert "5.329e-16" in details and "≤ 1e-07" in details and "control_tracks_flow" in details
    assert "the reason for this tolerance" in details


def test_wide_results_drop_empty_and_internal_columns_and_fall_back_to_records():
    rows = [{"run_id": f"run{i:02d}abcdef", "experiment": "edge-of-stability-adam", "holds": True, "m_holds": True,
             "verdict": "holds", "empty": None, "lr": 0.001 * (i + 1), "steps": 2500,
             **{f"metric_{j}": j + 0.5 * i for j in range(100)}} for i in range(3)]
    frame = pd.DataFrame(rows)
    tidied = tidy(frame)
    assert "m_holds" not in tidied and "empty" not in tidied and "metric_99" in tidied
    text = render(tidied, "table", width=80)
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert "[1] run00abcdef" in text and "edge-of-stability-adam" in text and "…" not in text
    assert "steps" in text and " 2500" in text and "2.5e+03" not in text  # integers as integers
    narrow = render(tidied[["run_id", "verdict", "lr"]], "table", width=80).splitlines()
    assert narrow[0].split() == ["run_id", "verdict", "lr"] and len(narrow) == 5  # fits: aligned columns
    assert json.loads(render(tidied, "json"))[2]["lr"] == pytest.approx(0.003)
    assert render(tidied, "csv").splitlines()[0].startswith("run_id,experiment")
    md = render(tidied[["run_id", "lr"]], "markdown").splitlines()
    assert md[0] == "| run_id | lr |" and md[1] == "|---|---|" and len(md) == 5


def test_lmech_alone_lists_the_commands(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for command in ("list", "run", "check", "sweep", "runs", "report"):
        assert command in out


def test_a_mistyped_store_is_an_error_not_a_new_folder(tmp_path, capsys):
    typo = tmp_path / "no-such-lab"
    for argv in (["report"], ["report", "--sweep", "abc"], ["runs", "show", "abc"], ["runs", "query", "select 1"],
                 ["run", "--replay", "abc"]):
        assert main([*argv, "--store", str(typo)]) == 2
        assert "--store" in capsys.readouterr().err
    assert not typo.exists()
    (tmp_path / "empty").mkdir()
    assert main(["report", "--store", str(tmp_path / "empty")]) == 2  # a store without runs: nothing to report
    assert not (tmp_path / "empty" / "report.html").exists()


@pytest.mark.parametrize("name", names())
def test_list_shows_the_config_run_uses_its_entries_and_criteria(name, capsys, store_path):
    exp = get(name)
    assert main(["list", name, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    run_config = to_dict(config_of(exp, parser().parse_args(["run", name])))
    quick_config = to_dict(config_of(exp, parser().parse_args(["run", name, "--quick"])))
    assert {f["name"]: f["default"] for f in info["fields"]} == run_config  # one source of truth
    assert {f["name"]: f["quick"] for f in info["fields"]} == quick_config
    books = {"quick": dict(exp.lawbook(quick=True)), "full": dict(exp.lawbook(quick=False))}
    assert len(info["entries"]) == sum(len(b) for b in books.values())
    for entry in info["entries"]:  # each entry's command runs exactly that entry's config
        args = parser().parse_args(shlex.split(entry["command"])[1:])
        assert to_dict(config_of(exp, args)) == to_dict(books[entry["book"]][entry["label"]]) == entry["config"]
    assert isinstance(info["criteria"], list) and info["criteria_source"]
    declared = [c.key for c in exp.criteria()]
    if declared:
        assert [c["key"] for c in info["criteria"]] == declared
    assert main(["list", name]) == 0
    text = capsys.readouterr().out
    assert "Config:" in text and "Law-book entries" in text and "Criteria" in text
    values = [line for line in text.splitlines() if not line.startswith("    ") or line.strip().startswith(
        ("default:", "quick:"))]  # field rows and long values (indented lines are the fields' own help text)
    assert not [line for line in values if "…" in line]
    for field in info["fields"]:  # integers print as integers, lists in full
        if isinstance(field["default"], int) and not isinstance(field["default"], bool):
            assert f" {field['default']}" in text or f"default: {field['default']}" in text
        if isinstance(field["default"], list):  # in full, wrapped at spaces where longer than the line
            assert " ".join(value(field["default"]).split()) in " ".join(text.split())


def test_run_entry_runs_a_law_book_entry_and_names_the_entries_otherwise(capsys):
    exp = get("edge-of-stability")
    quick = dict(exp.lawbook(quick=True))
    label = [lb for lb in quick if lb][-1]
    args = parser().parse_args(["run", "edge-of-stability", "--quick", "--entry", label, "--seed", "2"])
    assert to_dict(config_of(exp, args)) == {**to_dict(quick[label]), "seed": 2}
    assert main(["run", "edge-of-stability", "--quick", "--entry", "nope"]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and all(repr(lb) in err for lb in quick)


@pytest.mark.parametrize("name", names())
def test_declared_criteria_match_the_verdicts(name, quick_run):
    """A law that declares its criteria (``Experiment.criteria``) judges exactly those that apply to its first
    entry (``Experiment.criteria_for``), with those tolerances."""
    law = get(name)
    declared = {c.key: c for c in law.criteria_for(law.lawbook(quick=True)[0][1])}
    if not declared:
        pytest.skip(f"{name} declares no criteria (optional): `lmech list {name}` shows its stored runs' instead")
    _, _, verdicts, _ = quick_run(name)
    assert {v.key for v in verdicts} == set(declared)
    for v in verdicts:
        tol = declared[v.key].tolerance
        assert v.tolerance == (tuple(map(float, tol)) if isinstance(tol, (list, tuple)) else float(tol))
        assert v.why
