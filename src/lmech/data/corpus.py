"""A text corpus made on this machine from the Python standard library: its docstrings, or its source.

Every Python install carries its standard library, so this corpus needs no download, ever. Two kinds:

* ``"docstrings"``: the module, class and function docstrings of each file (``ast.get_docstring`` with
  ``clean=True``), in source order, joined by blank lines: English prose with code-like statistics;
* ``"source"``: the files' source code as it is.

Files: every ``.py`` file under ``sysconfig.get_paths()["stdlib"]`` except test suites, IDLE,
``lib2to3``, ``ensurepip``, ``turtledemo``, ``site-packages`` and the generated codec tables and help
topics (``encodings``, ``pydoc_data``), visited in the order of the SHA-256 of their relative paths (a
fixed pseudo-random order, so a size budget takes a mix of the library rather than its first letters);
a file is taken whole if its text fits in what is left of ``max_bytes``, and collection stops when
95% of the budget is filled. Each file goes whole to the training or the validation split, never split
inside: files taken in the order of their (salted) path hashes form the validation split until it
holds ``val_fraction`` of the text. Tokens are UTF-8 bytes (``"byte"``, vocabulary 256) or characters (``"char"``,
vocabulary: the sorted characters of the collected text). The same Python version gives the same
corpus; :meth:`Corpus.manifest` records the version, the file list's and the content's hashes, and
:meth:`Corpus.files` the per-file table, for a run's records. Built once per process per argument
set (parsing costs about a second per MB of source on one core) and cached in memory.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import os
import platform
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lmech.errors import BadInput

__all__ = ["KINDS", "TOKENIZATIONS", "Corpus", "stdlib_files", "load_corpus"]

KINDS = ("docstrings", "source")
TOKENIZATIONS = ("byte", "char")
_SKIP_DIRS = {"site-packages", "dist-packages", "__pycache__", "test", "tests", "idle_test", "idlelib", "lib2to3",
              "ensurepip", "turtledemo", "encodings", "pydoc_data"}
_SEPARATOR = "\n\n"


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def stdlib_files(root: str | Path | None = None) -> tuple[str, ...]:
    """Relative paths of the standard library's ``.py`` files (module docstring), sorted."""
    root = Path(sysconfig.get_paths()["stdlib"] if root is None else root)
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        rel = Path(dirpath).relative_to(root)
        found.extend((rel / f).as_posix() for f in filenames if f.endswith(".py"))
    return tuple(sorted(found))


def _docstrings(source: str) -> str:
    """The docstrings of a module and of its classes and functions (nested too), in source order."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return ""
    out: list[str] = []

    def visit(node) -> None:
        doc = ast.get_docstring(node, clean=True)
        if doc:
            out.append(doc)
        for child in node.body:
            if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child)

    visit(tree)
    return _SEPARATOR.join(out)


@dataclass(frozen=True)
class Corpus:
    """The collected text, split by file, and its tokens (module docstring)."""

    kind: str
    tokenization: str
    paths: tuple[str, ...]
    texts: tuple[str, ...]
    is_val: tuple[bool, ...]
    vocabulary: str  # the characters of "char" tokens ("" for bytes)

    @property
    def vocab_size(self) -> int:
        return 256 if self.tokenization == "byte" else len(self.vocabulary)

    def text(self, split: str) -> str:
        """The split's files joined by blank lines (``"train"`` or ``"val"``)."""
        want = _check_split(split) == "val"
        return _SEPARATOR.join(t for t, v in zip(self.texts, self.is_val) if v == want)

    def encode(self, text: str) -> torch.Tensor:
        """Token ids (int64) of ``text``; a character outside a char vocabulary is an error."""
        if self.tokenization == "byte":
            return torch.from_numpy(np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64))
        index = {c: i for i, c in enumerate(self.vocabulary)}
        missing = sorted(set(text) - index.keys())
        if missing:
            raise BadInput("text", "".join(missing[:10]), "characters of the corpus vocabulary")
        return torch.tensor([index[c] for c in text], dtype=torch.int64)

    def decode(self, ids) -> str:
        ids = [int(i) for i in (ids.tolist() if hasattr(ids, "tolist") else ids)]
        if self.tokenization == "byte":
            return bytes(ids).decode("utf-8", errors="replace")
        return "".join(self.vocabulary[i] for i in ids)

    def tokens(self, split: str) -> torch.Tensor:
        """All token ids of a split, one long 1-d tensor (cached)."""
        return _tokens(self, _check_split(split))

    def batch(self, split: str, batch_size: int, block_size: int, generator: torch.Generator
              ) -> tuple[torch.Tensor, torch.Tensor]:
        """``batch_size`` random windows (B, block_size) of the split and their next-token targets."""
        data = self.tokens(split)
        if block_size < 1 or batch_size < 1 or len(data) <= block_size + 1:
            raise BadInput("block_size", block_size, f"1 <= block_size < {len(data) - 1} tokens of the {split} split")
        starts = torch.randint(0, len(data) - block_size - 1, (batch_size,), generator=generator)
        offsets = torch.arange(block_size)
        return data[starts[:, None] + offsets], data[starts[:, None] + offsets + 1]

    def files(self) -> pd.DataFrame:
        """One row per file: path, split, bytes of text, SHA-256 of the text."""
        return pd.DataFrame({"path": list(self.paths), "split": ["val" if v else "train" for v in self.is_val],
                             "bytes": [len(t.encode("utf-8")) for t in self.texts],
                             "sha256": [_hash(t) for t in self.texts]})

    def manifest(self) -> dict[str, object]:
        """What identifies the corpus: kind, tokens, Python version, file count, file-list and content hashes."""
        return {"kind": self.kind, "tokenization": self.tokenization, "python": platform.python_version(),
                "files": len(self.paths), "files_sha256": _hash("\n".join(self.paths)),
                "content_sha256": _hash(_SEPARATOR.join(self.texts)), "vocab_size": self.vocab_size,
                "train_tokens": int(len(self.tokens("train"))), "val_tokens": int(len(self.tokens("val")))}


