#!/usr/bin/env bash
# A side venv for the LeRobot export: lerobot 0.4.4 (the newest for Python 3.11) needs
# torch < 2.11, which cannot live beside this project's torch 2.14.1. The export module
# (vla_finetune/lerobot_export.py) needs only numpy, Pillow and lerobot, and runs there.
# Idempotent: a stamp file marks a finished install.
set -euo pipefail
PYTHON=${PYTHON:-python3.11}
VENV=${1:-.venv-lerobot}
STAMP="$VENV/.installed-lerobot-0.4.4"
[ -f "$STAMP" ] && exit 0
echo "[setup_lerobot_venv] creating $VENV (lerobot 0.4.4, torch 2.10)"
"$PYTHON" -m venv "$VENV"
# The machine-wide pip cap (torch<=2.14.1) does not forbid 2.10; lerobot pins it.
"$VENV/bin/python" -m pip install --quiet --upgrade pip 2>&1 | grep -v "is ignored" || true
"$VENV/bin/python" -m pip install --quiet "lerobot==0.4.4" 2>&1 | grep -v "is ignored" || true
"$VENV/bin/python" -c "import lerobot, numpy, PIL" && touch "$STAMP"
