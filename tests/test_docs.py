"""The documentation's examples run as written (docs/*.md python blocks, executed in order per page).

A page may register laws (docs/writing-a-law.md does): they are removed from the law book afterwards,
so that the rest of the suite sees the built-in law book only.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = sorted(p for p in DOCS.glob("*.md") if "```python" in p.read_text())


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)


@pytest.fixture
def restore_lawbook():
    """Unregister whatever a page registered."""
    from lmech.experiments import names
    from lmech.experiments.registry import unregister

    before = set(names())
    yield
    for name in set(names()) - before:
        unregister(name)


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_page_examples_run(page, capsys, restore_lawbook):
    namespace: dict = {}
    for i, block in enumerate(python_blocks(page)):
        try:
            exec(compile(block, f"{page.name}[block {i}]", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the failure message is the point
            pytest.fail(f"{page.name} block {i} failed: {type(exc).__name__}: {exc}\n{block}")


def law_block() -> str:
    """The complete law of docs/writing-a-law.md (its first python block)."""
    return python_blocks(DOCS / "writing-a-law.md")[0]


def test_the_small_law_is_small_and_complete():
    block = law_block()
    assert len(block.rstrip("\n").splitlines()) < 80
    for part in ("@register", "def predict", "def measure", "def verdict", "def figures", "def counterexamples",
                 "def criteria", "inconclusive"):
        assert part in block