def _check_split(split: str) -> str:
    if split not in ("train", "val"):
        raise BadInput("split", split, "'train' or 'val'")
    return split


@functools.lru_cache(maxsize=16)
def _tokens(corpus: Corpus, split: str) -> torch.Tensor:
    return corpus.encode(corpus.text(split))


@functools.lru_cache(maxsize=8)
def load_corpus(kind: str = "docstrings", tokenization: str = "byte", max_bytes: int = 500_000,
                val_fraction: float = 0.1) -> Corpus:
    """The corpus of ``kind`` with at most about ``max_bytes`` of text (module docstring), cached per process.

    Files whose text does not fit in the remaining budget are skipped; collection stops at 95% of
    ``max_bytes``. The validation split takes whole files in path-hash order until it holds
    ``val_fraction`` of the text (at least one file in each split).
    """
    if kind not in KINDS:
        raise BadInput("kind", kind, f"one of {KINDS}")
    if tokenization not in TOKENIZATIONS:
        raise BadInput("tokenization", tokenization, f"one of {TOKENIZATIONS}")
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or not 1_000 <= max_bytes <= 50_000_000:
        raise BadInput("max_bytes", max_bytes, "an integer in [1000, 5e7]")
    if not 0.0 < val_fraction < 1.0:
        raise BadInput("val_fraction", val_fraction, "a number in (0, 1)")
    root = Path(sysconfig.get_paths()["stdlib"])
    order = sorted(stdlib_files(root), key=lambda p: _hash(p))
    paths, texts, total = [], [], 0
    for path in order:
        source = (root / path).read_text(encoding="utf-8", errors="replace")
        text = _docstrings(source) if kind == "docstrings" else source
        if not text.strip():
            continue
        size = len(text.encode("utf-8"))
        if total + size > max_bytes:
            continue
        paths.append(path)
        texts.append(text)
        total += size
        if total >= 0.95 * max_bytes:
            break
    if len(paths) < 2:
        raise BadInput("max_bytes", max_bytes, "a budget that collects at least 2 files")
    sizes = dict(zip(paths, (len(t.encode("utf-8")) for t in texts)))
    val: set[str] = set()
    val_bytes = 0
    for path in sorted(paths, key=lambda p: _hash("val:" + p))[:-1]:  # at least one training file
        if val and val_bytes >= val_fraction * total:
            break
        val.add(path)
        val_bytes += sizes[path]
    is_val = [p in val for p in paths]
    vocabulary = "" if tokenization == "byte" else "".join(sorted(set(_SEPARATOR.join(texts))))
    return Corpus(kind, tokenization, tuple(paths), tuple(texts), tuple(is_val), vocabulary)
