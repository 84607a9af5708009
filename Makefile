# Two commands for a fresh machine: `make demo` and `make test`.
# Both create (or reuse) the virtual environment in .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint typecheck bench fuzz chaos clean

FUZZ_SECONDS ?= 60

$(BIN)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/callhome demo

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(BIN)/.installed
	$(BIN)/mypy --strict modem_drivers callhome receiver

# six workers on two cores: the end-to-end tests mostly wait on child processes and
# scaled line time (two workers kept two cores only 45 % busy; four took 314 s on a quiet
# machine, six 274 s with other work beside them; six with the commands' lazy imports
# and the slow tests started first, 225 s quiet). loadgroup: tests that
# share a machine-wide resource (mgetty's compiled-in paths, apt) carry
# @pytest.mark.xdist_group and run on one worker
test: lint typecheck
	$(BIN)/pytest -q -n 6 --dist loadgroup

bench: $(BIN)/.installed
	$(BIN)/python -m benchmarks.wire_budget
	$(BIN)/python -m benchmarks.virtual_line
	$(BIN)/python -m benchmarks.bank_turnaround

# every fuzz target for FUZZ_SECONDS each, coverage-guided (atheris); `make test` runs a
# short seeded run of each (tests/fuzz/test_targets.py)
fuzz: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet atheris
	$(BIN)/python -m tests.fuzz --seconds $(FUZZ_SECONDS)

# the chaos soak (tests/chaos/soak.py) for CHAOS_SECONDS: faults, bad lines, SIGKILLs of
# the receiver; prints lost / duplicated / corrupted / leftover partial rows (all 0)
CHAOS_SECONDS ?= 300
chaos: $(BIN)/.installed
	$(BIN)/python -m tests.chaos --seconds $(CHAOS_SECONDS)

clean:
	rm -rf $(VENV) *.egg-info
