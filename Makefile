# The two front-door commands (see README.md):
#   make demo   set up .venv, start `moorage serve`, deploy the seed's example and invoke it
#   make test   set up .venv and run the whole test suite
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo notebook test test-browser check lint typecheck bench venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "moorage needs $(PYTHON) (set PYTHON=... to use another 3.11+ interpreter)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,ray]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/demo.py

# The post as a Jupyter notebook, executed by a real kernel; leaves demo-data/notebook/seed.ipynb to open.
notebook: $(STAMP)
	$(BIN)/python -m examples.notebook

test: $(STAMP)
	$(BIN)/python -m pytest

# The web console in a real headless Chromium (Debian's `chromium`; the suite skips, saying why, without it).
test-browser: $(STAMP)
	$(BIN)/python -m pytest tests/integration/console

check: lint typecheck test

lint: $(STAMP)
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

typecheck: $(STAMP)
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
