#!/usr/bin/env bash
# Installs the Debian packages autotp builds against, when any is missing.
# Used by tools/quickstart.sh and tools/test.sh; safe to run repeatedly.
set -euo pipefail

packages=(cmake ninja-build g++ pkg-config libyaml-cpp-dev libfmt-dev libgtest-dev libgmock-dev
          libopenmpi-dev openmpi-bin clang-format python3)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "autotp: installing missing Debian packages: ${missing[*]}"
if [ "$(id -u)" -eq 0 ]; then
  sudo_cmd=()
elif command -v sudo >/dev/null; then
  sudo_cmd=(sudo)
else
  echo "autotp: need root (or sudo) to install: ${missing[*]}" >&2
  exit 1
fi
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
