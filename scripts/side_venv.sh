# shellcheck shell=bash
# What the side-venv scripts (setup_lerobot_venv.sh, setup_vllm_venv.sh, setup_vp2_venv.sh)
# share: a venv that installs once, records what it installed in a stamp file (a rerun with
# the same spec is a no-op), stays quiet unless something fails (then the install log's tail
# goes to stderr), and sees this project through a .pth file rather than an install (the
# project's own dependencies stay in .venv).
#
# A script sets NAME (for messages), VENV, WANT (the spec its stamp records) and optionally
# PYTHON, then:
#   source "$(dirname "${BASH_SOURCE[0]}")/side_venv.sh"
#   side_venv_up_to_date && exit 0
#   side_venv_create                                  # the venv, an upgraded pip; sets PIP
#   side_venv_install_torch "$TORCH_SPEC"             # optional: a CPU torch before the rest
#   "${PIP[@]}" install ... >>"$LOG" 2>&1 || fail "pip install ..."
#   side_venv_finish "import x, y"                    # import check, project path, stamp

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3.11}"
STAMP="$VENV/.installed"

# The project on the venv's path; rewritten on every run (cheap), so a venv reused by
# another clone points at this one.
side_venv_link_project() {
  local site
  site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  echo "$ROOT" > "$site/orv_project.pth"
}

side_venv_up_to_date() {
  if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -x "$VENV/bin/python" ]; then
    side_venv_link_project
    return 0
  fi
  return 1
}

fail() { echo "$NAME: $1 failed; its log:" >&2; tail -n 40 "$LOG" >&2; exit 1; }

side_venv_create() {
  command -v "$PYTHON" >/dev/null 2>&1 || { echo "$NAME: $PYTHON not found (pass PYTHON=...)" >&2; exit 1; }
  LOG="$(mktemp)"
  trap 'rm -f "$LOG"' EXIT
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV" >>"$LOG" 2>&1 || fail "venv creation"
  PIP=("$VENV/bin/python" -m pip --quiet --disable-pip-version-check)
  "${PIP[@]}" install --upgrade pip >>"$LOG" 2>&1 || fail "pip upgrade"
}

# $1: a torch spec to install before the rest (so pip takes the CPU wheel, from /opt/wheels
# through pip's find-links when present; elsewhere the PyTorch CPU wheels need
# --extra-index-url https://download.pytorch.org/whl/cpu); empty: skip.
side_venv_install_torch() {
  [ -z "$1" ] || "${PIP[@]}" install "$1" >>"$LOG" 2>&1 || fail "pip install $1"
}

# $1: the Python statement that proves the venv works (run with MUJOCO_GL=egl for robosuite).
side_venv_finish() {
  side_venv_link_project
  MUJOCO_GL=egl "$VENV/bin/python" -c "$1" >>"$LOG" 2>&1 || fail "import check ($1)"
  echo "$WANT" > "$STAMP"
}
