"""Laws on a user's dataset: ``lmech run edge-of-stability --set data=FILE``.

The digits the law uses by default, written to a .npz by hand, must give the same verdicts as the
built-in dataset (the same numbers: the law reads the same float64 arrays); bad files exit 2 before
any work, naming the file and the array or column.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from lmech.cli import main
from lmech.data.digits import digits
from lmech.experiments import get
from lmech.experiments.runner import compute


def test_edge_of_stability_on_a_users_npz_gives_the_builtin_verdicts(tmp_path, quick_run):
    exp = get("edge-of-stability")
    label, config = exp.lawbook(quick=True)[0]
    assert label == "digits"
    x, y = digits(config.n_samples)
    np.savez(tmp_path / "my_digits.npz", x=x.numpy(), y=y.numpy())
    _, _, builtin, _ = quick_run("edge-of-stability")
    _, _, mine, _ = compute(exp, dataclasses.replace(config, data=str(tmp_path / "my_digits.npz")))
    assert [(v.key, v.status, v.agreement) for v in mine] == [(v.key, v.status, v.agreement) for v in builtin]
    assert all(v.status == "holds" for v in mine)


def _run(capsys, argv):
    code = main(argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("law", ["edge-of-stability", "edge-of-stability-adam"])
def test_bad_files_exit_2_naming_the_array_or_column(tmp_path, capsys, store_path, law):
    np.savez(tmp_path / "missing.npz", inputs=np.zeros((300, 4)), y=np.zeros((300, 2)))
    nan = np.zeros((300, 4))
    nan[7, 2] = np.nan
    np.savez(tmp_path / "nan.npz", x=nan, y=np.zeros((300, 2)))
    np.savez(tmp_path / "shape.npz", x=np.zeros((300, 4)), y=np.zeros((299, 2)))
    np.savez(tmp_path / "few.npz", x=np.zeros((50, 4)), y=np.zeros((50, 2)))
    np.savez(tmp_path / "floatlabels.npz", x=np.zeros((300, 4)), y=np.zeros((300, 2, 2)))
    frame = pd.DataFrame({"x0": np.zeros(300), "x1": np.zeros(300), "y": ["cat"] * 300})
    frame.to_csv(tmp_path / "text.csv", index=False)
    cases = {
        "missing.npz": "missing.npz: array 'x'",
        "nan.npz": r"nan.npz: array 'x'.*NaN",
        "shape.npz": r"shape.npz: array 'y'.*300 examples",
        "few.npz": r"n_samples.*50 examples in few.npz",
        "floatlabels.npz": r"floatlabels.npz: array 'y'.*squared loss",
        "text.csv": r"text.csv: column 'y'.*'cat'",
    }
    for name, pattern in cases.items():
        code, err = _run(capsys, ["run", law, "--quick", "--set", "n_samples=200",
                                  "--set", f"data={tmp_path / name}"])
        assert code == 2, (name, err)
        assert pd.Series([" ".join(err.split())]).str.contains(pattern).iloc[0], (name, err)
