#!/usr/bin/env bash
# Build the side venv that runs the VP² benchmark (benchmarks/vp2): robosuite, robodesk and
# the ORV world model in one process.
#
# Why a venv of its own: robosuite 1.5.2 depends on mink==0.0.5, which pins numpy<2, and
# installing it into .venv would downgrade numpy 2.4.6 -> 1.26.4 and opencv-python 5 -> 4.11
# under TensorFlow, ManiSkill 3 and the rest (pip check then fails). Here numpy 1.26 is fine:
# the world model only needs torch + diffusers + transformers, which run on it. The CPU torch
# wheel is taken (from /opt/wheels through pip's find-links when present); where `nvidia-smi -L`
# lists a GPU the default is torch==2.14.1, PyPI's CUDA build, to plan on the GPU
# (SIDE_VENV_CUDA=0/1 forces the choice, scripts/side_venv_torch.sh; VP2_TORCH_SPEC overrides).
#
# The project is put on the venv's path (a .pth file, no install), so
# `.venv-vp2/bin/python -m benchmarks.vp2.run ...` runs the benchmark there.
#
# Idempotent: a stamp file records what was installed; a second run with the same spec is a
# no-op. Quiet unless something fails. A first run took 4 min 43 s on 2 cores (beside other
# work); the venv is 2.7 GB alone (robosuite's assets: 0.5 GB), 1.6 GB beside the other venvs.
#
#   bash scripts/setup_vp2_venv.sh                  # -> .venv-vp2
#   VP2_VENV=/opt/vp2-venv bash scripts/setup_vp2_venv.sh
set -euo pipefail

NAME=setup_vp2_venv
VENV="${VP2_VENV:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.venv-vp2}"
# shellcheck source=scripts/side_venv_torch.sh
source "$(dirname "${BASH_SOURCE[0]}")/side_venv_torch.sh"
if side_venv_cuda; then
  TORCH_SPEC="${VP2_TORCH_SPEC-torch==2.14.1}"
else
  TORCH_SPEC="${VP2_TORCH_SPEC-torch==2.13.0+cpu}"
fi
SIM_SPEC="robosuite==1.5.2 robodesk==1.0.0 mujoco==3.3.7 dm_control==1.0.34"
# The world model's stack, at the main venv's versions (imageio: the pipelines write mp4); numpy<2 is mink's pin, said out loud.
MODEL_SPEC="diffusers==0.42.1 transformers==5.23.0 tokenizers==0.23.3 safetensors==0.8.0 accelerate==1.15.0 numpy<2 pillow pyyaml imageio==2.38.2 imageio-ffmpeg==0.8.1"
WANT="$TORCH_SPEC $SIM_SPEC $MODEL_SPEC +project-path"
# shellcheck source=scripts/side_venv.sh
source "$(dirname "${BASH_SOURCE[0]}")/side_venv.sh"
side_venv_up_to_date && exit 0
side_venv_reset_if_stale

side_venv_create
side_venv_install_torch "$TORCH_SPEC"
# shellcheck disable=SC2086  # the specs are lists
"${PIP[@]}" install $TORCH_SPEC $SIM_SPEC $MODEL_SPEC >>"$LOG" 2>&1 || fail "pip install $SIM_SPEC"
side_venv_finish "import robosuite, robodesk, mujoco, torch, diffusers, transformers"
side_venv_share_files
