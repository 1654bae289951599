# Two entry points: `make demo` (train the built-in default) and `make test` (the test suite, as CI runs it);
# `make test-fast` leaves out the tests marked slow (training, fresh processes, the docs site, the largest backbones).
# Both create .venv and install medtl into it; torch is pinned first so pip never fetches a newer build.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH := torch==2.14.1 torchvision==0.29.1
# one pytest worker per core (pytest-xdist), each taking whole files so a module's trained fixture is built once;
# most tests train with one thread, so two cores run two files at once. `make test PARALLEL=` runs in one process.
PARALLEL ?= -n auto --dist loadfile

.PHONY: install demo test test-fast lint benchmark clean

$(BIN)/medtl: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

install: $(BIN)/medtl

demo: install
	$(BIN)/medtl train

test: install
	$(BIN)/python -m pytest -q $(PARALLEL); rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; exit $$rc

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow" $(PARALLEL); rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; exit $$rc

# ruff (style and likely bugs) on every Python file, mypy on the public API; both configured in pyproject.toml
lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

benchmark: install
	$(BIN)/python benchmarks/run.py --out benchmarks/results/latest

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
