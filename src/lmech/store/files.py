"""Atomic file writes: a reader sees the old file or the whole new one, never a half-written one.

Each write goes to a temporary name in the same folder (unique per process and call), is flushed and
fsync'ed, then renamed over the target with ``os.replace`` (atomic on POSIX and Windows within one file
system). A write that fails (disk full, read-only folder) removes its temporary file: nothing leaks.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(3)}")


@contextlib.contextmanager
def _temporary(path: Path) -> Iterator[Path]:
    """A temporary sibling of ``path``, renamed over it on success and removed on any failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with _temporary(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def _default(obj: Any) -> Any:
    """JSON encoding of numpy/torch scalars and arrays, paths and non-finite floats."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, tuple)):
        return list(obj)
    raise TypeError(f"cannot store {type(obj).__name__} as JSON")


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically (NaN and inf are written as JSON's NaN/Infinity)."""
    write_bytes(path, (json.dumps(obj, indent=2, default=_default, sort_keys=False) + "\n").encode())


def read_json(path: Path) -> Any:
    """Read a JSON file written by :func:`write_json`."""
    return json.loads(Path(path).read_bytes())


def write_parquet(path: Path, frame: pd.DataFrame) -> None:
    """Write a DataFrame as Parquet atomically."""
    with _temporary(path) as tmp:
        frame.to_parquet(tmp, index=False)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())


def sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes (hex)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync_dir(path: Path) -> None:
    """Make a folder's entries (files created, renamed or removed in it) durable, where the OS allows."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # not supported for folders here (e.g. Windows)
        pass
    finally:
        os.close(fd)
