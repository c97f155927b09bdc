"""lmech.data.load: a user's arrays from .npz, .pt, .csv and .parquet, checked before use."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import torch

from lmech.data import load, parse_source
from lmech.data.digits import digits
from lmech.data.load import targets_for_squared_loss
from lmech.errors import BadInput


@pytest.fixture(scope="module")
def arrays():
    x, y = digits(50)
    return x.numpy(), y.numpy()


def test_npz_round_trip_is_exact(tmp_path, arrays):
    x, y = arrays
    np.savez_compressed(tmp_path / "d.npz", x=x, y=y, extra=np.zeros(3))
    data = load(tmp_path / "d.npz")
    assert torch.equal(data.x, torch.as_tensor(x)) and torch.equal(data.y, torch.as_tensor(y))
    xs, ys = data  # unpacks as a pair
    assert xs is data.x and ys is data.y and len(data) == 50
    assert data.x.dtype == torch.float64 and len(data.sha256) == 64
    assert load(tmp_path / "d.npz", dtype=torch.float32).x.dtype == torch.float32


def test_pt_dict_and_pair(tmp_path, arrays):
    x, y = (torch.as_tensor(a) for a in arrays)
    labels = y.argmax(1)
    torch.save({"images": x.float(), "labels": labels}, tmp_path / "d.pt")
    data = load(tmp_path / "d.pt", x="images", y="labels")
    assert torch.equal(data.x, x.float().double()) and data.y.dtype == torch.int64
    assert torch.equal(data.y, labels)
    torch.save((x, y), tmp_path / "pair.pt")
    assert torch.equal(load(tmp_path / "pair.pt").y, y)


def test_pt_is_loaded_without_running_code(tmp_path):
    """A .pt whose pickle would run code is refused (weights_only=True), and the code never runs."""
    flag = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(flag), "w"))

    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"x": Payload(), "y": torch.zeros(2)}, f)
    with pytest.raises(BadInput, match="weights_only"):
        load(tmp_path / "evil.pt")
    assert not flag.exists()


def test_csv_and_parquet_columns(tmp_path, arrays):
    x, y = arrays
    labels = y.argmax(1)
    frame = pd.DataFrame({f"x{i}": x[:, i] for i in reversed(range(64))})  # any column order
    frame["y"] = labels
    frame["note"] = "ignored"  # non-selected text columns are fine
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_parquet(tmp_path / "d.parquet")
    for name in ("d.csv", "d.parquet"):
        data = load(tmp_path / name)
        assert torch.allclose(data.x, torch.as_tensor(x), rtol=1e-15, atol=0), name  # NAME0, NAME1, ... in index order
        assert data.y.dtype == torch.int64 and torch.equal(data.y, torch.as_tensor(labels))
    picked = load(tmp_path / "d.csv", x=["x3", "x1"], y="y")
    assert torch.allclose(picked.x, torch.as_tensor(x[:, [3, 1]]), rtol=1e-15, atol=0)
    one = pd.DataFrame({"x": np.arange(5.0), "y": np.arange(5.0) ** 2})
    one.to_csv(tmp_path / "one.csv", index=False)
    got = load(tmp_path / "one.csv")
    assert got.x.shape == (5, 1) and got.y.shape == (5,) and got.y.dtype == torch.float64


def test_parse_source():
    assert parse_source("a/b.npz") == (parse_source("a/b.npz")[0], {})
    path, names = parse_source("a/b.csv#x=pix,y=digit")
    assert str(path) == "a/b.csv" and names == {"x": "pix", "y": "digit"}
    with pytest.raises(BadInput, match="data"):
        parse_source("a.npz#z=1")


def test_targets_for_squared_loss():
    assert torch.equal(targets_for_squared_loss(torch.tensor([2, 0])), torch.tensor([[0, 0, 1], [1, 0, 0]]))
    assert targets_for_squared_loss(torch.zeros(4)).shape == (4, 1)
    with pytest.raises(BadInput, match="label -1"):
        targets_for_squared_loss(torch.tensor([-1, 0]))
    with pytest.raises(BadInput, match="y"):
        targets_for_squared_loss(torch.zeros(2, 2, 2))


# --- bad files: each error names the file and the array or column -----------------------------


def _raises(path, match, **kw):
    with pytest.raises(BadInput, match=match) as err:
        load(path, **kw)
    return str(err.value)


def test_missing_array(tmp_path, arrays):
    x, _ = arrays
    np.savez(tmp_path / "d.npz", inputs=x, y=x[:, 0])
    msg = _raises(tmp_path / "d.npz", "d.npz: array 'x'")
    assert "'inputs'" in msg and "data=PATH#x=NAME" in msg
    assert load(tmp_path / "d.npz", x="inputs").x.shape == (50, 64)
    torch.save({"x": torch.zeros(3)}, tmp_path / "d.pt")
    _raises(tmp_path / "d.pt", "d.pt: array 'y'")
    pd.DataFrame({"a": [1.0], "y": [2.0]}).to_csv(tmp_path / "d.csv", index=False)
    _raises(tmp_path / "d.csv", "d.csv: column 'x'")


def test_wrong_shapes(tmp_path):
    np.savez(tmp_path / "n.npz", x=np.zeros((5, 2)), y=np.zeros(4))
    _raises(tmp_path / "n.npz", "n.npz: array 'y'.*5 examples")
    np.savez(tmp_path / "s.npz", x=np.float64(3.0), y=np.zeros(1))
    _raises(tmp_path / "s.npz", "array 'x'.*shape")
    np.savez(tmp_path / "e.npz", x=np.zeros((0, 3)), y=np.zeros(0))
    _raises(tmp_path / "e.npz", "array 'x'.*n >= 1")


def test_nan_and_inf(tmp_path):
    x = np.zeros((4, 3))
    x[2, 1] = np.nan
    np.savez(tmp_path / "d.npz", x=x, y=np.zeros(4))
    _raises(tmp_path / "d.npz", r"array 'x'.*1 NaN or infinite value\(s\), first at index \(2, 1\)")
    np.savez(tmp_path / "i.npz", x=np.zeros((4, 3)), y=np.array([0, np.inf, 0, 0]))
    _raises(tmp_path / "i.npz", "array 'y'.*NaN or infinite")
    (tmp_path / "d.csv").write_text("x0,x1,y\n1,2,0\n3,,1\n")
    _raises(tmp_path / "d.csv", "d.csv: column 'x1'.*first in row 1")


def test_non_numeric(tmp_path):
    (tmp_path / "d.csv").write_text("x0,x1,y\n1,2,cat\n3,4,dog\n")
    _raises(tmp_path / "d.csv", "d.csv: column 'y'.*'cat'.*numbers")
    np.savez(tmp_path / "o.npz", x=np.array([{"a": 1}, None], dtype=object), y=np.zeros(2))
    _raises(tmp_path / "o.npz", "o.npz: array 'x'.*objects")
    np.savez(tmp_path / "s.npz", x=np.array(["a", "b"]), y=np.zeros(2))
    _raises(tmp_path / "s.npz", "array 'x'.*dtype <U1")
    torch.save({"x": torch.zeros(2, dtype=torch.complex64), "y": torch.zeros(2)}, tmp_path / "c.pt")
    _raises(tmp_path / "c.pt", "c.pt: array 'x'.*real")


def test_sizes_and_formats_are_bounded(tmp_path):
    np.savez_compressed(tmp_path / "big.npz", x=np.zeros((1000, 100)), y=np.zeros(1000))  # compresses to ~1 kB
    assert (tmp_path / "big.npz").stat().st_size < 10_000
    _raises(tmp_path / "big.npz", "bytes of arrays", max_bytes=100_000)  # sizes read before decompressing
    _raises(tmp_path / "big.npz", "at most 1000 bytes", max_bytes=1000)
    (tmp_path / "d.txt").write_text("1,2")
    _raises(tmp_path / "d.txt", "data=.*.npz, .pt, .csv, .parquet")
    _raises(tmp_path / "absent.npz", "an existing file")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    _raises(tmp_path / "junk.npz", "NumPy .npz archive")


def test_law_data_checks_the_laws_preconditions(tmp_path):
    from lmech.data.load import law_data

    gen = np.random.default_rng(0)
    images, labels = gen.normal(size=(12, 2, 3)), np.array([0, 1, 2, 1] * 3)
    labels[-1] = 3  # a class seen only after the first n_samples: still one of the one-hot columns
    np.savez(tmp_path / "d.npz", images=images, digit=labels)
    data = law_data(str(tmp_path / "d.npz") + "#x=images,y=digit", 8)
    assert data.x.shape == (8, 6) and data.y.shape == (8, 4) and data.y.dtype == torch.float64
    assert torch.equal(data.y.argmax(1), torch.as_tensor(labels[:8]))
    assert law_data(str(tmp_path / "d.npz") + "#x=images,y=digit", 8, loss="labels").y.dtype == torch.int64
    with pytest.raises(BadInput, match=r"n_samples=13.*at most the 12 examples in d.npz"):
        law_data(str(tmp_path / "d.npz") + "#x=images,y=digit", 13)
    np.savez(tmp_path / "f.npz", x=images, y=gen.normal(size=12))
    assert law_data(str(tmp_path / "f.npz"), 12).y.shape == (12, 1)
    with pytest.raises(BadInput, match="f.npz: array 'y'.*integer class labels.*cross-entropy"):
        law_data(str(tmp_path / "f.npz"), 12, loss="labels")
