# make demo | make test | make lint. Needs only python3; `make test` installs pinned pytest into .venv when missing.
PYTHON ?= python3
PYTEST_VERSION := 8.3.4
VENV := .venv
DEMO := .demo

.PHONY: test demo lint bench clean

test:
	@if $(PYTHON) -c "import pytest" 2>/dev/null; then py="$(PYTHON)"; \
	else echo "pytest missing: installing pytest==$(PYTEST_VERSION) into $(VENV)"; \
	  { [ -x $(VENV)/bin/python ] || $(PYTHON) -m venv $(VENV); } && \
	  $(VENV)/bin/python -m pip install -q "pytest==$(PYTEST_VERSION)" || exit 2; py=$(VENV)/bin/python; fi; \
	$$py -m pytest -q tests && $(PYTHON) tests/e2e_pythons.py

demo:
	@rm -rf $(DEMO) && mkdir -p $(DEMO); \
	$(PYTHON) fixtures/service.py --port 18765 --tls-port 18766 --ready-file $(DEMO)/ready \
	  --log-file $(DEMO)/service.log --pid-file $(DEMO)/service.pid > /dev/null & svc=$$!; \
	skip=""; prom=""; \
	if command -v prometheus > /dev/null; then \
	  $(PYTHON) fixtures/prometheus.py --target 127.0.0.1:18765 --port 19090 --dir $(DEMO)/prometheus \
	    --ready-file $(DEMO)/prometheus.ready > /dev/null & prom=$$!; \
	else echo "demo: prometheus not installed, skipping its check (apt-get install prometheus)"; skip="--skip-tag prometheus"; fi; \
	for i in $$(seq 300); do [ -f $(DEMO)/ready ] && { [ -z "$$prom" ] || [ -f $(DEMO)/prometheus.ready ]; } && break; sleep 0.1; done; \
	$(PYTHON) smoke.py all --config fixtures/demo.json --format text $$skip; rc=$$?; \
	kill $$svc $$prom 2> /dev/null; wait; exit $$rc

lint:
	$(PYTHON) -m py_compile smoke.py checks/*.py checks/kinds/*.py fixtures/*.py bench/*.py tests/*.py

bench:
	$(PYTHON) bench/run.py

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
