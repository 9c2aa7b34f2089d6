# Every target that needs Python creates .venv and installs the project into it
# first, so a fresh checkout needs nothing but `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench schema clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/host_app.py

test: $(STAMP)
	$(BIN)/python -m pyflakes hostrt tests bench examples
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m bench

schema: $(STAMP)
	$(BIN)/hostrt schema > docs/plugin.schema.json

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
