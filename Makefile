# make demo | make test | make lint | make bundle. Needs only python3; `make test` installs pinned pytest and
# pytest-xdist into .venv when they are missing.
PYTHON ?= python3
PYTEST_VERSION := 8.3.4
XDIST_VERSION := 3.6.1
VENV := .venv
DEMO := .demo

.PHONY: test demo lint bench bundle clean

# The tests run in two processes with pytest-xdist (a file's tests stay together), then the few
# marked serial (they count processes machine-wide) alone. A Python that has pytest but not
# xdist gets a .venv that sees its packages, with pinned pytest and xdist; where they cannot be
# installed (no network), whatever pytest there is runs them one after another. Only pytest's own
# plugins and xdist are loaded (a plugin some other project installed cannot change the run), and
# the reason of every skip is said.
test:
	@py="$(PYTHON)"; \
	if ! $$py -c "import pytest, xdist" 2>/dev/null; then \
	  if { [ -x $(VENV)/bin/python ] || $(PYTHON) -m venv --system-site-packages $(VENV); } && \
	     $(VENV)/bin/python -m pip install -q --disable-pip-version-check \
	       "pytest==$(PYTEST_VERSION)" "pytest-xdist==$(XDIST_VERSION)"; then py=$(VENV)/bin/python; \
	  else echo "make test: could not install pytest-xdist into $(VENV): the tests run serially"; \
	    $$py -c "import pytest" 2>/dev/null || { echo "make test: no pytest, and none could be installed"; exit 2; }; fi; \
	fi; \
	export PYTEST_DISABLE_PLUGIN_AUTOLOAD=1; failed=0; \
	if $$py -c "import xdist" 2>/dev/null && [ "$$(nproc 2>/dev/null || echo 1)" -gt 1 ]; then \
	  $$py -m pytest -q -rs -p xdist -n 2 --dist loadfile -m "not serial" tests || failed=1; \
	  $$py -m pytest -q -rs -m serial tests || failed=1; \
	else $$py -m pytest -q -rs tests || failed=1; fi; \
	$(PYTHON) tests/e2e_pythons.py || failed=1; \
	exit $$failed

demo:
	@$(PYTHON) fixtures/demo.py --dir $(DEMO)

lint:
	$(PYTHON) -m py_compile smoke.py checks/*.py checks/*/*.py fixtures/*.py bench/*.py tools/*.py tests/*.py

bench:
	$(PYTHON) bench/run.py

bundle:
	@$(PYTHON) tools/bundle.py --output dist/smoke.py

# What runs leave here: the venv, the demo's files, the bundle, caches, and heartbeat's run
# directories (its run_dir defaults to ./data/smoke/RUN_ID).
clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache dist data
	find . -name __pycache__ -prune -exec rm -rf {} +
