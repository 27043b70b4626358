#!/usr/bin/env bash
# Unpacks PACK_DIR/bin.tar.gz (tools/gpu/package_for_device.sh) into PACK_DIR/bin once: the
# binaries travel compressed (each embeds every sm_90 kernel; unpacked they would not fit the
# 64 MiB a device call carries). A no-op where bin/ is already there, so every entry script
# (device_session.sh, run_device_tests.sh, profile_bench.sh, ncu_attention.sh) runs it first.
# Usage: tools/gpu/unpack_binaries.sh PACK_DIR
set -euo pipefail
pack=$1
[ -d "$pack/bin" ] && exit 0
archive="$pack/bin.tar.gz"
if [ ! -f "$archive" ]; then
  echo "unpack_binaries.sh: neither $pack/bin nor $archive: run tools/gpu/package_for_device.sh" >&2
  exit 1
fi
# Into a temporary folder first: a cut-short unpack leaves no half-filled bin/ behind.
tmp=$(mktemp -d "$pack/.bin.XXXXXX")
if command -v tar >/dev/null; then
  tar -xzf "$archive" -C "$tmp"
else
  python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$archive" "$tmp"
fi
mv "$tmp/bin" "$pack/bin"
rmdir "$tmp"
