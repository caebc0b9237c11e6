# LuDoseResponse: `make demo`, `make test`, `make bench`, `make lint`.
# Each target creates .venv (if missing) and installs the project with its test extra.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# the independent references (../shared/reference) are required; LUDR_REQUIRE_REFERENCE=0 runs without them
LUDR_REQUIRE_REFERENCE ?= 1

# dicom3tools' dciodvfy validates our DICOM outputs in the tests; installed from Debian where we are root
DICOM_VALIDATOR = command -v dciodvfy >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	&& (apt-get update -qq && apt-get install -y -qq dicom3tools) >/dev/null 2>&1; } \
	|| echo "note: dciodvfy (Debian package dicom3tools) is not installed; its conformance tests are skipped"

.PHONY: demo test bench lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ludoseresponse demo --out demo_output --phantoms 10

test: $(STAMP)
	@$(DICOM_VALIDATOR)
	$(PY) -m ruff check LuDoseResponseLib LuDoseResponse Testing benchmarks
	LUDR_REQUIRE_REFERENCE=$(LUDR_REQUIRE_REFERENCE) LUDR_REQUIRE_SLICER_CORE=1 $(PY) -m pytest Testing -q

bench: $(STAMP)
	$(PY) benchmarks/stats.py
	$(PY) benchmarks/doserate.py
	$(PY) benchmarks/pipeline.py
	$(PY) benchmarks/cohort_scale.py --full

lint: $(STAMP)
	$(PY) -m ruff check LuDoseResponseLib LuDoseResponse Testing benchmarks

clean:
	rm -rf $(VENV) demo_output build *.egg-info
