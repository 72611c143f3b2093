# Rill developer entry points.  Everything runs inside .venv, created on demand.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# extra arguments for the command a target runs: make run ARGS="--dashboard-port 4800"
ARGS   ?=

.PHONY: run test soak chaos bench scale scale-dht lint vectors clean browser demo

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# setuptools' note on every editable install ("Editable installation. Please be careful
# with folders ... with the same name as your package") is silenced; nothing else is
$(STAMP): pyproject.toml | $(BIN)/python
	PYTHONWARNINGS="ignore:Editable installation" \
	  $(BIN)/python -m pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

## run: create the venv, install, start a node on the default home (flags: ARGS="...")
run: $(STAMP)
	$(BIN)/rill node run $(ARGS)

## test: create the venv, install, run the whole suite (soak tests excluded), one worker
## per core with each test file kept in one worker (TEST_WORKERS=0: one process)
TEST_WORKERS ?= 2
test: $(STAMP)
	@command -v chromium >/dev/null || $(MAKE) --no-print-directory browser || \
	  echo "note: Chromium missing and not installable here: browser tests will be skipped"
	$(BIN)/python -m pytest -q -m "not soak" $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile) $(ARGS)

## browser: install Debian's Chromium for the browser tests (needs root and apt-get)
browser:
	@command -v chromium >/dev/null || { \
	  [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

## demo: a small local network of nodes and creator sites, a month in a minute
demo: $(STAMP)
	$(BIN)/rill demo $(ARGS)

## soak: the long-running tests only
soak: $(STAMP)
	$(BIN)/python -m pytest -q -m soak

## chaos: the long run with invariants alone (12 simulated months, 10 daemons, random
## faults; RILL_CHAOS_MONTHS / RILL_CHAOS_NODES / RILL_CHAOS_SEED / RILL_CHAOS_POWER;
## RILL_CHAOS_SHARD_BITS=2 for shards on); logs in tests/artifacts/chaos/
chaos: $(STAMP)
	$(BIN)/python -m pytest -q -s -m soak tests/test_chaos.py -k soak_twelve $(ARGS)

## scale: the scale simulation (tests/scale/sim.py): real Daemons in worker processes, one
## month each, shards off then on (SCALE_BITS=-1; or a fixed number of bits); the runs join
## docs/scale-runs.json and the table and fitted model go to docs/SCALE.md
## (SCALE_SIZES, SCALE_PROCS, SCALE_CLICKS). Sizes past what the machine runs at rest
## (here 2 cores: N = 200 and more) with SCALE_LOADED=1: they go to
## docs/scale-runs-loaded.json and are reported beside the fit, not in it
SCALE_SIZES ?= 50 100
SCALE_LOADED ?=
SCALE_PROCS ?= 2
SCALE_BITS ?= -1
SCALE_CLICKS ?= 2
scale: $(STAMP)
	$(BIN)/python tests/scale/sim.py $(SCALE_SIZES) --procs $(SCALE_PROCS) \
	  --shard-bits $(SCALE_BITS) --clicks $(SCALE_CLICKS) --json .scale-runs.json $(ARGS)
	$(BIN)/python tests/scale/report.py .scale-runs.json --store docs/scale-runs.json \
	  --dht docs/dht-runs.json --loaded docs/scale-runs-loaded.json \
	  $(if $(SCALE_LOADED),--as-loaded) --doc docs/SCALE.md

## scale-dht: the DHT alone (tests/scale/dhtsim.py), bare hosts with the daemon's DHT, at
## sizes whole daemons cannot reach here: how a lookup's cost grows with N; the runs go to
## docs/dht-runs.json and the model in docs/SCALE.md uses them (DHT_SIZES, DHT_SAMPLE)
DHT_SIZES ?= 100 200 500 1000
DHT_SAMPLE ?= 40
scale-dht: $(STAMP)
	$(BIN)/python tests/scale/dhtsim.py $(DHT_SIZES) --procs $(SCALE_PROCS) \
	  --sample $(DHT_SAMPLE) --json docs/dht-runs.json $(ARGS)
	$(BIN)/python tests/scale/report.py --store docs/scale-runs.json \
	  --dht docs/dht-runs.json --loaded docs/scale-runs-loaded.json --doc docs/SCALE.md

## bench: measure, and write the table to docs/BENCHMARKS.md
bench: $(STAMP)
	$(BIN)/python tests/bench/run.py --out docs/BENCHMARKS.md

## lint: ruff everywhere, mypy --strict on protocol/ and wallet/
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy --strict protocol wallet

## vectors: regenerate tests/vectors/*.json (deterministic)
vectors: $(STAMP)
	$(BIN)/python tests/vectors/generate.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
