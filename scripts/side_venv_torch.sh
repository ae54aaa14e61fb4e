# shellcheck shell=bash
# What the three side-venv scripts add to side_venv.sh for a light set-up: which torch a side
# venv takes (CPU wheels on a machine without CUDA, the documented CUDA wheels with it), a
# from-empty rebuild when the recorded spec changed (so a CUDA venv switched to CPU does not
# keep its ~5 GB of NVIDIA libraries), and hard links between the side venvs' identical files
# (the same torch 2.13.0+cpu wheel lies in all three: ~0.9 GB each).
#
# SIDE_VENV_CUDA=1 / =0 forces the choice; by default it is 1 where `nvidia-smi -L` lists a GPU.

side_venv_cuda() {
  case "${SIDE_VENV_CUDA:-auto}" in
    1|yes|true) return 0 ;;
    0|no|false) return 1 ;;
  esac
  command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU'
}

# A venv whose stamp records another spec was built by an older script or for the other
# device: start it again from empty. Only a folder with our stamp is removed (it is ours).
side_venv_reset_if_stale() {
  if [ -f "$VENV/.installed" ] && [ "$(cat "$VENV/.installed")" != "$WANT" ]; then
    rm -rf "$VENV"
  fi
}

# Identical files (same name, bytes and mode, >= 256 KiB) in this venv and the venvs beside it that
# a set-up finished (.venv and .venv-*, each with its .installed stamp) become hard links: the
# disk holds one copy of the CPU torch for the three side venvs, and one of what they share
# with .venv (scipy, pyarrow, triton's libraries, ...): measured 2.0 GB + 1.1 GB saved. pip
# replaces files rather than editing them, so a later install in one venv leaves the others as
# they were. util-linux's `hardlink` (a few seconds); skipped where it is missing (the venvs
# then just take more room).
side_venv_share_files() {
  command -v hardlink >/dev/null 2>&1 || return 0
  local dirs=() d self
  self="$(realpath -m "$VENV")"
  for d in "$(dirname "$self")"/.venv "$(dirname "$self")"/.venv-*; do
    [ "$d" != "$self" ] && [ -f "$d/.installed" ] && dirs+=("$d")
  done
  dirs+=("$self")
  hardlink --quiet --ignore-time --ignore-owner --respect-name --minimum-size 256K "${dirs[@]}" >>"$LOG" 2>&1 || true
}
