#!/usr/bin/env bash
# A side venv for the LeRobot export: lerobot 0.4.4 (the newest for Python 3.11) needs
# torch < 2.11, which cannot live beside this project's torch 2.14.1. The export module
# (vla_finetune/lerobot_export.py) needs only numpy, Pillow and lerobot, and runs there.
# Idempotent and quiet (see side_venv.sh).
#
# Which torch (scripts/side_venv_torch.sh decides; SIDE_VENV_CUDA=0/1 forces it):
#   CUDA machine (nvidia-smi lists a GPU): `pip install lerobot==0.4.4` as lerobot asks, i.e.
#     torch 2.10 + torchvision 0.25 + torchcodec 0.10 from PyPI, CUDA builds with the NVIDIA
#     libraries (~8 GB).
#   No CUDA: PyPI has no CPU build of torch < 2.11 for x86_64 Linux (its x86_64 wheels are CUDA
#     builds; the CPU ones live on PyTorch's own index, which this project does not assume), so
#     the venv takes torch 2.13.0+cpu (pip finds it in /opt/wheels through find-links; elsewhere
#     PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu), lerobot without its
#     torch / torchvision / torchcodec pins, every other dependency lerobot declares, and
#     torchvision 0.28.0 (the release paired with torch 2.13) without its compiled ops: that
#     wheel's ops are linked against CUDA torch and cannot load beside a CPU torch, and the
#     LeRobot dataset code only needs torchvision's Python transforms. Video decoding then goes
#     through PyAV (lerobot's fallback when torchcodec is absent). Measured: 2.3 GB alone
#     (1.9 GB beside the other venvs) instead of 8.3 GB, 4 min 14 s from scratch on 2 cores.
#
#   bash scripts/setup_lerobot_venv.sh [VENV]       # default .venv-lerobot
set -euo pipefail
NAME=setup_lerobot_venv
VENV="${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.venv-lerobot}"
# shellcheck source=scripts/side_venv_torch.sh
source "$(dirname "${BASH_SOURCE[0]}")/side_venv_torch.sh"
if side_venv_cuda; then
  WANT="lerobot==0.4.4 +project-path"
else
  TORCH_SPEC="torch==2.13.0+cpu"
  WANT="lerobot==0.4.4 $TORCH_SPEC torchvision==0.28.0-no-ops +project-path"
fi
# shellcheck source=scripts/side_venv.sh
source "$(dirname "${BASH_SOURCE[0]}")/side_venv.sh"
side_venv_up_to_date && exit 0
side_venv_reset_if_stale

side_venv_create
if side_venv_cuda; then
  # The machine-wide pip cap (torch<=2.14.1) does not forbid 2.10; lerobot pins it.
  "${PIP[@]}" install "lerobot==0.4.4" >>"$LOG" 2>&1 || fail "pip install lerobot==0.4.4"
else
  side_venv_install_torch "$TORCH_SPEC"
  "${PIP[@]}" install --no-deps "lerobot==0.4.4" "torchvision==0.28.0" >>"$LOG" 2>&1 \
    || fail "pip install --no-deps lerobot==0.4.4 torchvision==0.28.0"
  # lerobot's own requirement list, read from its installed metadata, less the three torch
  # packages (and extras, and markers that do not apply here): the rest installs as declared.
  mapfile -t DEPS < <("$VENV/bin/python" - <<'PY'
from importlib.metadata import requires
from pip._vendor.packaging.requirements import Requirement  # pip's copy: packaging is not installed yet
for line in requires("lerobot") or []:
    req = Requirement(line)
    if req.name in ("torch", "torchvision", "torchcodec"):
        continue
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    req.marker = None
    print(req)
PY
  )
  [ "${#DEPS[@]}" -gt 5 ] || fail "reading lerobot's requirements"
  "${PIP[@]}" install "${DEPS[@]}" "$TORCH_SPEC" >>"$LOG" 2>&1 || fail "pip install lerobot's dependencies"
  # torchvision's compiled ops (_C.so) need CUDA torch's libraries: they do not load, and its
  # meta registrations of two ops (nms, qnms) then fail at import. Register those only when
  # the ops loaded (the other registrations already check), so `import torchvision` works.
  TV="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/torchvision"
  sed -i -E 's/^@torch\.library\.register_fake\(("torchvision::[a-z_]+")\)$/@(torch.library.register_fake(\1) if torchvision.extension._has_ops() else (lambda fn: fn))/' \
    "$TV/_meta_registrations.py"
  rm -f "$TV/_C.so"   # would never load here (libtorch_cuda.so); removing it says so plainly
fi
side_venv_finish "import lerobot, numpy, PIL, torchvision.transforms; from lerobot.datasets.lerobot_dataset import LeRobotDataset"
side_venv_share_files
