# Every target that needs Python creates .venv and installs the project into it
# first, and `demo` and `test` also install the JavaScript tooling (npm ci) and
# build the bundled example plugin, so a fresh checkout needs nothing but
# `make demo` or `make test` (and Python 3.11+, Node.js and npm).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

NPM ?= npm
NPM_CI := $(NPM) ci --no-audit --no-fund --loglevel=error
JS_STAMP := node_modules/.installed
# The example plugin built from an npm project: its sources live in
# examples/npm/slugs-js, its bundle (git-ignored) in examples/plugins/slugs-js.
SLUGS_SRC := examples/npm/slugs-js
SLUGS_BUNDLE := examples/plugins/slugs-js/plugin.js
JS := $(JS_STAMP) $(SLUGS_BUNDLE)

.PHONY: demo test js bench schema clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# typescript and esbuild at the root; the example project's own dependencies.
$(JS_STAMP): package.json package-lock.json $(SLUGS_SRC)/package.json $(SLUGS_SRC)/package-lock.json
	$(NPM_CI)
	cd $(SLUGS_SRC) && $(NPM_CI)
	touch $(JS_STAMP)

$(SLUGS_BUNDLE): $(JS_STAMP) $(wildcard $(SLUGS_SRC)/src/*.js)
	cd $(SLUGS_SRC) && $(NPM) run --silent build -- --log-level=warning

js: $(JS)

demo: $(STAMP) $(JS)
	$(BIN)/python examples/host_app.py

# Plugin fixtures under tests/fixtures use sandbox builtins pyflakes cannot know.
test: $(STAMP) $(JS)
	$(BIN)/python -m pyflakes hostrt bench examples tests/*.py tests/adversarial/*.py
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m bench

schema: $(STAMP)
	$(BIN)/hostrt schema > docs/plugin.schema.json

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache node_modules $(SLUGS_SRC)/node_modules $(SLUGS_BUNDLE)
