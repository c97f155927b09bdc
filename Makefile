# The two commands of the README: `make run` (the quick law book) and `make test` (the whole suite).
# Both build .venv from pyproject.toml, pinned by constraints.txt (torch==2.13.0 CPU build and the rest).
# --no-compile: pip would byte-compile every module of every wheel (half of the install time); Python
# compiles the modules actually imported, once, on first import.
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
	touch $(STAMP)

# The tutorials' Jupyter stack (jupytext, nbclient, ipykernel), for `make test` only: `make run` does not wait for it.
$(VENV)/.tutorials: $(STAMP)
	$(PIP) install --no-compile -c constraints.txt -e ".[tutorials]"
	touch $(VENV)/.tutorials

run: venv
	$(BIN)/lmech check --quick

# Two test processes (pytest-xdist): a law-book entry computed by one is shared with the other (tests/conftest.py).
test: venv $(VENV)/.tutorials
	$(BIN)/python -m pytest -q -n 2

bench: venv
	$(PIP) install --no-compile -c constraints.txt -e ".[bench]"
	$(BIN)/python benchmarks/run_all.py

lint: venv
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) lab .pytest_cache
