"""A user's own dataset from a file: NumPy ``.npz``, torch ``.pt``, ``.csv`` and ``.parquet``.

Inputs and targets are the arrays (or, in a table, the columns) named ``x`` and ``y`` unless told
otherwise. Everything is checked before it is used, and a problem raises
:class:`lmech.errors.BadInput` naming the file and the array or column:

* ``.npz`` (``numpy.savez``): arrays ``x`` (n, ...) and ``y`` (n, ...); read with
  ``allow_pickle=False`` (object arrays are refused), sizes read from the archive's directory
  before anything is decompressed;
* ``.pt`` (``torch.save``): a dict ``{"x": tensor, "y": tensor}`` (or a pair ``(x, y)``), read
  with ``torch.load(weights_only=True)``: a file that needs code to load is refused, so an
  untrusted file cannot run any;
* ``.csv`` and ``.parquet`` (pandas): one row per example; the inputs are the column named ``x``
  or the numbered family ``x0, x1, ...`` (also ``x_0`` or ``x.0``), in index order, and the same
  for ``y``; other columns are ignored. A name may also be a list of column names.

Inputs become a floating tensor ``(n, ...)`` (a 1-D ``x`` is ``n`` scalar inputs, ``(n, 1)``);
targets keep their kind: floating targets become floating, integer targets stay ``int64`` class
labels (a law with a squared loss one-hot encodes them, see :func:`targets_for_squared_loss`).
Every value must be a finite number; both arrays need the same number of examples ``n >= 1``.

On the command line a law takes a file as ``--set data=PATH``, or ``data=PATH#x=NAME,y=NAME`` to
name other arrays or columns (:func:`parse_source`); :func:`law_data` reads it for a law and checks
the law's own preconditions (enough examples for its full batch, targets of the kind its loss needs).
"""

from __future__ import annotations

import hashlib
import re
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from lmech.errors import BadInput

__all__ = ["Dataset", "load", "law_data", "parse_source", "targets_for_squared_loss", "FORMATS", "MAX_BYTES"]

FORMATS = (".npz", ".pt", ".csv", ".parquet")
MAX_BYTES = 1 << 30  # 1 GiB of array data: more than a 2-core CPU can train on in a law's budget
Names = str | Sequence[str]


@dataclass(frozen=True)
class Dataset:
    """Inputs ``x`` (n, ...) and targets ``y`` (n, ...) read from ``path`` (SHA-256 of the file in ``sha256``).

    Unpacks as a pair: ``x, y = load("my.npz")``.
    """

    x: Tensor
    y: Tensor
    path: Path
    sha256: str
    x_name: str
    y_name: str

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __iter__(self) -> Iterator[Tensor]:
        return iter((self.x, self.y))


def parse_source(source: str) -> tuple[Path, dict[str, str]]:
    """Split ``PATH#x=NAME,y=NAME`` (the ``data=`` config value) into the path and the names given.

    A string that is itself an existing file is a path (even with a ``#`` in it).
    """
    if not isinstance(source, str) or not source.strip():
        raise BadInput("data", source, "a path to a .npz, .pt, .csv or .parquet file")
    source = source.strip()
    if "#" not in source or Path(source).exists():
        return Path(source).expanduser(), {}
    path, _, spec = source.rpartition("#")
    names: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, eq, value = part.partition("=")
        if key.strip() not in ("x", "y") or not eq or not value.strip():
            raise BadInput("data", source, "PATH or PATH#x=NAME,y=NAME (names of the input and target arrays)")
        names[key.strip()] = value.strip()
    return Path(path).expanduser(), names


