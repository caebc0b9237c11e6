# LuDoseResponse: `make demo`, `make test`, `make bench`, `make lint`.
# Each target creates .venv (if missing) and installs the project with its test extra.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# the independent references (../shared/reference) are required; LUDR_REQUIRE_REFERENCE=0 runs without them
LUDR_REQUIRE_REFERENCE ?= 1

.PHONY: demo test bench lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ludoseresponse demo --out demo_output

test: $(STAMP)
	$(PY) -m ruff check LuDoseResponseLib LuDoseResponse Testing benchmarks
	LUDR_REQUIRE_REFERENCE=$(LUDR_REQUIRE_REFERENCE) LUDR_REQUIRE_SLICER_CORE=1 $(PY) -m pytest Testing -q

bench: $(STAMP)
	$(PY) benchmarks/stats.py
	$(PY) benchmarks/doserate.py

lint: $(STAMP)
	$(PY) -m ruff check LuDoseResponseLib LuDoseResponse Testing benchmarks

clean:
	rm -rf $(VENV) demo_output build *.egg-info
