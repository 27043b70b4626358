#!/usr/bin/env bash
# Quick start: installs missing packages, builds autotp into build/, and runs the main job:
# a tiny Llama trained on the embedded English corpus (configs/tiny-llama.yaml), writing
# metrics, checkpoints and a Hugging Face model directory to runs/quickstart/, which each run
# replaces (--overwrite) unless it is given --resume.
# Usage: tools/quickstart.sh [more `autotp train` arguments, e.g. --set train.steps=400]
# (`build/bin/autotp demo` still runs the smaller MLP demo.)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
tools/scripts/install_deps.sh
tools/scripts/configure.sh build -DCMAKE_BUILD_TYPE=Release
cmake --build build --target autotp_cli
echo
replace=(--overwrite)
for arg in "$@"; do
  case $arg in --resume | --resume=*) replace=() ;; esac
done
exec build/bin/autotp train configs/tiny-llama.yaml --out runs/quickstart "${replace[@]}" "$@"