def load(path: str | Path, *, x: Names = "x", y: Names = "y", dtype: torch.dtype = torch.float64,
         max_bytes: int = MAX_BYTES) -> Dataset:
    """Read inputs and targets from a ``.npz``, ``.pt``, ``.csv`` or ``.parquet`` file, checked.

    Args:
        path: the file; its suffix says the format.
        x, y: names of the input and target arrays (a table: a column, the numbered family
            ``NAME0, NAME1, ...``, or a list of columns).
        dtype: floating dtype of the inputs (and of floating targets).
        max_bytes: refuse files whose array data would exceed this many bytes (1 GiB by default).

    Returns:
        a :class:`Dataset`. Raises :class:`BadInput` naming the file and the array or column for a
        missing array, a non-numeric array or column, a shape that is not (n, ...) with the same n,
        a NaN or infinite value, a file too large or in an unknown format.
    """
    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise BadInput("data", str(path), "a file ending in " + ", ".join(FORMATS))
    if not path.is_file():
        raise BadInput("data", str(path), "an existing file")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise BadInput("dtype", dtype, "a floating torch dtype")
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise BadInput("max_bytes", max_bytes, "a positive integer")
    for name, value in (("x", x), ("y", y)):
        ok = isinstance(value, str) or (isinstance(value, (list, tuple)) and value and
                                        all(isinstance(v, str) for v in value))
        if not ok:
            raise BadInput(name, value, "the name of an array or column (or a list of column names)")
    size = path.stat().st_size
    if size > max_bytes:
        raise BadInput("data", f"{path} ({size} bytes)", f"a file of at most {max_bytes} bytes (max_bytes)")
    reader = {".npz": _read_npz, ".pt": _read_pt, ".csv": _read_table, ".parquet": _read_table}[suffix]
    arrays = reader(path, x, y, max_bytes)
    xs, ys = (_checked(path, label, arrays[role]) for role, label in (("x", _label(x)), ("y", _label(y))))
    if xs.ndim == 1:
        xs = xs[:, None]
    if ys.shape[0] != xs.shape[0]:
        raise BadInput(_where(path, _label(y)), f"shape {ys.shape}",
                       f"{xs.shape[0]} examples like {_label(x)!r} (shape {xs.shape}): one target per input")
    x_t = torch.as_tensor(xs).to(dtype)
    y_t = torch.as_tensor(ys)
    y_t = y_t.to(dtype) if ys.dtype.kind in "fb" else y_t.to(torch.int64)
    return Dataset(x_t, y_t, path, _sha256(path), _label(x), _label(y))


def law_data(source: str, n_samples: int, *, loss: str = "squared", flatten: bool = True,
             dtype: torch.dtype = torch.float64) -> Dataset:
    """The first ``n_samples`` examples of a law's ``data=`` file, checked against the law's preconditions.

    ``source`` is ``PATH`` or ``PATH#x=NAME,y=NAME`` (:func:`parse_source`). The file must hold at least
    ``n_samples`` examples (a law's full batch is its first ``n_samples``, in file order). ``loss`` says
    what the targets must be: ``"squared"`` -> floating targets ``(n, k)`` (``(n,)`` becomes ``(n, 1)``;
    integer class labels are one-hot encoded over the classes present in the whole file);
    ``"labels"`` -> integer class labels ``(n,)`` (cross-entropy). ``flatten`` reshapes inputs to
    ``(n, d)`` for laws whose model is an MLP. Raises BadInput (exit 2 on the command line) naming the
    file, the array or column, or ``n_samples``.
    """
    path, names = parse_source(source)
    data = load(path, dtype=dtype, **names)
    n = len(data)
    if n < n_samples:
        raise BadInput("n_samples", n_samples, f"at most the {n} examples in {path.name} (a law's full batch is "
                       "the first n_samples examples of its data file)")
    where = _where(path, data.y_name)
    if loss == "squared":
        y = targets_for_squared_loss(data.y, where=where).to(dtype)
    elif loss == "labels":
        if data.y.dtype.is_floating_point or data.y.ndim != 1 or int(data.y.min()) < 0:
            raise BadInput(where, f"{data.y.dtype} array of shape {tuple(data.y.shape)}",
                           "integer class labels 0..C-1 of shape (n,) (this law's loss is cross-entropy)")
        y = data.y
    else:
        raise BadInput("loss", loss, "'squared' or 'labels'")
    x = data.x.reshape(n, -1) if flatten else data.x
    return Dataset(x[:n_samples], y[:n_samples], data.path, data.sha256, data.x_name, data.y_name)


