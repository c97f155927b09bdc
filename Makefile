# The two commands of the README: `make run` (the quick law book) and `make test` (the whole suite).
# Both build .venv from pyproject.toml, pinned by constraints.txt (torch==2.13.0 CPU build and the rest).
# --no-compile, then one parallel compileall: pip byte-compiles file by file on one core (half of the install
# time). The bytecode must be written at install time: where PYTHONDONTWRITEBYTECODE is set (CI machines set
# it), Python never caches what it compiles, and every process (each test worker, each CLI subprocess) would
# compile torch's modules again: ~15 s instead of ~4 s to import torch and build an optimizer, measured here.
# A few wheels ship files that are not Python 3 (templates, fixtures): compileall reports them, hence "|| true".
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
PIP     = $(BIN)/python -m pip --disable-pip-version-check -q
STAMP   = $(VENV)/.installed

.PHONY: run test bench lint venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first and pinned, so that nothing pulls a CUDA build of several GB.
	$(PIP) install --no-compile -c constraints.txt torch
	$(PIP) install --no-compile -c constraints.txt -e ".[dev,ray]"
	$(BIN)/python -m compileall -q -j 0 $$($(BIN)/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])") src > /dev/null || true
	touch $(STAMP)

# The tutorials' Jupyter stack (jupytext, nbclient, ipykernel), for `make test` only: `make run` does not wait for it.
$(VENV)/.tutorials: $(STAMP)
	$(PIP) install --no-compile -c constraints.txt -e ".[tutorials]"
	$(BIN)/python -m compileall -q -j 0 $$($(BIN)/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])") > /dev/null || true
	touch $(VENV)/.tutorials

run: venv
	$(BIN)/lmech check --quick

# Three test processes (pytest-xdist) on the 2-core machine: a third keeps both cores busy while one process
# waits on a subprocess test (kills, Ctrl-C, Ray start-up, Jupyter kernels), measured a quarter of the run.
# A law-book entry computed by one process is shared with the others (tests/conftest.py), and the contract's
# tests of one law go to one process (--dist loadgroup) so that none waits on another's computation.
# The 30 slowest tests are listed at the end, to keep the CI run under its 20 minutes.
test: venv $(VENV)/.tutorials
	$(BIN)/python -m pytest -q -n 3 --dist loadgroup --durations=30

bench: venv
	$(PIP) install --no-compile -c constraints.txt -e ".[bench]"
	$(BIN)/python benchmarks/run_all.py

lint: venv
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) lab .pytest_cache
