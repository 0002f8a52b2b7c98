# The README's two commands: `make demo` (main job end to end) and `make test`.
# Both create .venv on first use; nothing here needs a network beyond the package registries.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TEXINSPECT := $(VENV)/bin/texinspect
DATA ?=
PROFILE ?= demo
MODEL ?= rbae
DEMO_DIR ?= runs/demo

.PHONY: venv demo test lint constraints clean

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# CPU torch from local disk first, so no dependency can pull a CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e ".[all,dev]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) -m texinspect.cli.demo --out $(DEMO_DIR) --profile $(PROFILE) --model $(MODEL) $(if $(DATA),--data $(DATA),)

test: venv
	# the import rules (layers, no cycles) in pyproject.toml, then the tests
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check src tests benchmarks

constraints: venv
	$(PY) -m pip freeze --exclude-editable | grep -vE '^(texinspect|pip|setuptools|wheel)==' > constraints.txt

clean:
	rm -rf $(VENV) runs