def targets_for_squared_loss(y: Tensor, *, where: str = "y", num_classes: int | None = None) -> Tensor:
    """Targets ``(n, k)`` for a squared loss: floating targets as they are (``(n,)`` -> ``(n, 1)``),
    integer class labels ``0..C-1`` one-hot encoded (the regression targets of Cohen et al. 2021).

    Raises BadInput for negative labels or a target array of more than two dimensions.
    """
    if y.dtype.is_floating_point:
        if y.ndim > 2:
            raise BadInput(where, f"shape {tuple(y.shape)}", "targets (n,) or (n, k) for a squared loss")
        return y[:, None] if y.ndim == 1 else y
    if y.ndim != 1:
        raise BadInput(where, f"integer array of shape {tuple(y.shape)}",
                       "class labels (n,) (or floating targets (n, k)) for a squared loss")
    if int(y.min()) < 0:
        raise BadInput(where, f"label {int(y.min())}", "class labels 0, 1, ..., C-1")
    classes = int(y.max()) + 1 if num_classes is None else num_classes
    return torch.nn.functional.one_hot(y, classes)


# ---------------------------------------------------------------------------------------------
# readers: each returns {"x": ndarray, "y": ndarray}, every size bounded before it is read
# ---------------------------------------------------------------------------------------------


def _label(names: Names) -> str:
    return names if isinstance(names, str) else ",".join(names)


def _where(path: Path, name: str, kind: str = "array") -> str:
    return f"{path.name}: {kind} {name!r}"


def _single(path: Path, names: Names, kind: str) -> str:
    if not isinstance(names, str):
        raise BadInput(_where(path, _label(names), kind), list(names),
                       f"one {kind} name (a list of columns is for .csv and .parquet tables)")
    return names


def _missing(path: Path, name: str, present: Sequence[str], kind: str = "array") -> BadInput:
    role = "inputs" if name == "x" else "targets" if name == "y" else "this"
    return BadInput(_where(path, name, kind), f"missing (the file holds {', '.join(map(repr, present)) or 'nothing'})",
                    f"the {role} in an {kind} named {name!r}, or name yours: load(path, x=..., y=...), "
                    f"data=PATH#x=NAME,y=NAME")


def _read_npz(path: Path, x: Names, y: Names, max_bytes: int) -> dict[str, np.ndarray]:
    keys = {"x": _single(path, x, "array"), "y": _single(path, y, "array")}
    try:
        with zipfile.ZipFile(path) as archive:
            sizes = {info.filename: info.file_size for info in archive.infolist()}
    except (zipfile.BadZipFile, OSError) as err:
        raise BadInput("data", str(path), f"a NumPy .npz archive ({err})") from None
    present = [name[:-4] for name in sizes if name.endswith(".npy")]
    for key in keys.values():
        if key not in present:
            raise _missing(path, key, present)
    total = sum(sizes[k + ".npy"] for k in keys.values())
    if total > max_bytes:
        raise BadInput("data", f"{path} ({total} bytes of arrays)", f"at most {max_bytes} bytes (max_bytes)")
    out = {}
    with np.load(path, allow_pickle=False) as archive:
        for role, key in keys.items():
            try:
                out[role] = archive[key]
            except ValueError as err:  # object arrays need pickle: refused
                raise BadInput(_where(path, key), "an array of Python objects",
                               f"a numeric array ({err})") from None
    return out


def _read_pt(path: Path, x: Names, y: Names, max_bytes: int) -> dict[str, np.ndarray]:
    keys = {"x": _single(path, x, "array"), "y": _single(path, y, "array")}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "pickle protocol 4": refused below or read fine
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - pickle errors, unsafe globals, corrupt files: all refused
        raise BadInput("data", str(path), "a torch.save file of tensors, loadable with weights_only=True "
                       f"(files that need code to load are refused): {type(err).__name__}") from None
    if isinstance(obj, (tuple, list)) and len(obj) == 2 and keys == {"x": "x", "y": "y"}:
        obj = {"x": obj[0], "y": obj[1]}
    if not isinstance(obj, dict):
        raise BadInput("data", f"{path} holding a {type(obj).__name__}",
                       "a dict of tensors {'x': inputs, 'y': targets} (or a pair (x, y))")
    present = [str(k) for k in obj]
    out = {}
    for role, key in keys.items():
        if key not in obj:
            raise _missing(path, key, present)
        value = obj[key]
        if not isinstance(value, Tensor):
            raise BadInput(_where(path, key), f"a {type(value).__name__}", "a tensor")
        if value.is_complex() or value.layout != torch.strided:
            raise BadInput(_where(path, key), f"a {value.dtype} {value.layout} tensor", "a dense real tensor")
        out[role] = value.detach().to(torch.float32 if value.dtype == torch.bfloat16 else value.dtype).numpy()
    return out


