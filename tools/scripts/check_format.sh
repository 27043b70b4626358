#!/usr/bin/env bash
# Fails (listing the files) when any C++/CUDA source differs from what .clang-format asks for.
# Fix with: tools/scripts/check_format.sh --fix
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
mapfile -t files < <(git ls-files -- '*.h' '*.cpp' '*.cu' '*.cuh' 2>/dev/null ||
                     find kernels core layers autotp models engine tools tests -name '*.h' -o -name '*.cpp' -o -name '*.cu' -o -name '*.cuh')
if [ ${#files[@]} -eq 0 ]; then
  echo "no C++/CUDA sources found under $root: nothing was checked" >&2
  exit 1
fi
if [ "${1:-}" = "--fix" ]; then
  clang-format -i "${files[@]}"
  exit 0
fi
bad=()
for f in "${files[@]}"; do
  clang-format --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if [ ${#bad[@]} -gt 0 ]; then
  echo "these files do not follow .clang-format (run tools/scripts/check_format.sh --fix):"
  printf '  %s\n' "${bad[@]}"
  exit 1
fi
echo "all ${#files[@]} sources follow .clang-format"
