#!/usr/bin/env bash
# System packages the toolkit needs beyond Python wheels.
#
# ManiSkill3 (SAPIEN) renders through Vulkan. On a machine without a GPU the only Vulkan
# device is Mesa's software rasterizer (lavapipe), and SAPIEN refuses Debian 12's own
# Mesa 22.x: it needs Mesa >= 25, which bookworm-backports ships.
#
# Run as root, this installs what is missing. Run as another user, it only checks and
# prints the exact commands to run. It never fails the set-up: the Python parts of the
# toolkit work without Vulkan; only simulation tests and commands need it (they skip or
# fail with this same message).
#
# Chromium (Debian's `chromium`) opens the augment report in headless tests; installed the
# same way (as root), else the tests that need it skip.
set -u

need_mesa_major=25

mesa_version() {
  dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true
}

mesa_ok() {
  local v; v=$(mesa_version)
  [ -n "$v" ] || return 1
  local major=${v%%.*}; major=${major#*:}
  [ "$major" -ge "$need_mesa_major" ] 2>/dev/null || return 1
  dpkg-query -W -f='${Status}' libvulkan1 2>/dev/null | grep -q "install ok installed"
}

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "[setup_system] not a Debian system: install Mesa >= ${need_mesa_major} (lavapipe) and the Vulkan loader with your package manager for ManiSkill3 on CPU."
  exit 0
fi

# Chromium (Debian's package): tests/test_report_viewer.py opens RUN/report.html in headless
# Chromium (videos play, no console error); without it those tests skip. Checked first, since
# the Vulkan part below exits early.
if command -v chromium >/dev/null 2>&1; then
  echo "[setup_system] chromium: $(chromium --version 2>/dev/null | head -n1) present."
elif [ "$(id -u)" = "0" ]; then
  echo "[setup_system] installing chromium (headless report tests)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
    || echo "[setup_system] WARNING: could not install chromium; the report viewer tests will skip."
else
  echo "[setup_system] the report viewer tests need Debian's chromium; as root, run: apt-get install -y chromium"
fi

if mesa_ok; then
  echo "[setup_system] Vulkan: mesa-vulkan-drivers $(mesa_version) (lavapipe) present."
  exit 0
fi

codename=$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")
cmds="echo 'deb http://deb.debian.org/debian ${codename}-backports main' > /etc/apt/sources.list.d/backports.list
apt-get update
apt-get install -y -t ${codename}-backports mesa-vulkan-drivers libvulkan1"

if [ "$(id -u)" != "0" ]; then
  echo "[setup_system] ManiSkill3 on CPU needs Mesa >= ${need_mesa_major} (lavapipe); found '$(mesa_version)'. As root, run:"
  echo "$cmds"
  exit 0
fi

if [ "$codename" != "bookworm" ]; then
  # Newer Debian releases ship Mesa >= 25 in their main archive.
  echo "[setup_system] installing mesa-vulkan-drivers libvulkan1 from ${codename}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null \
    || echo "[setup_system] WARNING: apt-get failed; simulation will be unavailable."
  exit 0
fi

echo "[setup_system] installing Mesa lavapipe from ${codename}-backports (ManiSkill3 on CPU)"
if ! grep -rqs "${codename}-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo "deb http://deb.debian.org/debian ${codename}-backports main" > /etc/apt/sources.list.d/backports.list
fi
if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t "${codename}-backports" mesa-vulkan-drivers libvulkan1 >/dev/null; then
  echo "[setup_system] Vulkan: mesa-vulkan-drivers $(mesa_version) installed."
else
  echo "[setup_system] WARNING: could not install Mesa from backports; simulation will be unavailable. Commands:"
  echo "$cmds"
fi
exit 0
