# make demo | make test | make lint | make bundle. Needs only python3; `make test` installs pinned pytest into .venv when missing.
PYTHON ?= python3
PYTEST_VERSION := 8.3.4
XDIST_VERSION := 3.6.1
VENV := .venv
DEMO := .demo

.PHONY: test demo lint bench bundle clean

# pytest-xdist, when it can be had, runs the tests in two processes (a file's tests stay together),
# then the few marked serial (they count processes machine-wide) alone; without it, all in one go.
test:
	@if $(PYTHON) -c "import pytest" 2>/dev/null; then py="$(PYTHON)"; \
	else echo "pytest missing: installing pytest==$(PYTEST_VERSION) into $(VENV)"; \
	  { [ -x $(VENV)/bin/python ] || $(PYTHON) -m venv $(VENV); } && \
	  $(VENV)/bin/python -m pip install -q "pytest==$(PYTEST_VERSION)" || exit 2; py=$(VENV)/bin/python; \
	  $$py -m pip install -q "pytest-xdist==$(XDIST_VERSION)" || echo "no pytest-xdist: the tests run serially"; fi; \
	if $$py -c "import xdist" 2>/dev/null && [ "$$(nproc 2>/dev/null || echo 1)" -gt 1 ]; then \
	  $$py -m pytest -q -n 2 --dist loadfile -m "not serial" tests && $$py -m pytest -q -m serial tests; \
	else $$py -m pytest -q tests; fi && $(PYTHON) tests/e2e_pythons.py

demo:
	@$(PYTHON) fixtures/demo.py --dir $(DEMO)

lint:
	$(PYTHON) -m py_compile smoke.py checks/*.py checks/kinds/*.py checks/probes/*.py fixtures/*.py bench/*.py tools/*.py tests/*.py

bench:
	$(PYTHON) bench/run.py

bundle:
	@$(PYTHON) tools/bundle.py --output dist/smoke.py

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache dist
	find . -name __pycache__ -prune -exec rm -rf {} +
