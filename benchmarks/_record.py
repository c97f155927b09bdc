"""Write one benchmark's results into its own section of BENCHMARKS.md.

Each benchmark script calls ``record(name, markdown)``; the section between
``<!-- bench:name -->`` and ``<!-- /bench:name -->`` is replaced (appended the first time). The file
is rewritten atomically under a lock, so benchmarks may run concurrently.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import os
import platform
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "BENCHMARKS.md"
HEADER = (
    "# Benchmarks\n\n"
    "Speed goals of lmech, each measured as a ratio against a peer timed in the same run "
    "(`make bench`, or `python benchmarks/NAME.py`). Each section is written by its script; "
    "the machine and date are recorded with it.\n"
)


def machine() -> str:
    """One line naming the machine, torch version and thread count of this measurement."""
    import torch

    return (
        f"{_dt.date.today().isoformat()}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )


def record(name: str, markdown: str) -> None:
    """Replace (or append) the section ``name`` of BENCHMARKS.md with ``markdown``."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{markdown.strip()}\n{end}"
    lock = TARGET.with_suffix(".lock")
    with open(lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        text = TARGET.read_text() if TARGET.exists() else HEADER
        pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
        text = pattern.sub(lambda _m: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
        tmp = TARGET.with_suffix(".md.tmp")
        tmp.write_text(text)
        os.replace(tmp, TARGET)
    lock.unlink(missing_ok=True)
