# The two commands a user needs: `make test` and `make demo`.
# Both install what they need on a fresh Debian 12 machine (run as root).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo install lab-install lint unit bench clean wheel-check

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip >/dev/null 2>&1
	@$(PY) -m pip install -q -e '.[test]' >$(VENV)/pip.log 2>&1 || { cat $(VENV)/pip.log; exit 1; }
	@touch $(STAMP)

install: $(STAMP)

lab-install:
	@bash lab/install.sh

lint: install
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/lint-imports --no-cache

test: install lab-install lint wheel-check
	@$(VENV)/bin/pytest -n 2 -q

# The wheel, installed (not editable) outside the checkout, reads the same registry and bindings.
wheel-check:
	@PYTHON=$(PYTHON) bash scripts/wheel_check.sh

unit: install
	@$(VENV)/bin/pytest -q tests/unit

demo: install lab-install
	@$(PY) scripts/demo.py

bench: install
	@$(PY) bench/cli_startup.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
