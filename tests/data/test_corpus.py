"""The standard-library corpus: docstrings checked against the interpreter's own ``__doc__`` strings,
deterministic, split by whole files, tokens that decode back to the text."""

from __future__ import annotations

import colorsys
import inspect
import sysconfig
from pathlib import Path

import pytest
import torch

from lmech.data.corpus import _docstrings, load_corpus, stdlib_files
from lmech.errors import BadInput


def test_docstrings_match_the_runtime_doc_strings():
    # independent reference: the __doc__ attributes the interpreter attaches, cleaned like inspect.getdoc
    source = Path(colorsys.__file__).read_text()
    expected = [inspect.cleandoc(colorsys.__doc__)]
    for name in ("rgb_to_yiq", "yiq_to_rgb", "rgb_to_hls", "hls_to_rgb", "_v", "rgb_to_hsv", "hsv_to_rgb"):
        doc = getattr(colorsys, name).__doc__
        if doc:
            expected.append(inspect.cleandoc(doc))
    assert _docstrings(source) == "\n\n".join(expected)


def test_file_list_skips_tests_and_is_sorted():
    files = stdlib_files()
    assert files == tuple(sorted(files)) and len(files) > 200
    assert "colorsys.py" in files and "json/decoder.py" in files
    assert not any(part in ("test", "tests", "site-packages") for f in files for part in f.split("/"))
    assert all((Path(sysconfig.get_paths()["stdlib"]) / f).is_file() for f in files[:20])


@pytest.mark.parametrize("kind", ["docstrings", "source"])
def test_split_by_whole_files_and_deterministic(kind):
    corpus = load_corpus(kind, max_bytes=30_000)
    load_corpus.cache_clear()
    again = load_corpus(kind, max_bytes=30_000)
    assert again.manifest() == corpus.manifest() and again is not corpus
    files = corpus.files()
    assert set(files["split"]) == {"train", "val"}
    assert len(set(files["path"])) == len(files)  # a file is in one split only
    val_text, train_text = corpus.text("val"), corpus.text("train")
    for text, is_val in zip(corpus.texts, corpus.is_val):
        assert (text in val_text) if is_val else (text in train_text)
    total = int(files["bytes"].sum())
    assert 0.95 * 30_000 <= total <= 30_000 or len(files) == len(stdlib_files())
    manifest = corpus.manifest()
    assert manifest["python"] and len(manifest["content_sha256"]) == 64
    if kind == "source":  # whole files, byte for byte
        root = Path(sysconfig.get_paths()["stdlib"])
        assert corpus.texts[0] == (root / corpus.paths[0]).read_text(encoding="utf-8", errors="replace")


def test_tokens_decode_back_and_batches_are_next_token_pairs():
    corpus = load_corpus("docstrings", "byte", max_bytes=20_000)
    tokens = corpus.tokens("train")
    assert tokens.dtype == torch.int64 and int(tokens.max()) < 256
    assert corpus.decode(tokens) == corpus.text("train")
    x, y = corpus.batch("train", 4, 16, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 16) and torch.equal(x[:, 1:], y[:, :-1])
    chars = load_corpus("docstrings", "char", max_bytes=20_000)
    assert chars.vocab_size == len(set(chars.text("train") + "\n\n" + chars.text("val")))
    assert chars.decode(chars.encode(chars.text("val"))) == chars.text("val")


def test_bad_arguments_are_named():
    with pytest.raises(BadInput, match="kind"):
        load_corpus("poetry")
    with pytest.raises(BadInput, match="max_bytes"):
        load_corpus("source", max_bytes=10)
    with pytest.raises(BadInput, match="split"):
        load_corpus("source", max_bytes=20_000).tokens("test")