_FAMILY = r"(?:[_.]?(\d+))?"


def _columns(frame_columns: Sequence[str], names: Names) -> list[str]:
    """The columns a name selects: itself, or its numbered family NAME0, NAME1, ... in index order."""
    if not isinstance(names, str):
        return list(names)
    pattern = re.compile(re.escape(names) + _FAMILY + r"\Z")
    found = []
    for col in frame_columns:
        match = pattern.match(str(col))
        if match:
            found.append((-1 if match.group(1) is None else int(match.group(1)), str(col)))
    return [col for _, col in sorted(found)]


def _read_table(path: Path, x: Names, y: Names, max_bytes: int) -> dict[str, np.ndarray]:
    import pandas as pd

    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            meta = pq.ParquetFile(path).metadata
            if meta.num_rows * meta.num_columns * 8 > max_bytes:
                raise BadInput("data", f"{path} ({meta.num_rows} rows x {meta.num_columns} columns)",
                               f"at most {max_bytes} bytes of values (max_bytes)")
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path)
    except BadInput:
        raise
    except Exception as err:  # noqa: BLE001 - any parse failure of the user's file
        raise BadInput("data", str(path), f"a readable {path.suffix} table ({type(err).__name__}: {err})") from None
    frame.columns = [str(c) for c in frame.columns]
    out = {}
    for role, names in (("x", x), ("y", y)):
        cols = _columns(frame.columns, names)
        if not cols:
            raise _missing(path, _label(names), list(frame.columns), kind="column")
        for col in cols:
            if col not in frame.columns:
                raise _missing(path, col, list(frame.columns), kind="column")
            kind = frame[col].dtype.kind
            if kind not in "biuf":
                sample = next((v for v in frame[col] if not isinstance(v, (int, float))), frame[col].iloc[0])
                raise BadInput(_where(path, col, "column"), f"dtype {frame[col].dtype} (e.g. {sample!r})",
                               "numbers in every row")
        values = frame[cols].to_numpy()
        nan_rows, nan_cols = np.nonzero(~np.isfinite(values.astype(np.float64)))
        if len(nan_rows):
            raise BadInput(_where(path, cols[nan_cols[0]], "column"),
                           f"{len(nan_rows)} missing or non-finite value(s), first in row {nan_rows[0]}",
                           "a finite number in every row")
        out[role] = values[:, 0] if isinstance(names, str) and cols == [names] else values
    return out


def _checked(path: Path, name: str, array: np.ndarray) -> np.ndarray:
    """A numeric array with at least one example and only finite values; BadInput naming it otherwise."""
    array = np.asarray(array)
    if array.ndim > 0:  # a writable, positively strided copy where needed (torch's terms)
        array = np.require(array, requirements=["C", "W"])
    if array.dtype.kind not in "biuf":
        raise BadInput(_where(path, name), f"dtype {array.dtype}", "numbers (bool, integer or floating)")
    if array.ndim == 0 or array.shape[0] == 0:
        raise BadInput(_where(path, name), f"shape {array.shape}", "an array (n, ...) with n >= 1 examples")
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array)
        if bad.any():
            first = np.argwhere(bad)[0]
            raise BadInput(_where(path, name), f"{int(bad.sum())} NaN or infinite value(s), first at index "
                           f"{tuple(int(i) for i in first)}", "finite numbers")
    if array.dtype.kind == "u" and array.dtype.itemsize == 8 and array.max(initial=0) > np.iinfo(np.int64).max:
        raise BadInput(_where(path, name), "uint64 values above 2**63", "integers that fit in int64")
    return array


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
