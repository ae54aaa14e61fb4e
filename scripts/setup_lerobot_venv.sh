#!/usr/bin/env bash
# A side venv for the LeRobot export: lerobot 0.4.4 (the newest for Python 3.11) needs
# torch < 2.11, which cannot live beside this project's torch 2.14.1. The export module
# (vla_finetune/lerobot_export.py) needs only numpy, Pillow and lerobot, and runs there.
# Idempotent and quiet (see side_venv.sh).
#
#   bash scripts/setup_lerobot_venv.sh [VENV]       # default .venv-lerobot
set -euo pipefail
NAME=setup_lerobot_venv
VENV="${1:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.venv-lerobot}"
WANT="lerobot==0.4.4 +project-path"
# shellcheck source=scripts/side_venv.sh
source "$(dirname "${BASH_SOURCE[0]}")/side_venv.sh"
side_venv_up_to_date && exit 0

side_venv_create
# The machine-wide pip cap (torch<=2.14.1) does not forbid 2.10; lerobot pins it.
"${PIP[@]}" install "lerobot==0.4.4" >>"$LOG" 2>&1 || fail "pip install lerobot==0.4.4"
side_venv_finish "import lerobot, numpy, PIL"
