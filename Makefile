# `make demo` and `make test` set up their own virtual environment on first use (CPU torch, pinned).
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
DEMO_DIR ?= demo

.PHONY: setup demo demo-marketing test test-slow test-all lint bench clean

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,ray,ui]'
	touch $@

setup: $(VENV)/.installed

# A short campaign of the primary domain (a small GPT on the embedded corpus), offline, CPU only. Each run
# trains a fixed number of tokens on one thread (load changes the wall time, not the result); two run at
# once, one per core of a 2-core machine (DEMO_WORKERS=1 for one at a time). DEMO_TIME is a ceiling: on a
# machine busy enough to reach it, no hypothesis's run starts after it and the campaign ends with what it has
# decided (the final holdback pair, its time kept back from DEMO_TIME, may run past it).
DEMO_WORKERS ?= 2
DEMO_TIME ?= 7m
demo: $(VENV)/.installed
	test -f $(DEMO_DIR)/ledgerlab.toml || $(VENV)/bin/ledgerlab init ml_training --dir $(DEMO_DIR)
	$(VENV)/bin/ledgerlab run --dir $(DEMO_DIR) --max-hypotheses 8 --workers $(DEMO_WORKERS) --time-limit $(DEMO_TIME)
	$(VENV)/bin/ledgerlab status --dir $(DEMO_DIR)
	@echo "the dashboard (charts, every hypothesis, live while a campaign runs): $(VENV)/bin/ledgerlab ui --dir $(DEMO_DIR)"

# The same loop on the simulated marketing A/B market (about a minute).
demo-marketing: $(VENV)/.installed
	test -f $(DEMO_DIR)-marketing/ledgerlab.toml || $(VENV)/bin/ledgerlab init marketing --dir $(DEMO_DIR)-marketing
	$(VENV)/bin/ledgerlab run --dir $(DEMO_DIR)-marketing --max-hypotheses 30
	$(VENV)/bin/ledgerlab status --dir $(DEMO_DIR)-marketing

# `make test` leaves out the tests marked slow (each has a faster sibling that keeps the promise covered);
# `make test-slow` runs only those, `make test-all` both. Tests run on TEST_WORKERS processes (pytest-xdist):
# much of the suite waits on subprocesses (sandboxed runs, CLI runners), so three share a 2-core machine well
# (beside a CPU hog: 4 m 14 s on three; with pytest 9.2 dropping the groups, 7 m 07 s on two, 5 m 37 s on four).
# Modules that build something costly once keep to one worker (tests/conftest.py); TEST_WORKERS=0 runs serially.
TEST_WORKERS ?= 3
XDIST = -n $(TEST_WORKERS) --dist loadgroup
test: $(VENV)/.installed
	$(PY) -m pytest $(XDIST)

test-slow: $(VENV)/.installed
	$(PY) -m pytest $(XDIST) -m slow

test-all: $(VENV)/.installed
	$(PY) -m pytest $(XDIST) -m "slow or not slow"

# ruff, then mypy ([tool.mypy] in pyproject.toml), on ledgerlab's code: .ci/lint.py leaves out the campaign
# folders inside the repository (any folder below the root holding a ledgerlab.toml: `make demo`'s, one made with
# `ledgerlab init --dir NAME`, bench/gpu_profile.py's copy in .gpu/), whatever their names.
lint: $(VENV)/.installed
	$(PY) .ci/lint.py $(VENV)

bench: $(VENV)/.installed
	for b in ledger judge judge_frontier overhead proposers decisions parallel; do $(PY) bench/$$b.py || exit 1; done

clean:
	rm -rf $(VENV) $(DEMO_DIR) $(DEMO_DIR)-marketing ledgerlab.egg-info build  # a stale egg-info hides new entry points
