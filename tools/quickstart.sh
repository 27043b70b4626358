#!/usr/bin/env bash
# Quick start: installs missing packages, builds autotp into build/, and runs the main job.
# Usage: tools/quickstart.sh [arguments for `autotp demo`]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
tools/scripts/install_deps.sh
tools/scripts/configure.sh build -DCMAKE_BUILD_TYPE=Release
cmake --build build --target autotp_cli
echo
exec build/bin/autotp demo "$@"
